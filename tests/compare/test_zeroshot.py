"""Zero-shot predictors: anchor projection math, its range and determinism on the tiny encoder, NLI."""
from __future__ import annotations

import numpy as np
import pytest

from erc.compare.zeroshot import AnchorProjector, Anchors, NLIZeroShot, fixed_scale_map, load_anchors
from erc.core.config import ConfigError

ANCHOR_FILE = "configs/vad_anchors.yaml"


def toy_anchors() -> Anchors:
    return Anchors({d: {"high": (f"{d} up",), "low": (f"{d} down",)}
                    for d in ("valence", "arousal", "dominance")})


def lookup_embedder(table: dict):
    return lambda texts: np.array([table[t] for t in texts], dtype=np.float64)


def test_projection_matches_hand_computation():
    # Each pole is one phrase with a known embedding; check s = cos(high) - cos(low) and the map.
    table = {"valence up": [1, 0, 0], "valence down": [-1, 0, 0],
             "arousal up": [0, 2, 0], "arousal down": [0, 0, 3],
             "dominance up": [1, 1, 0], "dominance down": [1, -1, 0],
             "u1": [1, 0, 0], "u2": [0, 1, 1]}
    proj = AnchorProjector(lookup_embedder(table), toy_anchors(), temperature=0.5, scale=(1.0, 5.0))
    s = proj.scores(np.array([table["u1"], table["u2"]], dtype=float))
    r2 = 1 / np.sqrt(2)
    expected = np.array([[1 - (-1), 0 - 0, r2 - r2],
                         [0 - 0, r2 - r2, r2 * r2 - (-r2 * r2)]])
    np.testing.assert_allclose(s, expected, atol=1e-12)
    v = proj.predict(["u1", "u2"])
    np.testing.assert_allclose(v, 1 + 4 / (1 + np.exp(-expected / 0.5)), atol=1e-12)
    # equally close to both poles -> exactly the midpoint of the scale
    assert v[0, 1] == pytest.approx(3.0) and v[1, 0] == pytest.approx(3.0)


def test_pole_centroid_is_mean_of_normalised_phrases():
    anchors = Anchors({d: {"high": ("a", "b"), "low": ("c",)} for d in ("valence", "arousal", "dominance")})
    table = {"a": [10, 0], "b": [0, 1], "c": [-1, 0]}
    proj = AnchorProjector(lookup_embedder(table), anchors)
    np.testing.assert_allclose(proj.centroids[0, 0], [1 / np.sqrt(2), 1 / np.sqrt(2)])


def test_map_is_monotone_and_bounded():
    x = np.linspace(-5, 5, 101)
    y = fixed_scale_map(x, 1.0, 5.0)
    assert y.min() == 1.0 and y.max() == 5.0 and np.all(np.diff(y) >= 0)


def test_anchor_file_in_repo_is_valid():
    a = load_anchors(ANCHOR_FILE)
    for d in ("valence", "arousal", "dominance"):
        assert len(a.pole(d, "high")) >= 3 and len(a.pole(d, "low")) >= 3


def test_bad_anchor_file_names_the_field(tmp_path):
    p = tmp_path / "a.yaml"
    p.write_text("valence: {high: [good], low: []}\narousal: {high: [x], low: [y]}\n"
                 "dominance: {high: [x], low: [y]}\n")
    with pytest.raises(ConfigError, match=r"a\.yaml.*valence\.low"):
        load_anchors(p)


def test_anchor_projection_on_tiny_encoder_in_scale_and_deterministic(tiny_encoder_dir, synthetic_corpus):
    from erc.encoders.hf import encode_texts, load_encoder

    texts = synthetic_corpus.texts[:60]
    runs = []
    for _ in range(2):  # two independent loads of the saved folder
        model, tok = load_encoder(str(tiny_encoder_dir))
        proj = AnchorProjector(lambda t: encode_texts(model, tok, t, pooling="mean", batch_size=16),
                               load_anchors(ANCHOR_FILE), temperature=0.1)
        runs.append(proj.predict(texts))
    a, b = runs
    assert a.shape == (60, 3)
    assert np.all((a >= 1.0) & (a <= 5.0))
    np.testing.assert_array_equal(a, b)
    assert np.ptp(a, axis=0).min() > 0  # not a constant: it does depend on the utterance


@pytest.fixture(scope="module")
def tiny_nli_dir(tmp_path_factory, tiny_encoder_dir):
    """A tiny RobertaForSequenceClassification with MNLI-style labels, saved and reloaded locally."""
    import torch
    from transformers import AutoTokenizer, RobertaConfig, RobertaForSequenceClassification

    cfg = RobertaConfig.from_pretrained(tiny_encoder_dir)
    cfg.num_labels = 3
    cfg.id2label = {0: "contradiction", 1: "neutral", 2: "entailment"}
    cfg.label2id = {v: k for k, v in cfg.id2label.items()}
    torch.manual_seed(0)
    model = RobertaForSequenceClassification(cfg)
    out = tmp_path_factory.mktemp("tiny_nli")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_encoder_dir).save_pretrained(out)
    return out


def test_nli_zero_shot_probabilities_and_scale(tiny_nli_dir, synthetic_corpus):
    texts = synthetic_corpus.texts[:8]
    anchors = load_anchors(ANCHOR_FILE)
    nli = NLIZeroShot(str(tiny_nli_dir), anchors, "{}", batch_size=4)
    p = nli.pole_probability(texts, "valence")
    # reference: the pipeline's softmax over all phrases, high-pole mass summed by hand
    high = set(anchors.pole("valence", "high"))
    labels = list(anchors.pole("valence", "high") + anchors.pole("valence", "low"))
    ref = []
    for t in texts:
        r = nli.pipe(t, candidate_labels=labels, hypothesis_template="{}", multi_label=False)
        assert sum(r["scores"]) == pytest.approx(1.0, abs=1e-5)
        ref.append(sum(s for lab, s in zip(r["labels"], r["scores"]) if lab in high))
    np.testing.assert_allclose(p, ref, atol=1e-6)
    v = nli.predict(texts)
    assert v.shape == (8, 3) and np.all((v >= 1) & (v <= 5))
    np.testing.assert_allclose(v[:, 0], 1 + 4 * p, atol=1e-6)
    np.testing.assert_array_equal(v, nli.predict(texts))
