"""Splits, train-only normalisation, loaders, and sharding over two processes."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from erc.data.config import DialogueDataConfig
from erc.data.dialogues import (carve_validation, load_splits, make_loader, merge_dialogue_records,
                         split_by_dialogue)
from erc.data.synthetic_pickles import write_layout_pickle


@pytest.fixture(scope="module")
def splits():
    return load_splits(DialogueDataConfig(dataset="synthetic", modalities=["text", "audio", "timing"],
                                          synthetic_dialogues=30, split_seed=3))


def test_carve_is_seeded_disjoint_and_order_free():
    ids = [f"d{i}" for i in range(50)]
    tr, va = carve_validation(ids, 0.1, seed=7)
    assert len(va) == 5 and set(tr) | set(va) == set(ids) and not set(tr) & set(va)
    tr2, va2 = carve_validation(list(reversed(ids)), 0.1, seed=7)
    assert set(va2) == set(va)                      # depends on ids and seed, not file order
    assert set(carve_validation(ids, 0.1, seed=8)[1]) != set(va)


def test_splits_honest(splits):
    ids = {n: {d.dialogue_id for d in splits.split(n)} for n in ("train", "valid", "test")}
    assert not ids["train"] & ids["valid"] and not ids["train"] & ids["test"] and not ids["valid"] & ids["test"]
    # validation comes from the training sessions (1-4), test is session 5
    assert all(not i.startswith("Syn05") for i in ids["valid"]) and all(i.startswith("Syn05") for i in ids["test"])
    assert len(ids["valid"]) == round(0.1 * (len(ids["train"]) + len(ids["valid"])))
    assert splits.num_classes == 6 and splits.label_names[0] == "hap"


def test_file_valid_ids_are_used(tmp_path):
    path = write_layout_pickle(tmp_path / "m.pkl", "meld", n_dialogues=16, seed=0)
    import pickle

    obj = pickle.loads(path.read_bytes())
    s = load_splits(DialogueDataConfig(dataset="meld", path=str(path), modalities=["text"], valid_fraction=0.5))
    assert [d.dialogue_id for d in s.valid] == list(obj[13])       # validVid, ratio ignored
    assert [d.dialogue_id for d in s.test] == list(obj[12])


def test_normalisation_fitted_on_train_only(splits):
    raw = load_splits(DialogueDataConfig(dataset="synthetic", modalities=["text", "audio", "timing"],
                                         synthetic_dialogues=30, split_seed=3, normalize=[]))
    for m in ("audio", "timing"):
        tr = np.concatenate([d.features[m] for d in splits.train])
        np.testing.assert_allclose(tr.mean(0), 0, atol=1e-4)
        np.testing.assert_allclose(tr.std(0), 1, atol=1e-3)
        raw_tr = np.concatenate([d.features[m] for d in raw.train]).astype(np.float64)
        mu, sd = raw_tr.mean(0), raw_tr.std(0)
        np.testing.assert_allclose(splits.test[0].features[m], (raw.test[0].features[m] - mu) / sd,
                                   rtol=1e-4, atol=1e-4)
    # text is not in the default normalize list
    np.testing.assert_array_equal(splits.train[0].features["text"], raw.train[0].features["text"])


def test_modality_subsets():
    for mods in (["text"], ["text", "timing"], ["audio", "visual"], ["text", "audio", "visual", "timing"]):
        s = load_splits(DialogueDataConfig(dataset="synthetic", modalities=mods, synthetic_dialogues=10))
        assert list(s.dims) == mods and all(list(d.features) == mods for d in s.train)


def test_loader_batches_whole_dialogues(splits):
    loader = make_loader(splits.train, batch_size=4, shuffle=True, seed=0)
    seen = []
    for b in loader:
        assert b.features["audio"].shape == (b.num_nodes, splits.dims["audio"])
        for k, i in enumerate(b.dialogue_index.tolist()):
            d = splits.train[i]
            assert b.dialogue_ids[k] == d.dialogue_id
            rows = slice(int(b.ptr[k]), int(b.ptr[k + 1]))
            np.testing.assert_array_equal(b.labels[rows].numpy(), d.labels)
            np.testing.assert_array_equal(b.features["timing"][rows].numpy(), d.features["timing"])
        seen += b.dialogue_index.tolist()
    assert sorted(seen) == list(range(len(splits.train)))
    e1 = [b.dialogue_index.tolist() for b in loader]
    e2 = [b.dialogue_index.tolist() for b in loader]
    assert e1 != e2                                           # new order each epoch
    again = [i for b in make_loader(splits.train, 4, True, 0) for i in b.dialogue_index.tolist()]
    assert again == seen                                      # same seed, same first epoch


@pytest.mark.parametrize("even_batches", [True, False])
@pytest.mark.parametrize("batch_size", [3, 4])
def test_two_process_shards_cover_every_dialogue_once(splits, even_batches, batch_size):
    from accelerate.data_loader import prepare_data_loader

    dialogues = splits.valid + splits.test + splits.train[:6]   # 17 dialogues: uneven on purpose
    per_proc, records = [], []
    for rank in range(2):
        loader = prepare_data_loader(make_loader(dialogues, batch_size=batch_size), num_processes=2,
                                     process_index=rank, even_batches=even_batches, put_on_device=False)
        idx = []
        for b in loader:
            idx += b.dialogue_index.tolist()
            records += split_by_dialogue(b, label=b.labels, pred=b.labels.flip(0))
        per_proc.append(idx)
    # distinct shards: every dialogue is in exactly one process's shard, apart from even_batches padding
    # (which repeats dialogues from the start of the split)
    union = set(per_proc[0]) | set(per_proc[1])
    assert union == set(range(len(dialogues)))
    if not even_batches:
        assert not set(per_proc[0]) & set(per_proc[1])
        assert len(per_proc[0]) + len(per_proc[1]) == len(dialogues)
    merged = merge_dialogue_records(records, expected=len(dialogues))   # gathered records, de-duplicated
    assert [r["dialogue_index"] for r in merged] == list(range(len(dialogues)))
    for r in merged:
        np.testing.assert_array_equal(r["label"], dialogues[r["dialogue_index"]].labels)
    assert sum(len(r["label"]) for r in merged) == sum(len(d) for d in dialogues)


def test_merge_reports_missing():
    with pytest.raises(ValueError, match="saw 1 of 3 dialogues; missing indices \\[0, 2\\]"):
        merge_dialogue_records([{"dialogue_index": 1}], expected=3)


ACCEL_SCRIPT = r'''
import json, os, sys
sys.path.insert(0, os.getcwd())
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from erc.data.config import DialogueDataConfig
from erc.data.dialogues import load_splits, make_loader, split_by_dialogue, merge_dialogue_records
acc = Accelerator(cpu=True)
s = load_splits(DialogueDataConfig(dataset="synthetic", modalities=["text", "audio"], synthetic_dialogues=25))
loader = acc.prepare(make_loader(s.test + s.valid, batch_size=2))
recs, mine = [], []
for b in loader:
    mine += b.dialogue_index.tolist()
    recs += split_by_dialogue(b, label=b.labels)
allrecs = gather_object(recs)
mine_all = gather_object([mine])
if acc.is_main_process:
    merged = merge_dialogue_records(allrecs, expected=len(s.test) + len(s.valid))
    json.dump({"shards": mine_all, "n": len(merged), "utts": int(sum(len(r["label"]) for r in merged)),
               "want_utts": sum(len(d) for d in s.test + s.valid)}, open(sys.argv[1], "w"))
'''


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes(tmp_path, project_root):
    script = tmp_path / "shard.py"
    script.write_text(ACCEL_SCRIPT)
    out = tmp_path / "out.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # accelerate launch --cpu needs mpirun for several CPU processes; torchrun gives the same env
    # (RANK, WORLD_SIZE, MASTER_ADDR) and Accelerator(cpu=True) then uses gloo
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                    "--master_port", "29531", str(script), str(out)],
                   cwd=project_root, check=True, env=env, timeout=300)
    import json

    res = json.loads(out.read_text())
    a, b = res["shards"]
    assert a and b and set(a) != set(b)                       # two real, distinct shards
    assert set(a) | set(b) == set(range(res["n"]))
    assert res["utts"] == res["want_utts"]
