"""Source → MNE preprocessing → WebDataset shards → streaming loader."""
