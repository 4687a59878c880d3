"""Graph training learns: checked on the files a run writes (epochs.csv, best_model/), not on internals.

A run whose weights never update, or only partly, still writes every file with plausible
numbers; these checks need the loss to fall, the validation weighted F1 to beat predicting the
majority class, and every trainable parameter to move away from its initial value.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score

from erc.core.config import config_from_flat
from erc.graph.config import GraphTrainConfig

# 40 synthetic dialogues (text / audio / visual), a 16-d model with one layer per modality pair
BASE = dict(dataset="synthetic", synthetic_dialogues=40, hidden_dim=16, layers=[1, 1, 1], win_p=2, win_f=2,
            shift_win=3, batch_size=4, eval_batch_size=8, lr=1.0e-2, num_threads=1, progress=False,
            valid_fraction=0.2, checkpoint=False)


def _train(out: Path, **over) -> Path:
    from erc.graph.train import run_train_graph

    run_train_graph(config_from_flat(GraphTrainConfig, {**BASE, "output_dir": str(out), **over}))
    return out


def _parameters(model_dir: Path) -> dict[str, torch.Tensor]:
    from erc.graph.model import load_graph_model

    model, _ = load_graph_model(model_dir)
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_graph_training_lowers_the_loss_beats_the_majority_class_and_moves_every_parameter(tmp_path):
    out = _train(tmp_path / "run", epochs=6)
    hist = pd.read_csv(out / "epochs.csv")
    assert len(hist) == 6
    assert hist.loss.iloc[-1] < 0.5 * hist.loss.iloc[0]
    assert hist.loss_emo.iloc[-1] < 0.5 * hist.loss_emo.iloc[0]

    # validation weighted F1 of the selected model, recomputed from its predictions, against the
    # best constant predictor (the validation split's own majority class)
    valid = pd.read_csv(out / "seed_0" / "best_model" / "valid_predictions.csv")
    wf1 = f1_score(valid.label, valid.pred, average="weighted")
    majority = valid.label.value_counts().idxmax()
    wf1_majority = f1_score(valid.label, np.full(len(valid), majority), average="weighted")
    assert len(valid) >= 50 and wf1 > wf1_majority + 0.3
    best = int(pd.read_json(out / "results.json", typ="series")["per_seed"][0]["best_epoch"])
    assert wf1 == pytest.approx(hist.valid_weighted_f1.iloc[best])

    # the same seed with learning rate 0 saves the initial weights as its (only) best model
    init = _parameters(_train(tmp_path / "init", epochs=1, lr=0.0) / "seed_0" / "best_model")
    trained = _parameters(out / "seed_0" / "best_model")
    assert set(init) == set(trained) and len(trained) > 10
    assert best > 0
    unchanged = [n for n in trained if torch.equal(init[n], trained[n])]
    assert unchanged == []


@pytest.mark.parametrize("loss", ["rank", "mscl", "cscl"])
def test_each_cmerc_loss_alone_falls(tmp_path, loss):
    """Task losses weighted 0, one CMERC loss weighted 0.5: the total is half that loss, and
    training on it alone lowers it (a detached or sign-flipped loss would not fall)."""
    out = _train(tmp_path / loss, epochs=5, lambda_emo=0.0, lambda_sen=0.0, lambda_shift=0.0,
                 **{f"{loss}_coef": 0.5})
    hist = pd.read_csv(out / "epochs.csv")
    part = hist[f"loss_{loss}"].to_numpy()
    np.testing.assert_allclose(hist.loss.to_numpy(), 0.5 * part, rtol=1e-6)
    assert np.all(part[1:] < part[0]), part
    if loss == "rank":   # the ranking hinge counts the few violating pairs of each batch: it falls, not monotonically
        assert part[1:].mean() < 0.75 * part[0], part
    else:
        assert np.all(np.diff(part) < 0) and part[-1] < 0.9 * part[0], part
