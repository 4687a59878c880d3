"""Training state without pickle: a bit-exact round trip of model, optimizer, scheduler and RNG state,
and checkpoints written by Accelerate's save_state (the earlier format) still load."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from accelerate import Accelerator

from erc.core.state_io import is_legacy_checkpoint, load_training_state, save_training_state
from tests.conftest import pickle_files


def _prepared(seed: int = 0):
    torch.manual_seed(seed)
    acc = Accelerator(cpu=True)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, betas=(0.8, 0.95), amsgrad=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1 + step))
    model, opt, sched = acc.prepare(model, opt, sched)
    return acc, model, opt, sched


def _train(model, opt, sched, steps: int) -> None:
    for _ in range(steps):
        loss = model(torch.randn(5, 4)).pow(2).mean()
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


@pytest.mark.parametrize("legacy", [False, True])
def test_round_trip_is_exact(tmp_path, legacy):
    acc, model, opt, sched = _prepared()
    _train(model, opt, sched, 3)
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    if legacy:
        acc.save_state(str(tmp_path), safe_serialization=True)     # optimizer.bin, random_states_0.pkl, ...
    else:
        tmp_path.mkdir(exist_ok=True)
        save_training_state(acc, tmp_path)
        assert pickle_files(tmp_path) == []
    assert is_legacy_checkpoint(tmp_path) == legacy
    expected_draws = _draws()
    _train(model, opt, sched, 2)                                  # the uninterrupted continuation
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    expected_lr = sched.get_last_lr()

    acc2, model2, opt2, sched2 = _prepared(seed=5)                # other weights, fresh optimizer
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    load_training_state(acc2, tmp_path)
    assert _draws() == expected_draws                              # every generator continues where it was
    _train(model2, opt2, sched2, 2)
    assert sched2.get_last_lr() == expected_lr
    for k, v in model2.state_dict().items():
        assert torch.equal(v, expected[k]), k
    assert opt2.state_dict()["param_groups"][0]["betas"] in ((0.8, 0.95), [0.8, 0.95])


def test_pickle_detector_knows_npz_from_pickles(tmp_path):
    """The helper the no-pickle assertions rely on: plain npz and safetensors pass, pickles and object npz do not."""
    import pickle

    from safetensors.torch import save_file

    np.savez(tmp_path / "plain.npz", a=np.arange(3))
    np.savez(tmp_path / "objects.npz", a=np.array([{"x": 1}], dtype=object))
    save_file({"w": torch.zeros(2)}, str(tmp_path / "w.safetensors"))
    (tmp_path / "p.json").write_bytes(pickle.dumps({"x": 1}))          # a pickle whatever its name
    torch.save({"w": torch.zeros(2)}, tmp_path / "t.data")
    assert pickle_files(tmp_path) == ["objects.npz", "p.json", "t.data"]
