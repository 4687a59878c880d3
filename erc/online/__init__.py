"""Online emotion recognition: a prediction for each turn as the conversation unfolds.

* :class:`erc.online.api.OnlinePredictor` (library): ``start()`` a conversation, ``push`` a turn,
  get that turn's emotion, sentiment and class probabilities. Incremental: one encoder pass per
  turn plus the causal graph over its past window (:mod:`erc.graph.streaming`).
* ``erc serve`` (:mod:`erc.online.serve`): the same over HTTP (FastAPI + uvicorn).

Importing this package imports neither torch nor the web stack; import the submodules.
"""
