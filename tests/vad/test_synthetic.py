import numpy as np

from erc.data.synthetic import EMOTIONS, VAD_MEANS, generate_corpus


def test_deterministic_and_marked_synthetic():
    a, b = generate_corpus(n_dialogues=10, seed=3), generate_corpus(n_dialogues=10, seed=3)
    assert a.utterances.equals(b.utterances) and np.array_equal(a.audio, b.audio)
    assert a.utterances["synthetic"].all()
    assert a.utterances["utterance_id"].str.startswith("Syn").all()
    assert not generate_corpus(n_dialogues=10, seed=4).utterances.equals(a.utterances)


def test_vad_tracks_emotion_and_features_separate():
    c = generate_corpus(n_dialogues=80, seed=0)
    u = c.utterances
    for emo in EMOTIONS:
        got = u[u.emotion == emo][["valence", "arousal", "dominance"]].mean().to_numpy()
        assert np.abs(got - np.array(VAD_MEANS[emo])).max() < 0.15
    assert u[["valence", "arousal", "dominance"]].to_numpy().min() >= 1.0
    # class means of audio differ far more than the within-class noise of a mean
    means = np.stack([c.audio[(u.emotion == e).to_numpy()].mean(0) for e in EMOTIONS])
    assert np.linalg.norm(means[0] - means[1]) > 2.0


def test_two_speakers_and_monotone_time():
    u = generate_corpus(n_dialogues=5, seed=1).utterances
    for _, d in u.groupby("dialogue_id"):
        assert set(d.speaker) <= {"M", "F"}
        assert (d.end > d.start).all() and (np.diff(d.start.to_numpy()) > 0).all()
