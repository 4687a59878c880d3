"""Stage 1: fine-tune a pretrained text encoder to predict Valence, Arousal, Dominance."""
