"""erc.hrg.data: turn strings, label words, tokenise once, collate, clear errors."""
from __future__ import annotations

import numpy as np
import pytest

from erc.data.batch import Dialogue
from erc.data.validate import DataValidationError
from erc.hrg.data import HRGDataset, label_string, label_words, make_hrg_loader, turn_string


def _dialogue(did, texts, speakers):
    n = len(speakers)
    return Dialogue(dialogue_id=did, features={}, labels=np.arange(n) % 6, speakers=np.asarray(speakers),
                    sentiments=np.zeros(n, dtype=np.int64), texts=texts)


def test_strings_and_words():
    assert label_words(["hap", "exc", "fru", "joy", "-3"]) == ["happy", "excited", "frustrated", "joy", "-3"]
    assert turn_string(1, "so fine") == "speaker B: so fine"
    assert label_string(0, "happy", "positive") == "speaker A: happy & positive"


def test_tokenised_once_and_collated(tiny_t5_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_t5_dir)
    d1 = _dialogue("d1", ["i feel happy", "okay"], [0, 1])
    d2 = _dialogue("d2", ["the trip was amazing today"], [1])
    ds = HRGDataset([d1, d2], tok, max_length=4)
    assert ds.tokens[0][0] == tok("speaker A: i feel happy", truncation=True, max_length=4)["input_ids"]
    assert all(len(ids) <= 4 for per in ds.tokens for ids in per)
    batch = next(iter(make_hrg_loader(ds, tok.pad_token_id, batch_size=2)))
    assert batch.input_ids.shape[0] == 3 and batch.dialogues.ptr.tolist() == [0, 2, 3]
    assert batch.attention_mask.sum(1).tolist() == [len(ids) for per in ds.tokens for ids in per]
    assert (batch.input_ids[batch.attention_mask == 0] == tok.pad_token_id).all()


def test_missing_transcripts_name_the_dialogue_and_field(tiny_t5_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_t5_dir)
    with pytest.raises(DataValidationError, match=r"file\.pkl: dialogue d9: field 'texts'"):
        HRGDataset([_dialogue("d9", None, [0, 1])], tok, 8, source="file.pkl")
