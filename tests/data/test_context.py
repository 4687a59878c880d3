"""Context-aware inputs against hand-written expectations: nearest turns first, far side cut first."""
from __future__ import annotations

import pytest

from erc.data.context import TARGET_MARK, context_inputs


def words(strings):            # a stand-in tokenizer: one token per whitespace-separated word
    return [len(s.split()) for s in strings]


TEXTS = ["hello there", "how are you", "fine thanks", "and you", "great"]
DLG = ["d1", "d1", "d1", "d1", "d2"]
SPK = ["A", "B", "A", "B", "C"]


def test_no_context_is_the_plain_text():
    targets, contexts = context_inputs(TEXTS, DLG, SPK, 0, 0, words, 64)
    assert targets == TEXTS and contexts is None


def test_past_and_future_turns_in_dialogue_order_within_the_dialogue():
    targets, contexts = context_inputs(TEXTS, DLG, SPK, 2, 1, words, 64, special_tokens=4)
    assert targets[2] == "A: fine thanks"
    assert contexts[2] == f"A: hello there | B: how are you | {TARGET_MARK} | B: and you"
    assert contexts[0] == f"{TARGET_MARK} | B: how are you"                 # nothing before the first turn
    assert contexts[3] == f"B: how are you | A: fine thanks | {TARGET_MARK}"
    assert contexts[4] == TARGET_MARK                                        # d2 has one turn: no context


def test_the_far_side_is_cut_first_and_the_target_never():
    # budget for row 3 = 14 - 4 special - 3 ("B: and you") - 1 mark = 6 tokens; each turn costs words + 1 ("|"):
    # "A: fine thanks" (4) fits, then "B: how are you" (5) does not: the past side stops there
    targets, contexts = context_inputs(TEXTS, DLG, SPK, 3, 0, words, 14, special_tokens=4)
    assert contexts[3] == f"A: fine thanks | {TARGET_MARK}"
    _, contexts = context_inputs(TEXTS, DLG, SPK, 3, 0, words, 8, special_tokens=4)
    assert contexts[3] == TARGET_MARK and targets[3] == "B: and you"


def test_rows_of_a_dialogue_need_not_be_adjacent():
    texts = ["a1", "b1", "a2", "b2"]
    _, contexts = context_inputs(texts, ["a", "b", "a", "b"], None, 1, 0, words, 64)
    assert contexts == [TARGET_MARK, TARGET_MARK, f"a1 | {TARGET_MARK}", f"b1 | {TARGET_MARK}"]


def test_bad_arguments():
    with pytest.raises(ValueError, match=">= 0"):
        context_inputs(TEXTS, DLG, SPK, -1, 0, words, 64)
    with pytest.raises(ValueError, match="5 texts, 4 dialogue ids"):
        context_inputs(TEXTS, DLG[:4], SPK, 1, 0, words, 64)
