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


def test_default_anchor_file_is_found_from_another_working_directory(tmp_path, monkeypatch):
    """The shipped relative default resolves from the project root when the run starts elsewhere."""
    monkeypatch.chdir(tmp_path)
    assert load_anchors("configs/vad_anchors.yaml").phrases == load_anchors(ANCHOR_FILE).phrases
    with pytest.raises(ConfigError, match="missing.yaml does not exist"):
        load_anchors("configs/missing.yaml")


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


# A stub NLI model with known entailment logits. Each (utterance, hypothesis) pair gets the logit
# ln(w) + offset(utterance), so the single-label softmax over one dimension's phrases is w / sum(w)
# and the high pole's mass is a ratio of integers computed by hand below. The contradiction logit
# is a constant 2: a multi-label (entailment vs contradiction) pipeline would give other numbers.
STUB_ANCHORS = Anchors({"valence": {"high": ("happy", "glad"), "low": ("sad",)},
                        "arousal": {"high": ("excited", "furious"), "low": ("tired",)},
                        "dominance": {"high": ("angry",), "low": ("lonely", "miserable")}})
STUB_TEXTS = ["i feel glad about the trip", "they am so furious right now"]
STUB_TEMPLATE = "it is {}"
STUB_WEIGHTS = [  # per utterance: phrase -> w
    {"happy": 1, "glad": 2, "sad": 5, "excited": 3, "furious": 1, "tired": 4,
     "angry": 1, "lonely": 1, "miserable": 2},
    {"happy": 6, "glad": 1, "sad": 1, "excited": 1, "furious": 1, "tired": 6,
     "angry": 9, "lonely": 2, "miserable": 1},
]
STUB_OFFSET = [0.0, 10.0]  # a shift per utterance: softmax over one utterance's phrases ignores it
# p_high by hand: utterance 0: V (1+2)/8, A (3+1)/8, D 1/4; utterance 1: V 7/8, A 2/8, D 9/12
STUB_P_HIGH = np.array([[3 / 8, 4 / 8, 1 / 4], [7 / 8, 2 / 8, 9 / 12]])
STUB_VAD = np.array([[2.5, 3.0, 2.0], [4.5, 2.0, 4.0]])  # 1 + 4 * p_high on the 1-5 scale


def _install_stub_logits(nli: NLIZeroShot) -> list:
    """Replace the pipeline model's forward by a lookup of the (premise, hypothesis) token ids."""
    import torch
    from transformers.modeling_outputs import SequenceClassifierOutput

    tok = nli.pipe.tokenizer
    table = {}
    for i, text in enumerate(STUB_TEXTS):
        for phrase, w in STUB_WEIGHTS[i].items():
            ids = tuple(tok(text, STUB_TEMPLATE.format(phrase))["input_ids"])
            table[ids] = float(np.log(w)) + STUB_OFFSET[i]
    assert len(table) == sum(len(w) for w in STUB_WEIGHTS)   # every pair tokenises differently
    ent = nli.pipe.model.config.label2id["entailment"]
    calls = []

    def forward(input_ids=None, attention_mask=None, **kwargs):
        rows = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            logit = [2.0, 0.0, 0.0]
            logit[ent] = table[tuple(t for t, m in zip(ids, mask) if m)]
            rows.append(logit)
        calls.append(len(rows))
        return SequenceClassifierOutput(logits=torch.tensor(rows))

    nli.pipe.model.forward = forward
    return calls


def test_nli_zero_shot_matches_hand_softmax_of_stub_logits(tiny_nli_dir):
    nli = NLIZeroShot(str(tiny_nli_dir), STUB_ANCHORS, STUB_TEMPLATE, batch_size=4)
    calls = _install_stub_logits(nli)
    for j, dim in enumerate(("valence", "arousal", "dominance")):
        np.testing.assert_allclose(nli.pole_probability(STUB_TEXTS, dim), STUB_P_HIGH[:, j], atol=1e-6)
    assert calls and max(calls) > 1            # batched through the pipeline (padding stripped by mask)
    v = nli.predict(STUB_TEXTS)
    np.testing.assert_allclose(v, STUB_VAD, atol=1e-5)
    assert nli.predict([]).shape == (0, 3)
    other = NLIZeroShot(str(tiny_nli_dir), STUB_ANCHORS, STUB_TEMPLATE, scale=(-1.0, 1.0), batch_size=2)
    _install_stub_logits(other)
    np.testing.assert_allclose(other.predict(STUB_TEXTS), 2 * STUB_P_HIGH - 1, atol=1e-5)
