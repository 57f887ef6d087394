"""Seeds that every process derives alike (the loaders' shard draws and shuffles)."""

from __future__ import annotations

import numpy as np


def derive_seed(*parts: int) -> int:
    """A 64-bit seed from non-negative ints, identical in every process (unlike ``hash(str)``)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0])
