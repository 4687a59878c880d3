"""HRG-SSA stage: hybrid relational graphs with sentiment-laden alignment (generative or classifying)."""
