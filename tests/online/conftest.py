"""A small causal graph model on the synthetic corpus, shared by the online tests."""
from __future__ import annotations

import pytest

from erc.core.config import config_from_flat
from erc.graph.config import GraphTrainConfig
from erc.graph.train import run_train_graph

TINY = dict(dataset="synthetic", synthetic_dialogues=24, hidden_dim=16, win_p=3, win_f=0, shift_win=3,
            batch_size=4, eval_batch_size=3, lr=3.0e-3, num_threads=1, progress=False, valid_fraction=0.2,
            epochs=2, seeds=1)


@pytest.fixture(scope="session")
def causal_model(tmp_path_factory):
    """best_model/ of a causal (win_f 0) run with text (hashed), audio, visual and timing: six pair graphs."""
    out = tmp_path_factory.mktemp("causal") / "g"
    run_train_graph(config_from_flat(GraphTrainConfig, TINY, modalities=["text", "audio", "visual", "timing"],
                                     layers=[2] * 6, output_dir=str(out)))
    return out / "seed_0" / "best_model"
