"""The ``vad_regression`` evaluate module (``vad_regression.py``, loaded by path) and its computation (``vad_regression_scores.py``)."""
