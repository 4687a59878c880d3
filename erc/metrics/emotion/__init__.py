"""The ``emotion`` evaluate module (``emotion.py``, loaded by path) and its computation (``emotion_scores.py``)."""
