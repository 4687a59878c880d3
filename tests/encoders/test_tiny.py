"""The built-in tiny encoder: deterministic, and building it does not disturb the caller's random stream."""
from __future__ import annotations

import hashlib

import torch

from erc.encoders.tiny import build_tiny_encoder


def _digest(path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_build_is_deterministic_and_leaves_global_rng_alone(tmp_path):
    texts = ["i feel happy", "that was awful", "okay then"]
    torch.manual_seed(123)
    expected = torch.rand(4)                      # what the caller draws when nothing is built

    torch.manual_seed(123)
    a = build_tiny_encoder(tmp_path / "a", texts)
    after_build = torch.rand(4)
    b = build_tiny_encoder(tmp_path / "b", texts)

    # A first run (which builds the encoder) and a later run (which finds it cached) must draw the
    # same numbers afterwards, or the Quickstart's metrics depend on the state of ~/.cache.
    assert torch.equal(after_build, expected)
    assert _digest(a) == _digest(b)
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()
