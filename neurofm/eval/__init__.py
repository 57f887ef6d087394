"""Evaluation harness: LOSO / few-shot, linear probe vs fine-tune (see the evaluation issue)."""
