"""Hashed text features, embedding files, and joining them to dialogues (match, missing, extra)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from erc.data.config import DialogueDataConfig
from erc.data.dialogues import load_splits
from erc.data.synthetic_pickles import write_layout_pickle
from erc.data.text import hash_featurize, join_embeddings, read_embeddings, write_embeddings
from erc.data.validate import DataValidationError


class Dlg:
    def __init__(self, did, n, uids=None):
        self.dialogue_id, self.n, self.utterance_ids = did, n, uids

    def __len__(self):
        return self.n


def test_hash_featurize_deterministic_and_normalised():
    x = hash_featurize(["I am so happy", "i am so HAPPY!", "", "sad"], dim=64)
    assert x.shape == (4, 64) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0], x[1])              # case and punctuation ignored
    np.testing.assert_allclose(np.linalg.norm(x[[0, 3]], axis=1), 1.0, rtol=1e-6)
    assert not x[2].any()
    # fixed md5 buckets: the same in another interpreter (Python's hash() would not be)
    code = "from erc.data.text import hash_featurize; print(hash_featurize(['I am so happy'], 64).tobytes().hex())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""}, cwd=str(__import__("pathlib").Path(
                             __file__).resolve().parents[2]))
    assert out.stdout.strip() == x[0].tobytes().hex()


def _table(tmp_path, keys_by_pos, uids=None, dim=3):
    dids = [d for d, _ in keys_by_pos]
    pos = [p for _, p in keys_by_pos]
    emb = np.arange(len(dids) * dim, dtype=np.float32).reshape(len(dids), dim)
    path = write_embeddings(tmp_path / "e.npz", emb, dids, pos, uids, model="test")
    return read_embeddings(path), emb


def test_join_by_position_in_any_row_order(tmp_path):
    table, emb = _table(tmp_path, [("b", 1), ("a", 0), ("b", 0), ("a", 1), ("a", 2)])
    got = join_embeddings(table, [Dlg("a", 3), Dlg("b", 2)], "auto")
    np.testing.assert_array_equal(got["a"], emb[[1, 3, 4]])
    np.testing.assert_array_equal(got["b"], emb[[2, 0]])


def test_join_by_utterance_id(tmp_path):
    table, emb = _table(tmp_path, [("x", 0), ("x", 1), ("x", 2)], uids=["u2", "u0", "u1"])
    got = join_embeddings(table, [Dlg("a", 3, ["u0", "u1", "u2"])], "auto")  # auto -> ids
    np.testing.assert_array_equal(got["a"], emb[[1, 2, 0]])


def test_join_missing_lists_first_ids(tmp_path):
    table, _ = _table(tmp_path, [("a", 0), ("a", 1)])
    with pytest.raises(DataValidationError, match=r"3 dataset utterance\(s\) have no embedding .*a#2, b#0, b#1"):
        join_embeddings(table, [Dlg("a", 3), Dlg("b", 2)], "position")


def test_join_extra_lists_first_ids(tmp_path):
    table, _ = _table(tmp_path, [("a", 0), ("a", 1), ("a", 2), ("z", 0)])
    with pytest.raises(DataValidationError, match=r"1 embedding row\(s\) match no dataset utterance .*z#0"):
        join_embeddings(table, [Dlg("a", 3)], "position")


def test_join_by_id_missing(tmp_path):
    table, _ = _table(tmp_path, [("x", 0), ("x", 1)], uids=["u0", "u1"])
    with pytest.raises(DataValidationError, match="have no embedding.*u2"):
        join_embeddings(table, [Dlg("a", 3, ["u0", "u1", "u2"])], "utterance_id")


def test_duplicate_keys_rejected(tmp_path):
    table, _ = _table(tmp_path, [("a", 0), ("a", 0)])
    with pytest.raises(DataValidationError, match="'a#0' appears twice"):
        join_embeddings(table, [Dlg("a", 1)], "position")


def test_embeddings_replace_pickle_text_layer(tmp_path):
    spec_name = "iemocap6"
    path = write_layout_pickle(tmp_path / "i6.pkl", spec_name, n_dialogues=5, seed=2)
    base = load_splits(DialogueDataConfig(dataset=spec_name, path=str(path), modalities=["text", "audio"]))
    dlgs = base.train + base.valid + base.test
    uids = [u for d in dlgs for u in d.utterance_ids]
    emb = np.random.default_rng(0).standard_normal((len(uids), 7)).astype(np.float32)
    order = np.random.default_rng(1).permutation(len(uids))  # rows shuffled in the file
    write_embeddings(tmp_path / "e.npz", emb[order], ["?"] * len(uids), [0] * len(uids),
                     [uids[i] for i in order])
    s = load_splits(DialogueDataConfig(dataset=spec_name, path=str(path), modalities=["text", "audio"],
                                       text_embeddings=str(tmp_path / "e.npz")))
    assert s.dims == {"text": 7, "audio": 1582}
    flat = np.concatenate([d.features["text"] for d in s.train + s.valid + s.test])
    by_id = dict(zip(uids, emb))
    want = np.stack([by_id[u] for d in s.train + s.valid + s.test for u in d.utterance_ids])
    np.testing.assert_array_equal(flat, want)


def test_embed_cli_on_cosmic_pickle_then_load(tmp_path, tiny_encoder_dir, project_root):
    """`cli.py embed` keys a COSMIC pickle (no utterance ids) by (dialogue, position); loading joins it."""
    pkl = write_layout_pickle(tmp_path / "c.pkl", "cosmic_iemocap", n_dialogues=5, seed=4)
    out = tmp_path / "emb.npz"
    subprocess.run([sys.executable, "cli.py", "embed", "--dataset", "cosmic_iemocap", "--path", str(pkl),
                    "--model", str(tiny_encoder_dir), "--output", str(out), "--batch-size", "8"],
                   cwd=project_root, check=True, capture_output=True, text=True)
    table = read_embeddings(out)
    assert not table.has_utterance_ids and (out.parent / "emb.npz.config.yaml").is_file()
    s = load_splits(DialogueDataConfig(dataset="cosmic_iemocap", path=str(pkl), modalities=["text"],
                                       text_embeddings=str(out)))
    from erc.encoders.hf import encode_texts, load_encoder

    model, tok = load_encoder(str(tiny_encoder_dir))
    d = s.test[0]
    np.testing.assert_allclose(d.features["text"], encode_texts(model, tok, d.texts, "mean", 8), atol=1e-5)
    # a dataset with one more dialogue than the file: a clear error, never a shift
    pkl2 = write_layout_pickle(tmp_path / "c2.pkl", "cosmic_iemocap", n_dialogues=6, seed=4)
    with pytest.raises(DataValidationError, match="have no embedding"):
        load_splits(DialogueDataConfig(dataset="cosmic_iemocap", path=str(pkl2), modalities=["text"],
                                       text_embeddings=str(out)))


def test_embed_with_finetuned_vad_folder(tmp_path, tiny_encoder_dir):
    """A fine-tuned VADRegressor folder embeds through its own encoder and pooling (cls here)."""
    import torch

    from erc.vad.config import EmbedConfig
    from erc.vad.embed import run_embed
    from erc.vad.model import VADRegressor

    torch.manual_seed(0)
    reg = VADRegressor.from_encoder_name(str(tiny_encoder_dir), pooling="cls")
    with torch.no_grad():                      # make it differ from the pretrained encoder
        for p in reg.encoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    folder = reg.save_pretrained(tmp_path / "best_model")
    out = run_embed(EmbedConfig(dataset="synthetic", synthetic_dialogues=6, model=str(folder),
                                pooling="mean", output=str(tmp_path / "e.npz"), batch_size=4))
    table = read_embeddings(out)
    assert table.has_utterance_ids
    s = load_splits(DialogueDataConfig(dataset="synthetic", synthetic_dialogues=6, modalities=["text"],
                                       text_embeddings=str(out)))
    d = s.train[0]
    want = VADRegressor.from_pretrained(folder).embed(d.texts, batch_size=4)
    np.testing.assert_allclose(d.features["text"], want, atol=1e-5)
