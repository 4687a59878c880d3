"""Hugging Face encoders (:mod:`erc.encoders.hf`) and the tiny offline encoder (:mod:`erc.encoders.tiny`).

This package's ``__init__`` stays free of heavy imports: configs read :data:`POOLINGS` from here.
"""

#: Sentence pooling of an encoder's token states: the first ([CLS]) token, or the masked mean.
POOLINGS = ("cls", "mean")
