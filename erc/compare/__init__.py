"""Stage 4: zero-shot vs fine-tuned V/A/D comparison, Random Forest on predicted V/A/D, report."""
