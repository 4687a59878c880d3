"""``erc benchmark``: every method under one protocol (same split, features, seeds, validation-only
selection), one table, and a paired bootstrap test of each method against a reference.

Top layer (beside :mod:`erc.pipeline`): it imports the stages' specs and runs each cell's stage in
a child process. See docs/benchmark.md.
"""
