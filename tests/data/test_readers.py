"""Each registered pickle layout, built synthetically in its exact tuple shape, read back faithfully."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from erc.data.config import DialogueDataConfig
from erc.data.dialogues import load_splits
from erc.data.readers import detect, read_corpus, read_meld_csv, read_pickle
from erc.data.registry import DATASETS, get_spec
from erc.data.synthetic_pickles import build_layout, write_layout_pickle

PICKLE_LAYOUTS = [n for n, s in DATASETS.items() if s.layout == "pickle"]
TUPLE_LENGTHS = {"iemocap6": 12, "iemocap4": 9, "meld": 14, "mosei": 9, "dialoguegcn_iemocap": 9,
                 "cosmic_iemocap": 6, "cosmic_meld": 7}
DIMS = {"iemocap6": (1024, 1582, 342), "iemocap4": (1024, 100, 512), "meld": (1024, 300, 342),
        "mosei": (1024, 384, 35), "dialoguegcn_iemocap": (100, 100, 512)}


def test_registry_facts():
    assert set(TUPLE_LENGTHS) <= set(DATASETS)
    for name, n in TUPLE_LENGTHS.items():
        assert len(DATASETS[name].fields) == n, name
    for name, (t, a, v) in DIMS.items():
        assert DATASETS[name].dims == {"text": t, "audio": a, "visual": v}, name
    assert DATASETS["iemocap6"].text_layers == 4 and DATASETS["meld"].text_layers == 4
    m = DATASETS["iemocap6"].emotion_to_sentiment
    assert {k for k, v in m.items() if v == "negative"} == {"sad", "ang", "fru"}
    assert {k for k, v in m.items() if v == "positive"} == {"hap", "exc"} and m["neu"] == "neutral"
    assert DATASETS["meld"].emotion_to_sentiment is None  # MELD has its own sentiments
    with pytest.raises(KeyError, match="registered"):
        get_spec("nope")


@pytest.mark.parametrize("name", PICKLE_LAYOUTS)
def test_each_layout_reads_back(tmp_path, name):
    obj = build_layout(name, n_dialogues=8, seed=3)
    path = write_layout_pickle(tmp_path / f"{name}.pkl", name, obj)
    spec = get_spec(name)
    assert detect(path) == [name]
    corpus = read_pickle(path, spec)
    f = dict(zip(spec.fields, obj))
    assert list(corpus.dialogues) == list(f["trainVid"]) + list(f.get("validVid", [])) + list(f["testVid"])
    vid = f["trainVid"][0]
    d = corpus.dialogues[vid]
    assert len(d) == len(f["videoLabels"][vid])
    assert d.texts == f["videoSentence"][vid]
    text_fields = [k for k in spec.fields if k.startswith("videoText")]
    assert len(d.text_layers) == len(text_fields)
    for layer, k in zip(d.text_layers, text_fields):
        np.testing.assert_array_equal(layer, f[k][vid])
    if "videoAudio" in f:
        np.testing.assert_array_equal(d.features["audio"], f["videoAudio"][vid])
        np.testing.assert_array_equal(d.features["visual"], f["videoVisual"][vid])
    if spec.score_class_bins is None:
        np.testing.assert_array_equal(d.labels, f["videoLabels"][vid])
    if "videoSentiments" in f:
        np.testing.assert_array_equal(d.sentiments, f["videoSentiments"][vid])
    if spec.speakers_are_onehot:  # S<k> from the one-hot index
        assert d.speakers == [f"S{int(np.argmax(s))}" for s in f["videoSpeakers"][vid]]
    else:
        assert d.speakers == f["videoSpeakers"][vid]


@pytest.mark.parametrize("mode,expected", [("0", lambda L: L[0]), ("3", lambda L: L[3]),
                                           ("concat", lambda L: np.concatenate(L, 1)),
                                           ("mean", lambda L: (L[0] + L[1] + L[2] + L[3]) / 4)])
def test_text_modes_on_four_layers(tmp_path, mode, expected):
    obj = build_layout("iemocap6", n_dialogues=6, seed=0)
    path = write_layout_pickle(tmp_path / "i6.pkl", "iemocap6", obj)
    splits = load_splits(DialogueDataConfig(dataset="iemocap6", path=str(path), modalities=["text"],
                                            text_mode=mode, normalize=[]))
    d = splits.train[0]
    f = dict(zip(get_spec("iemocap6").fields, obj))
    layers = [f[f"videoText{i}"][d.dialogue_id] for i in range(4)]
    np.testing.assert_allclose(d.features["text"], expected(layers), rtol=1e-6, atol=1e-6)
    assert splits.dims["text"] == (4096 if mode == "concat" else 1024)


def test_single_layer_file_rejects_layer_3(tmp_path):
    path = write_layout_pickle(tmp_path / "i4.pkl", "iemocap4", n_dialogues=5)
    with pytest.raises(ValueError, match="text_mode 3.*1 text layer"):
        load_splits(DialogueDataConfig(dataset="iemocap4", path=str(path), modalities=["text"], text_mode="3"))


def test_iemocap6_sentiments_from_emotions(tmp_path):
    obj = list(build_layout("iemocap6", n_dialogues=4, seed=0))
    spec = get_spec("iemocap6")
    f = dict(zip(spec.fields, obj))
    vid = f["trainVid"][0]
    n = len(f["videoLabels"][vid])
    f["videoLabels"][vid] = [i % 6 for i in range(n)]  # hap sad neu ang exc fru ...
    path = write_layout_pickle(tmp_path / "x.pkl", "iemocap6", [f[k] for k in spec.fields])
    d = read_pickle(path, spec).dialogues[vid]
    neg, neu, pos = 0, 1, 2
    np.testing.assert_array_equal(d.sentiments, [[pos, neg, neu, neg, pos, neg][i % 6] for i in range(n)])


def test_mosei_scores_to_classes_and_sentiments(tmp_path):
    spec = get_spec("mosei")
    obj = list(build_layout("mosei", n_dialogues=4, seed=0))
    f = dict(zip(spec.fields, obj))
    vid = f["trainVid"][0]
    # GraphSmile's bins: <-2 | [-2,-1) | [-1,0) | ==0 | (0,1] | (1,2] | >2
    scores = [-3.0, -2.01, -2.0, -1.5, -1.0, -0.01, 0.0, 0.01, 1.0, 1.5, 2.0, 2.01, 3.0]
    classes = [0, 0, 1, 1, 2, 2, 3, 4, 4, 5, 5, 6, 6]
    sentiments = [0] * 6 + [1] + [2] * 6
    n = len(scores)
    f["videoLabels"][vid] = scores
    f["videoSpeakers"][vid] = ["M"] * n
    f["videoSentence"][vid] = ["x"] * n
    f["videoIDs"][vid] = [str(i) for i in range(n)]
    for k in ("videoText", "videoAudio", "videoVisual"):
        f[k][vid] = np.zeros((n, spec.dims[{"videoText": "text", "videoAudio": "audio",
                                              "videoVisual": "visual"}[k]]), np.float32)
    d = read_pickle(write_layout_pickle(tmp_path / "m.pkl", "mosei", [f[k] for k in spec.fields]), spec
                    ).dialogues[vid]
    np.testing.assert_array_equal(d.labels, classes)
    np.testing.assert_array_equal(d.sentiments, sentiments)


def test_score_bins_cover_the_line_once():
    from erc.data.readers import bin_scores
    from erc.data.registry import MOSEI_CLASS_BINS, MOSEI_SENTIMENT_BINS

    x = np.concatenate([np.linspace(-5, 5, 2001), [-2, -1, 0, 1, 2]])
    for bins in (MOSEI_CLASS_BINS, MOSEI_SENTIMENT_BINS):
        assert (bin_scores(x, bins) >= 0).all()
    with pytest.raises(ValueError, match="overlap"):
        bin_scores(np.array([0.0]), ((-1, 0, True, True), (0, 1, True, True)))


def test_split_ids_as_sets_are_accepted(tmp_path):
    spec = get_spec("dialoguegcn_iemocap")
    obj = list(build_layout("dialoguegcn_iemocap", n_dialogues=6))
    f = dict(zip(spec.fields, obj))
    f["trainVid"], f["testVid"] = set(f["trainVid"]), set(f["testVid"])
    corpus = read_pickle(write_layout_pickle(tmp_path / "s.pkl", spec.name, [f[k] for k in spec.fields]), spec)
    assert set(corpus.splits["train"]) == f["trainVid"] and set(corpus.splits["test"]) == f["testVid"]


def test_meld_csv_reader(tmp_path):
    header = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
    rows = {"train": ['1,Hi there.,Ross,joy,positive,0,0,1,1,"00:00:01,000","00:00:02,500"',
                      '2,Go away!,Rachel,anger,negative,0,1,1,1,"00:00:02,000","00:00:03,000"'],
            "dev": ['1,Hm.,Joey,neutral,neutral,0,0,1,1,"00:01:00,000","00:01:00,400"'],
            "test": ['1,Wow!,Monica,surprise,positive,0,0,1,1,"01:00:00,000","01:00:01,000"']}
    for split, lines in rows.items():
        (tmp_path / f"{split}_sent_emo.csv").write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    assert detect(tmp_path) == ["meld_csv"]
    c = read_meld_csv(tmp_path, get_spec("meld_csv"))
    assert c.splits == {"train": ["train_0"], "valid": ["valid_0"], "test": ["test_0"]}
    d = c.dialogues["train_0"]
    assert d.speakers == ["Ross", "Rachel"] and d.texts == ["Hi there.", "Go away!"]
    np.testing.assert_array_equal(d.labels, [4, 6])          # joy, anger
    np.testing.assert_array_equal(d.sentiments, [1, 2])      # MELD's own: positive, negative
    np.testing.assert_allclose(d.start, [1.0, 2.0])
    np.testing.assert_allclose(c.dialogues["test_0"].end, [3601.0])
    s = load_splits(DialogueDataConfig(dataset="meld_csv", path=str(tmp_path), modalities=["text", "timing"],
                                       normalize=[], timing_transform="none"))
    np.testing.assert_allclose(s.train[0].features["timing"], [[1.5, 2 / 1.5, 0, 0], [1.0, 2.0, 0, 0.5]],
                               rtol=1e-6)


def test_iemocap_release_reader(synthetic_release, synthetic_corpus):
    c = read_corpus(get_spec("iemocap_release"), synthetic_release)
    df = synthetic_corpus.utterances
    assert c.num_utterances == len(df)
    assert set(c.splits["test"]) == set(df.loc[df.session == 5, "dialogue_id"])
    first = df.dialogue_id.iloc[0]
    d = c.dialogues[first]
    g = df[df.dialogue_id == first]
    assert d.utterance_ids == list(g.utterance_id) and d.texts == list(g.text)
    names = get_spec("iemocap_release").label_names
    assert [names[i] for i in d.labels] == list(g.emotion)
    # session 5 is unlabeled in the release written by the fixture
    assert all((c.dialogues[k].labels == -1).all() for k in c.splits["test"])


def test_synthetic_dataset_all_modalities():
    s = load_splits(DialogueDataConfig(dataset="synthetic", modalities=["text", "audio", "visual", "timing"],
                                       synthetic_dialogues=20))
    assert s.dims == {"text": 256, "audio": 32, "visual": 24, "timing": 4}
    assert all(d.dialogue_id.startswith("Syn05") for d in s.test)
    assert not any(d.dialogue_id.startswith("Syn05") for d in s.train + s.valid)
    again = load_splits(DialogueDataConfig(dataset="synthetic", modalities=["text"], synthetic_dialogues=20))
    np.testing.assert_array_equal(again.train[0].features["text"], s.train[0].features["text"])


def test_pickle_not_a_tuple(tmp_path):
    p = tmp_path / "bad.pkl"
    p.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match=r"bad.pkl: expected a 12-tuple .*got dict"):
        read_pickle(p, get_spec("iemocap6"))
    assert detect(p) == []
