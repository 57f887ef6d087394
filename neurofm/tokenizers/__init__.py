"""RVQ tokenizers for M/EEG (see the tokenizer issue)."""
