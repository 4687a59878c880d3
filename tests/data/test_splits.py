"""The one split function (erc.data.splits): rounding rule, three ways, never a dialogue in two splits."""
from __future__ import annotations

import numpy as np
import pytest

from erc.core.config import ConfigError
from erc.data.splits import (carve_count, hold_out_last_session, session_lists_leave_one_out, split_ids,
                             split_rows)


def _ids(masks, dialogues):
    return {k: sorted({str(d) for d, keep in zip(dialogues, m) if keep}) for k, m in masks.items()}


def test_one_rounding_rule_by_hand():
    assert carve_count(0.1, 50) == 5
    assert carve_count(0.1, 5) == 1            # round(0.5) = 0 (half to even), but a split asked for gets one
    assert carve_count(0.25, 10) == 2           # round(2.5) = 2
    assert carve_count(0.35, 10) == 4           # round(3.5) = 4
    assert carve_count(0.99, 10) == 9           # training keeps one
    assert carve_count(0.0, 10) == 0 and carve_count(0.5, 1) == 0 and carve_count(0.5, 0) == 0


def test_dialogue_split_seeded_order_free_and_in_carve_order():
    ids = [f"d{i:02d}" for i in range(20)]
    rows = [d for d in ids for _ in range(3)]                   # 3 utterances per dialogue
    m = split_rows(rows, "dialogue", fractions={"test": 0.2, "valid": 0.1}, seed=5)
    got = _ids(m, rows)
    assert (len(got["test"]), len(got["valid"]), len(got["train"])) == (4, 2, 14)
    # reference: sorted ids permuted by default_rng(seed); test takes the first 4, valid the next 2
    perm = [sorted(ids)[i] for i in np.random.default_rng(5).permutation(20)]
    assert got["test"] == sorted(perm[:4]) and got["valid"] == sorted(perm[4:6])
    again = split_rows(list(reversed(rows)), "dialogue", fractions={"test": 0.2, "valid": 0.1}, seed=5)
    assert _ids(again, list(reversed(rows))) == got                # file order does not matter
    other = _ids(split_rows(rows, "dialogue", fractions={"test": 0.2, "valid": 0.1}, seed=6), rows)
    assert other["test"] != got["test"]
    assert all(m["train"] ^ m["valid"] ^ m["test"])              # every row in exactly one split


@pytest.mark.parametrize("n,frac,seed", [(40, 0.1, 0), (43, 0.2, 3), (7, 0.25, 1), (60, 0.1, 11)])
def test_dialogue_split_equals_the_three_old_implementations(n, frac, seed):
    """Behaviour unchanged where the old code paths were used (their formulas, written out here)."""
    ids = [f"Ses{i % 5 + 1:02d}_dlg{i:03d}" for i in range(n)]
    uniq = np.array(sorted(ids))
    # old erc/data/dialogues.py carve_validation (graph: valid carved from train)
    k = int(round(frac * n))
    k = min(max(k, 1), n - 1)
    old_valid = {uniq[i] for i in np.random.default_rng(seed).permutation(n)[:k]}
    m = split_rows(ids, "dialogue", fractions={"valid": frac}, seed=seed)
    assert set(split_ids(ids, m)["valid"]) == old_valid
    # old erc/compare/data.py split_table (seeded test split)
    old_test = set(np.random.default_rng(seed).permutation(uniq)[:max(1, int(round(frac * n)))])
    m = split_rows(ids, "dialogue", fractions={"test": frac}, seed=seed)
    assert set(split_ids(ids, m)["test"]) == old_test
    # old erc/vad/data.py assign_splits (dialogue mode: test first, then validation)
    perm = uniq[np.random.default_rng(seed).permutation(n)]
    n_t, n_v = int(round(frac * n)), int(round(frac * n))
    m = split_rows(ids, "dialogue", fractions={"test": frac, "valid": frac}, seed=seed)
    got = split_ids(ids, m)
    if n_t and n_v:
        assert set(got["test"]) == set(perm[:n_t]) and set(got["valid"]) == set(perm[n_t:n_t + n_v])


def test_session_split_with_the_rest_and_leave_one_out():
    rows = ["a", "a", "b", "c", "d", "e"]
    sess = [1, 1, 2, 3, 4, 5]
    m = split_rows(rows, "session", sessions=sess, session_lists={"train": None, "test": [5]})
    assert _ids(m, rows) == {"train": ["a", "b", "c", "d"], "valid": [], "test": ["e"]}
    m = split_rows(rows, "session", sessions=sess, session_lists={"train": [1, 2], "valid": [3], "test": [4]})
    assert _ids(m, rows) == {"train": ["a", "b"], "valid": ["c"], "test": ["d"]}    # session 5 in none
    assert session_lists_leave_one_out([1, 2, 3, 4, 5], 2) == {"train": [3, 4, 5], "valid": [1], "test": [2]}
    assert session_lists_leave_one_out([1, 2, 3], 1) == {"train": [2], "valid": [3], "test": [1]}
    assert hold_out_last_session([3, 1, 2]) == {"train": [1, 2], "valid": [3]}
    with pytest.raises(ConfigError, match="train_sessions"):
        hold_out_last_session([1])
    with pytest.raises(ConfigError, match="leave_one_session_out"):
        session_lists_leave_one_out([1, 2], 7)


def test_column_split_reads_user_names_and_refuses_others():
    rows = ["a", "b", "c", "d", "e"]
    m = split_rows(rows, "column", column=["train", "dev", "validation", "test", None])
    assert _ids(m, rows) == {"train": ["a"], "valid": ["b", "c"], "test": ["d"]}     # e: no split
    with pytest.raises(ConfigError, match=r"t\.csv: split value 'holdout'"):
        split_rows(rows, "column", column=["train", "holdout", "test", "test", "test"], source="t.csv")


def test_a_dialogue_is_never_in_two_splits():
    rows = ["a", "a", "b"]
    with pytest.raises(ConfigError, match=r"t\.csv: dialogue\(s\) \['a'\] are in train and test"):
        split_rows(rows, "column", column=["train", "test", "test"], source="t.csv")
    # valid and test may be the same rows only when the caller says so (test = validation)
    sess = [4, 4, 1]
    lists = {"train": [1], "valid": [4], "test": [4]}
    with pytest.raises(ConfigError, match="are in valid and test"):
        split_rows(rows, "session", sessions=sess, session_lists=lists)
    m = split_rows(rows, "session", sessions=sess, session_lists=lists, allow_valid_test_overlap=True)
    assert _ids(m, rows) == {"train": ["b"], "valid": ["a"], "test": ["a"]}
