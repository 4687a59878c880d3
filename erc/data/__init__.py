"""Stage 3 data layer: multimodal dialogue datasets, readers, joins, checks, batching."""
