"""Curriculum pool schedule, in-pool shuffling, sharding and checkpoint state."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from erc.graph.cmerc_config import CMERCConfig
from erc.graph.curriculum import (
    CurriculumSampler,
    align_difficulty,
    build_curriculum_sampler,
    difficulty_order,
    pool_size,
)


def test_pool_sizes_follow_the_documented_linear_schedule():
    # N = 100 dialogues, E = 20 epochs, ratio 0.25 -> full from epoch 5; f0 = 0.2
    # n_e = ceil(100 * min(1, 0.2 + 0.8 * e / 5)) = 20, 36, 52, 68, 84, 100, 100, ...
    got = [pool_size(e, 20, 100, 0.25, 0.2) for e in range(20)]
    assert got == [20, 36, 52, 68, 84] + [100] * 15


def test_pool_schedule_paper_iemocap_setting():
    # 108 training dialogues (COSMIC IEMOCAP), 120 epochs, ratio 0.15 -> full at epoch 18
    sizes = [pool_size(e, 120, 108, 0.15, 0.2) for e in range(120)]
    for e, s in enumerate(sizes):
        hand = math.ceil(108 * min(1.0, 0.2 + 0.8 * e / 18) - 1e-9)
        assert s == hand
    assert sizes[0] == 22 and sizes[17] < 108 and sizes[18] == 108
    assert all(a <= b for a, b in zip(sizes, sizes[1:]))  # never shrinks


def test_pool_size_edge_cases():
    assert pool_size(0, 10, 10, 0.3, 0.3) == 3  # no float round-up to 4
    assert pool_size(0, 10, 3, 0.5, 0.01) == 1  # at least one dialogue
    assert pool_size(0, 10, 7, 1.0, 1.0) == 7   # f0 = 1 -> no curriculum
    with pytest.raises(ValueError, match="epoch_ratio"):
        pool_size(0, 10, 7, 0.0)


def test_pool_is_the_easiest_dialogues_and_shuffle_is_seeded():
    difficulty = [0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 0.0]
    s = CurriculumSampler(difficulty, num_epochs=10, epoch_ratio=0.5, init_fraction=0.3, seed=7)
    np.testing.assert_array_equal(difficulty_order(difficulty), [9, 1, 5, 3, 7, 0, 8, 4, 6, 2])
    s.set_epoch(0)
    first = list(s)
    assert sorted(first) == [1, 5, 9] and len(s) == 3
    assert list(s) == first  # same epoch -> same order
    other = CurriculumSampler(difficulty, num_epochs=10, epoch_ratio=0.5, init_fraction=0.3, seed=7)
    assert list(other) == first  # same seed -> same order in a fresh process
    s.set_epoch(2)  # 0.3 + 0.7 * 2/5 = 0.58 -> 6
    assert sorted(s) == sorted([9, 1, 5, 3, 7, 0]) and len(s) == 6
    s.set_epoch(5)
    assert sorted(s) == list(range(10))
    orders = set()
    for e in range(5, 10):
        s.set_epoch(e)
        orders.add(tuple(s))
    assert len(orders) > 1  # reshuffled each epoch


def test_unshuffled_order_is_easy_to_hard():
    s = CurriculumSampler([3.0, 1.0, 2.0, 0.0], num_epochs=4, epoch_ratio=0.5, init_fraction=1.0, shuffle=False)
    assert list(s) == [3, 1, 2, 0]


def test_shards_are_disjoint_and_cover_the_pool():
    difficulty = np.random.default_rng(0).random(23)
    for epoch in (0, 1, 4):
        shards = []
        for rank in range(3):
            s = CurriculumSampler(difficulty, 10, 0.4, 0.25, seed=3, num_replicas=3, rank=rank)
            s.set_epoch(epoch)
            shards.append(list(s))
            assert len(shards[-1]) == len(s)
        n = pool_size(epoch, 10, 23, 0.4, 0.25)
        assert len({len(x) for x in shards}) == 1  # equal counts per rank
        flat = [i for x in shards for i in x]
        assert set(flat) == set(difficulty_order(difficulty)[:n].tolist())
        assert len(flat) - n < 3  # padding only, less than one per rank
        assert len(set(flat)) == n


def test_state_dict_round_trip_and_mismatch_refused():
    diff = [0.3, 0.1, 0.2, 0.5, 0.4]
    s = CurriculumSampler(diff, 8, 0.5, 0.4, seed=1)
    s.set_epoch(3)
    state = s.state_dict()
    restored = CurriculumSampler(diff, 8, 0.5, 0.4, seed=1)
    restored.load_state_dict(state)
    assert restored.epoch == 3 and list(restored) == list(s)
    # round-trips through torch.save (what accelerate's save_state does with registered objects)
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    restored.load_state_dict(torch.load(buf, weights_only=False))
    assert list(restored) == list(s)
    other = CurriculumSampler([0.1, 0.3, 0.2, 0.5, 0.4], 8, 0.5, 0.4, seed=1)
    with pytest.raises(ValueError, match="order differs"):
        other.load_state_dict(state)


def test_works_in_a_dataloader():
    data = list(range(10))
    s = CurriculumSampler(list(reversed(range(10))), 4, 0.5, 0.5, seed=0)
    loader = DataLoader(data, batch_size=2, sampler=s, collate_fn=list)
    s.set_epoch(0)
    seen = [x for b in loader for x in b]
    assert sorted(seen) == [5, 6, 7, 8, 9]  # the 5 easiest (lowest difficulty = highest index)


def test_build_from_config_and_alignment_errors(tmp_path):
    ids = ["d1", "d2", "d3"]
    scores = {"d1": 2.0, "d2": 0.5, "d3": 1.0, "other": 9.0}
    assert align_difficulty(ids, scores) == [2.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="d9"):
        align_difficulty(["d1", "d9"], scores)
    cfg = CMERCConfig(curriculum=True, epoch_ratio=0.5, curriculum_init_fraction=0.34)
    s = build_curriculum_sampler(ids, 4, cfg, seed=0, difficulty_scores=scores)
    assert sorted(s) == [1, 2]  # ceil(3 * 0.34) = 2 easiest: d2 (0.5), d3 (1.0)
    with pytest.raises(ValueError, match="difficulty_file"):
        build_curriculum_sampler(ids, 4, cfg, seed=0)


def test_curriculum_loader_over_fusion_dialogues_label_entropy_default():
    from erc.data.batch import Dialogue
    from erc.graph.curriculum import curriculum_for_training, make_curriculum_loader

    def dlg(did, labels):
        n = len(labels)
        return Dialogue(did, {"text": np.zeros((n, 2), np.float32)}, np.asarray(labels, np.int64),
                        np.zeros(n, np.int64))

    train = [dlg("hard", [0, 1, 2, 3]), dlg("easy", [1, 1, 1]), dlg("mid", [0, 0, 1]), dlg("easy2", [2, 2])]
    cfg = CMERCConfig(curriculum=True, epoch_ratio=0.5, curriculum_init_fraction=0.5)
    sampler = curriculum_for_training(train, num_epochs=4, cfg=cfg, seed=0, num_classes=4)
    loader = make_curriculum_loader(train, sampler, batch_size=8)
    sampler.set_epoch(0)
    (batch,) = list(loader)
    assert sorted(batch.dialogue_ids) == ["easy", "easy2"]
    assert sorted(batch.dialogue_index.tolist()) == [1, 3]
    sampler.set_epoch(2)
    assert sorted(next(iter(loader)).dialogue_ids) == ["easy", "easy2", "hard", "mid"]


# ----------------------------------------------------------------------------- train-graph integration
TINY_TRAIN = dict(dataset="synthetic", synthetic_dialogues=24, hidden_dim=16, layers=[1, 1, 1], win_p=2, win_f=2,
                  shift_win=3, batch_size=4, eval_batch_size=3, lr=3.0e-3, num_threads=1, progress=False,
                  valid_fraction=0.2)


class _Interrupted(Exception):
    pass


def test_train_graph_with_cmerc_options_reports_calibration_and_resumes(tmp_path):
    """Curriculum + the three CMERC losses: the logged total is the weighted sum of its logged parts, the
    pool of every epoch is pool_size() of the training set, and a run killed after epoch 2 and resumed
    ends with exactly the epochs.csv of an uninterrupted run."""
    import pandas as pd

    from erc.core.io import read_json
    from erc.core.config import config_from_flat
    from erc.data.dialogues import load_splits
    from erc.graph.config import GraphTrainConfig
    from erc.graph.curriculum import pool_size
    from erc.graph.train import run_train_graph

    flags = dict(curriculum=True, epoch_ratio=0.5, curriculum_init_fraction=0.25, rank_coef=0.005,
                 mscl_coef=0.05, cscl_coef=0.05)

    def config(name):
        return config_from_flat(GraphTrainConfig, {**TINY_TRAIN, **flags, "epochs": 4,
                                                   "output_dir": str(tmp_path / name)})

    cfg = config("full")
    run_train_graph(cfg)
    seed_dir = tmp_path / "full" / "seed_0"
    hist = pd.read_csv(seed_dir / "epochs.csv")
    assert hist["epoch"].tolist() == [0, 1, 2, 3]

    # total = lambda-weighted task losses + coef-weighted CMERC losses, each logged part a batch mean
    weighted = (cfg.lambda_emo * hist["loss_emo"] + cfg.lambda_sen * hist["loss_sen"]
                + cfg.lambda_shift * hist["loss_sft"] + 0.005 * hist["loss_rank"]
                + 0.05 * hist["loss_mscl"] + 0.05 * hist["loss_cscl"])
    np.testing.assert_allclose(hist["loss"], weighted, rtol=1e-5)
    assert (hist[["loss_rank", "loss_mscl", "loss_cscl"]] > 0).all().all()

    # the pool: ceil(N min(1, 0.25 + 0.75 e / (0.5 * 4))) of the N training dialogues
    n_train = len(load_splits(cfg.data).train)
    assert hist["curriculum_pool"].tolist() == [pool_size(e, 4, n_train, 0.5, 0.25) for e in range(4)]
    assert hist["curriculum_pool"].tolist() == [math.ceil(n_train * f) for f in (0.25, 0.625, 1.0, 1.0)]

    for col in ("valid_ece", "valid_mce", "valid_nll", "valid_brier"):
        assert hist[col].notna().all()
    best = seed_dir / "best_model"
    for name in ("reliability_test.png", "reliability_test_ts.png", "calibration.json"):
        assert (best / name).is_file()
    res = read_json(tmp_path / "full" / "results.json")
    assert 0 <= res["test_ece_mean"] <= 1 and res["test_temperature_mean"] > 0

    # killed after epoch 2 (its checkpoint written), then resumed: the same history, number for number
    def stop_after_second(info):
        if info["epoch"] == 1:
            raise _Interrupted
    with pytest.raises(_Interrupted):
        run_train_graph(config("resumed"), on_epoch_end=stop_after_second)
    resumed_dir = tmp_path / "resumed" / "seed_0"
    state = read_json(resumed_dir / "checkpoints" / "epoch_2" / "trainer_state.json")
    assert state["curriculum"]["epoch"] == 1 and len(pd.read_csv(resumed_dir / "epochs.csv")) == 2
    run_train_graph(config("resumed"))
    pd.testing.assert_frame_equal(pd.read_csv(resumed_dir / "epochs.csv"), hist)
    assert read_json(resumed_dir / "result.json")["test"] == read_json(seed_dir / "result.json")["test"]
