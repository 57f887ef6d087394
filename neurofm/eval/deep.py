"""Deep models under test: braindecode's and ours, trained from scratch, fine-tuned, or linearly probed.

One :class:`DeepModel` (an ``EvalModel``) wraps any ``nn.Module`` factory from the ``NETS``
registry. Everything learned from data comes from the fold's training side:

- normalisation (per-channel z-score, or none for our backbones, which take µV) from the train windows;
- ``scratch`` / ``finetune``: Lightning training with AdamW, early stopping and the *best epoch by
  validation loss* restored before testing (validation = training subjects only, see splits.py);
  without a validation set (few-shot) a fixed number of epochs; optional layer-wise learning-rate
  decay and two-stage (head first, then everything) fine-tuning;
- ``finetune`` with ``settings.lora_rank > 0``: LoRA adapters on the attention/MLP Linear layers,
  the rest frozen but the head (``lora.py``, via ``peft``);
- ``linear``: the backbone is frozen, features are extracted once per window (cached by weights and
  window content across folds) and a linear probe is fitted: logistic regression, or a closed-form
  ridge probe, with its penalty chosen on the validation split (leave-one-out when there is none).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from .data import EvalData
from .models import register_model

PROBES = ("logreg", "ridge")
_PENALTIES = np.logspace(-3, 3, 13)


@dataclass
class TrainSettings:
    """How a deep model is trained on a fold (fine-tuning and from scratch)."""

    max_epochs: int = 40
    fewshot_epochs: int = 30  # without a validation split
    patience: int = 8  # epochs without a better validation loss before stopping
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-2
    layer_decay: float | None = None  # e.g. 0.75: lr × decay^(depth - layer) for our backbones
    two_stage_epochs: int = 0  # > 0: train only the head for this many epochs first
    normalize: str = "zscore"  # "zscore" (per channel, train windows) or "none"
    probe: str = "logreg"  # linear probing: "logreg" or "ridge"
    lora_rank: int = 0  # > 0 (adapt=finetune): LoRA adapters of this rank + a trainable head (lora.py)
    lora_alpha: float | None = None  # LoRA scale alpha / rank; None: alpha = 2 × rank
    lora_dropout: float = 0.0


# --------------------------------------------------------------------------------------------------
# networks


def chs_info(data: EvalData) -> list[dict[str, Any]]:
    """MNE-like ``info["chs"]`` entries (name, 12-value loc with the position first) for braindecode models."""
    out = []
    for name, p in zip(data.ch_names, data.pos):
        loc = np.zeros(12)
        loc[:3] = np.nan_to_num(p, nan=0.0)
        out.append({"ch_name": name, "loc": loc, "kind": "eeg"})
    return out


NetFactory = Callable[[EvalData, int, dict[str, Any]], nn.Module]  # (data, n_outputs, options) -> module
NETS: dict[str, tuple[NetFactory, str]] = {}  # name -> (factory, default normalisation)


def register_net(name: str, normalize: str = "zscore") -> Callable[[NetFactory], NetFactory]:
    def deco(factory: NetFactory) -> NetFactory:
        NETS[name] = (factory, normalize)
        return factory
    return deco


def _braindecode(cls_name: str) -> NetFactory:
    """A braindecode model built for the data; ``options["weights"]``: a local folder of pretrained
    weights, loaded strictly except the head (``weights.load_pretrained``); other options go to the class."""
    def factory(data: EvalData, n_outputs: int, options: dict[str, Any]) -> nn.Module:
        import braindecode.models

        from .weights import load_pretrained

        cls = getattr(braindecode.models, cls_name)
        kwargs = {k: v for k, v in options.items() if k != "weights"}
        net = cls(n_chans=len(data.ch_names), n_outputs=n_outputs, n_times=data.x.shape[-1], sfreq=data.sfreq,
                  chs_info=chs_info(data), **kwargs)
        if options.get("weights"):
            load_pretrained(net, options["weights"])
        return net
    return factory


for _name, _cls in (("eegnet", "EEGNet"), ("shallow", "ShallowFBCSPNet"), ("deep4", "Deep4Net"),
                    ("eegconformer", "EEGConformer"), ("cbramod", "CBraMod"), ("biot", "BIOT"), ("eegpt", "EEGPT")):
    register_net(_name)(_braindecode(_cls))


class _WithChannelNames(nn.Module):
    """braindecode's Labram maps channels by name at every call."""

    def __init__(self, net: nn.Module, ch_names: list[str]) -> None:
        super().__init__()
        self.net, self.ch_names = net, ch_names

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, ch_names=self.ch_names)


@register_net("labram")
def _labram(data: EvalData, n_outputs: int, options: dict[str, Any]) -> nn.Module:
    return _WithChannelNames(_braindecode("Labram")(data, n_outputs, options), list(data.ch_names))


@register_net("reve")
def _reve(data: EvalData, n_outputs: int, options: dict[str, Any]) -> nn.Module:
    """braindecode's REVE, built only when its electrode-position bank is already on disk (never downloaded)."""
    from pathlib import Path

    from mne.datasets.utils import _get_path

    bank = Path(_get_path(None, "REVE_POSITIONS_PATH", "REVE positions")) / "reve_positions.json"
    if not bank.is_file():
        raise RuntimeError("braindecode's REVE downloads its electrode-position bank when it is built, and this "
                           f"harness never downloads at run time: prefetch reve_positions.json "
                           f"(https://huggingface.co/brain-bzh/reve-positions) to {bank} "
                           "(or set REVE_POSITIONS_PATH to its folder)")
    return _braindecode("REVE")(data, n_outputs, options)


@register_net("neurofm", normalize="none")
def _neurofm(data: EvalData, n_outputs: int, options: dict[str, Any]) -> nn.Module:
    """Our backbone: ``options["weights"]`` (a save_pretrained folder or hub id) or ``options["preset"]`` (random)."""
    from ..models.backbone import NeuroTransformer, build_backbone

    common = dict(n_chans=len(data.ch_names), chs_info=chs_info(data), n_times=data.x.shape[-1], sfreq=data.sfreq)
    if options.get("weights"):
        net = NeuroTransformer.from_pretrained(options["weights"], **common)
        net.reset_head(n_outputs)
        return net
    return build_backbone(options.get("preset", "tiny"), n_outputs=n_outputs, **common)


# --------------------------------------------------------------------------------------------------
# training (Lightning)


class ClassifierModule(L.LightningModule):
    """Cross-entropy training of ``net``; AdamW (``param_groups``) with a cosine schedule over ``max_epochs``."""

    def __init__(self, net: nn.Module, settings: TrainSettings, max_epochs: int) -> None:
        super().__init__()
        self.net, self.settings, self.max_epochs = net, settings, max_epochs
        self.loss = nn.CrossEntropyLoss()

    def training_step(self, batch, _):
        x, y = batch
        loss = self.loss(self.net(x), y)
        self.log("train_loss", loss, prog_bar=False)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_loss", self.loss(self.net(x), y), prog_bar=False)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(param_groups(self.net, self.settings), lr=self.settings.lr,
                                weight_decay=self.settings.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.max_epochs))
        return {"optimizer": opt, "lr_scheduler": sched}


def param_groups(net: nn.Module, settings: TrainSettings) -> list[dict[str, Any]]:
    """AdamW groups: no decay on norms/biases/embeddings; layer-wise lr decay for modules with ``blocks``."""
    depth = len(getattr(net, "blocks", [])) if settings.layer_decay else 0
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, p in net.named_parameters():
        if not p.requires_grad:
            continue
        decay = 0.0 if p.ndim < 2 or "embed" in name or "token" in name else settings.weight_decay
        scale = 1.0
        if depth:
            layer = int(name.split(".")[1]) + 1 if name.startswith("blocks.") else (depth + 1 if "head" in name else 0)
            scale = settings.layer_decay ** (depth + 1 - layer)
        groups.setdefault((decay, scale), []).append(p)
    return [{"params": ps, "weight_decay": d, "lr": settings.lr * s} for (d, s), ps in groups.items()]


class KeepBest(L.Callback):
    """Remember the weights of the epoch with the lowest validation loss."""

    def __init__(self) -> None:
        self.best, self.state = float("inf"), None

    def on_validation_epoch_end(self, trainer, module) -> None:
        loss = float(trainer.callback_metrics.get("val_loss", float("inf")))
        if loss < self.best:
            self.best, self.state = loss, copy.deepcopy(module.net.state_dict())


def _loader(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool, seed: int):
    ds = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle,
                                       generator=torch.Generator().manual_seed(seed))


def train_net(net: nn.Module, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray] | None,
              settings: TrainSettings, seed: int) -> dict[str, Any]:
    """Fit ``net`` in place; with ``val``, restore the epoch with the best validation loss. Returns a log."""
    from lightning.pytorch.callbacks import EarlyStopping

    L.seed_everything(seed, workers=True, verbose=False)
    net.train()  # `from_pretrained` hands back a model in eval mode, and Lightning keeps the mode it finds
    epochs = settings.max_epochs if val is not None else settings.fewshot_epochs
    log: dict[str, Any] = {}
    if settings.two_stage_epochs:
        trainable = [p for p in net.parameters() if p.requires_grad]  # all, or LoRA adapters + head
        net.requires_grad_(False)
        _head(net).requires_grad_(True)
        _fit(net, train, val, settings, seed, settings.two_stage_epochs, [])
        for p in trainable:
            p.requires_grad_(True)
    keep = KeepBest() if val is not None else None
    callbacks = [] if val is None else [keep, EarlyStopping("val_loss", patience=settings.patience)]
    trainer = _fit(net, train, val, settings, seed, epochs, callbacks)
    log["epochs"] = trainer.current_epoch
    if keep is not None and keep.state is not None:
        net.load_state_dict(keep.state)
        log["best_val_loss"] = keep.best
    return log


def _fit(net, train, val, settings, seed, epochs, callbacks):
    import logging

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)  # "GPU available: False" and tips, once per fold
    trainer = L.Trainer(max_epochs=epochs, accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
                        num_sanity_val_steps=0)
    trainer.fit(ClassifierModule(net, settings, epochs), _loader(*train, settings.batch_size, True, seed),
                None if val is None else _loader(*val, settings.batch_size, False, seed))
    return trainer


def _head(net: nn.Module) -> nn.Module:
    inner = getattr(net, "net", net)
    for name in ("head", "final_layer"):
        if isinstance(getattr(inner, name, None), nn.Module):
            return getattr(inner, name)
    raise ValueError(f"{type(inner).__name__} has no head / final_layer for two-stage fine-tuning")


# --------------------------------------------------------------------------------------------------
# linear probing

_FEATURES: dict[tuple[str, bytes], np.ndarray] = {}  # (weights sha256, window digest) -> features


def weights_sha256(net: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.inference_mode()
def features(net: nn.Module, x: np.ndarray, sha: str, batch_size: int = 64) -> np.ndarray:
    """Pooled backbone features (N, D) of windows ``x``, each computed once per weights (cached)."""
    digests = [hashlib.blake2b(w.tobytes(), digest_size=16).digest() for w in x]
    todo = [i for i, d in enumerate(digests) if (sha, d) not in _FEATURES]
    net.eval()
    for start in range(0, len(todo), batch_size):
        idx = todo[start:start + batch_size]
        out = net(torch.from_numpy(x[idx])).float().reshape(len(idx), -1).numpy()  # (n, D): a headless
        # braindecode network may return unflattened features
        for i, f in zip(idx, out):
            _FEATURES[(sha, digests[i])] = f
    return np.stack([_FEATURES[(sha, d)] for d in digests])


def fit_probe(kind: str, f_train: np.ndarray, y_train: np.ndarray, val: tuple[np.ndarray, np.ndarray] | None,
              seed: int) -> Any:
    """A linear probe on standardised features; its penalty chosen on ``val`` (else leave-one-out / CV)."""
    from sklearn.linear_model import LogisticRegression, RidgeClassifier, RidgeClassifierCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind not in PROBES:
        raise ValueError(f"probe {kind!r} is not one of {PROBES}")
    if val is None:
        head = (RidgeClassifierCV(alphas=_PENALTIES) if kind == "ridge"
                else LogisticRegression(C=1.0, max_iter=2000, random_state=seed))
        return make_pipeline(StandardScaler(), head).fit(f_train, y_train)
    best, best_score = None, -np.inf
    for penalty in _PENALTIES:
        head = (RidgeClassifier(alpha=penalty) if kind == "ridge"
                else LogisticRegression(C=1.0 / penalty, max_iter=2000, random_state=seed))
        probe = make_pipeline(StandardScaler(), head).fit(f_train, y_train)
        score = float((probe.predict(val[0]) == val[1]).mean())
        if score > best_score:
            best, best_score = probe, score
    return best


def fit_regression_probe(f_train: np.ndarray, y_train: np.ndarray,
                         val: tuple[np.ndarray, np.ndarray] | None) -> Any:
    """Ridge regression on standardised features; its penalty by validation MSE (else leave-one-out)."""
    from .penalty import ValidatedRidge

    return ValidatedRidge(alphas=tuple(float(a) for a in _PENALTIES)).fit(f_train, y_train, val)


def probe_proba(probe: Any, f: np.ndarray, n_classes: int) -> np.ndarray:
    if hasattr(probe, "predict_proba"):
        raw = probe.predict_proba(f)
    else:  # ridge: softmax of the decision values (monotone per class, enough for AUROC)
        d = probe.decision_function(f)
        d = np.stack([-d, d], 1) if d.ndim == 1 else d
        e = np.exp(d - d.max(1, keepdims=True))
        raw = e / e.sum(1, keepdims=True)
    full = np.zeros((len(f), n_classes))
    full[:, probe.classes_] = raw
    return full


# --------------------------------------------------------------------------------------------------
# the EvalModel


@dataclass
class DeepModel:
    """An ``EvalModel`` over a registered network; ``adapt``: scratch, finetune or linear."""

    net_name: str
    adapt: str = "scratch"
    net_options: dict[str, Any] = field(default_factory=dict)
    settings: TrainSettings = field(default_factory=TrainSettings)

    def __post_init__(self) -> None:
        if self.net_name not in NETS:
            raise ValueError(f"network {self.net_name!r} is not one of {sorted(NETS)}")
        if self.adapt not in ("scratch", "finetune", "linear"):
            raise ValueError(f"adapt={self.adapt!r} must be scratch, finetune or linear")
        if self.settings.lora_rank and self.adapt != "finetune":
            raise ValueError(f"lora_rank={self.settings.lora_rank} adapts a pretrained network: adapt must be "
                             f"'finetune', not {self.adapt!r}")
        weights = self.net_options.get("weights")
        if self.adapt != "scratch" and self.net_name != "neurofm" and not weights:
            # nothing is downloaded: braindecode's foundation models start from a local folder or from scratch
            raise ValueError(f"{self.net_name}: adapt={self.adapt!r} needs pretrained weights: pass a local "
                             "folder as weights= (model.safetensors, e.g. from save_pretrained); without weights "
                             "only adapt=scratch")
        if weights and self.net_name != "neurofm":
            from .weights import weights_file

            weights_file(weights)  # a local folder with a weights file, or a clear error now
        self.model_id = f"{self.net_name}:{weights}" if weights else self.net_name
        if self.settings.lora_rank:  # the leaderboard ranks LoRA apart from full fine-tuning
            self.model_id += f"+lora{self.settings.lora_rank}"
        # the pretrained start point's identity goes into the config, so changed weights are a new experiment
        self.weights_file_sha256 = _weights_file_sha256(weights) if weights else None
        self._weights_sha: str | None = None

    def fit(self, train: EvalData, val: EvalData | None, seed: int) -> None:
        torch.manual_seed(seed)
        self.n_classes = train.n_classes
        zscore = self.normalization == "zscore"
        x = train.x.astype(np.float32)
        self.mean = x.mean(axis=(0, 2), keepdims=True)[0] if zscore else 0.0  # (C, 1) from training windows
        self.std = x.std(axis=(0, 2), keepdims=True)[0] + 1e-6 if zscore else 1.0
        # no classes (regression): no head; only adapt=linear gets here (``tasks``)
        self.net = NETS[self.net_name][0](train, self.n_classes or None, self.net_options)
        if self.adapt == "linear":
            _remove_head(self.net)
            self._weights_sha = weights_sha256(self.net)
            f_train = features(self.net, self._norm(x), self._weights_sha)
            f_val = None if val is None else (features(self.net, self._norm(val.x), self._weights_sha), val.y)
            self.probe = (fit_regression_probe(f_train, train.y, f_val) if train.task == "regression"
                          else fit_probe(self.settings.probe, f_train, train.y, f_val, seed))
            return
        if self.net_options.get("weights"):
            self._weights_sha = weights_sha256(self.net)  # the pretrained start point
        if self.settings.lora_rank:
            self.net = _with_lora(self.net, self.net_name, self.settings)
        self.log = train_net(self.net, (self._norm(x), train.y), None if val is None else (self._norm(val.x), val.y),
                             self.settings, seed)

    @property
    def normalization(self) -> str:
        """zscore or none; our backbones always take µV (their registered default)."""
        return self.settings.normalize if self.net_name != "neurofm" else NETS[self.net_name][1]

    @property
    def alignment_keep_scale(self) -> bool:
        """Read by align.py: nets fed µV (no z-score) keep the training data's power after alignment."""
        return self.normalization == "none"

    def _norm(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std).astype(np.float32)

    @property
    def tasks(self) -> tuple[str, ...]:
        """A frozen backbone's features also feed a ridge regressor; trained nets have a class head."""
        return ("classification", "regression") if self.adapt == "linear" else ("classification",)

    @torch.inference_mode()
    def predict(self, x: np.ndarray) -> np.ndarray:
        """Regression (adapt=linear): (N,) targets from the ridge probe on the frozen features."""
        return self.probe.predict(features(self.net, self._norm(x), self._weights_sha))

    @torch.inference_mode()
    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        xn = self._norm(x)
        if self.adapt == "linear":
            return probe_proba(self.probe, features(self.net, xn, self._weights_sha), self.n_classes)
        self.net.eval()
        logits = torch.cat([self.net(torch.from_numpy(xn[i:i + 256])) for i in range(0, len(xn), 256)])
        return torch.softmax(logits.float(), 1).numpy()

    def describe(self) -> dict[str, Any]:
        return {"model": self.model_id, "weights_sha256": self._weights_sha,
                "config": {"net": self.net_name, "adapt": self.adapt, "options": self.net_options,
                           "weights_file_sha256": self.weights_file_sha256, "train": asdict(self.settings)}}


def _with_lora(net: nn.Module, net_name: str, settings: TrainSettings) -> nn.Module:
    from .lora import apply_lora

    return apply_lora(net, net_name, settings.lora_rank, settings.lora_alpha, settings.lora_dropout)


def _weights_file_sha256(weights: str) -> str | None:
    """sha256 of a local folder's weights file (model.safetensors or pytorch_model.bin; None for a hub id)."""
    from pathlib import Path

    from ..pipelines.shards import sha256_file
    from .weights import weights_file

    return sha256_file(weights_file(weights)) if Path(weights).expanduser().is_dir() else None


def _remove_head(net: nn.Module) -> None:
    """Linear probing: our backbone's ``reset_head(None)``; braindecode's ``final_layer`` → identity."""
    from ..models.backbone import NeuroTransformer
    from .weights import drop_head

    if isinstance(net, NeuroTransformer):
        net.reset_head(None)
    else:
        drop_head(getattr(net, "net", net))  # Labram is wrapped (_WithChannelNames)


def _deep_factory(name: str) -> Callable[..., DeepModel]:
    def make(adapt: str = "scratch", settings: dict[str, Any] | None = None, **net_options: Any) -> DeepModel:
        return DeepModel(name, adapt, net_options, TrainSettings(**(settings or {})))
    return make


for _name in list(NETS):  # our backbone also regresses (a ridge probe on its frozen features, adapt=linear)
    register_model(_name, tasks=("classification", "regression") if _name == "neurofm" else ("classification",))(
        _deep_factory(_name))
