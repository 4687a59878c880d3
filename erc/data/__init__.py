"""Layer 1: every corpus and its facts (registry), readers, splits, dialogue batches and loaders."""
