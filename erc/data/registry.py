"""The dataset registry: every dataset fact is data here, readers are chosen by ``layout``.

Defined here and nowhere else: the V/A/D dimension names (:data:`VAD_NAMES`), the
IEMOCAP emotion labels (:data:`IEMOCAP6_EMOTIONS`), the emotion-to-sentiment
maps, the emotion class sets used by the comparison (:data:`CLASS_SETS`:
``iemocap4`` and ``iemocap6``) and the datasets (:data:`DATASETS`).

``iemocap4`` has ONE meaning: the class set of 4 IEMOCAP emotions (anger,
happiness with excitement merged into it, sadness, neutral). The GraphSmile
IEMOCAP-4 pickle, whose integer labels encode 4 classes in another order, is
the dataset ``graphsmile_iemocap4``.

A :class:`DatasetSpec` says how a file is laid out (``layout`` picks the
reader in :mod:`erc.data.readers`, ``fields`` names the pickle tuple's members in
order), the feature dimension of every modality it carries, the label and
sentiment names, how emotions map to sentiments, how a continuous score is
binned (CMU-MOSEI), and where validation dialogues come from.

Modalities are ``text``, ``audio``, ``visual`` and ``timing``. ``text`` may be
carried as several layers (GraphSmile's four RoBERTa layers, ``text_layers``);
``dims["text"]`` is the dimension of ONE layer. ``timing`` (4 features from
real timestamps, see :mod:`erc.data.timing`) is available wherever
``timing_source`` says how to get timestamps.
"""
from __future__ import annotations

from dataclasses import dataclass, field

#: The three affect dimensions, in this order everywhere (columns, model outputs, metric names).
VAD_NAMES = ("valence", "arousal", "dominance")

IEMOCAP6_EMOTIONS = ("hap", "sad", "neu", "ang", "exc", "fru")  # COSMIC / GraphSmile order
#: Label order of the GraphSmile IEMOCAP-4 pickle (its integer labels 0-3).
GRAPHSMILE_IEMOCAP4_LABELS = ("hap", "sad", "neu", "ang")
MELD_EMOTIONS = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")
POLARITY = ("negative", "neutral", "positive")
MELD_SENTIMENTS = ("neutral", "positive", "negative")  # MELD's own label order (COSMIC meld.pkl)
MOSEI_CLASSES = ("-3", "-2", "-1", "0", "+1", "+2", "+3")

IEMOCAP_TO_SENTIMENT = {"sad": "negative", "ang": "negative", "fru": "negative",
                        "neu": "neutral", "hap": "positive", "exc": "positive"}


@dataclass(frozen=True)
class ClassSet:
    """Emotion classes for a classifier: raw emotion label -> class name, classes in output order.

    Raw labels missing from ``mapping`` (``xxx``, ``sur``, ``fea`` ...) are outside the
    set: left out, never relabelled.
    """

    name: str
    labels: tuple[str, ...]       # class names in output order
    mapping: dict                 # raw emotion -> class name
    description: str


CLASS_SETS: dict[str, ClassSet] = {
    "iemocap4": ClassSet(
        "iemocap4", ("ang", "hap", "sad", "neu"),
        {"ang": "ang", "hap": "hap", "exc": "hap", "sad": "sad", "neu": "neu"},
        "IEMOCAP 4 classes: anger, happiness (happy + excited merged), sadness, neutral"),
    "iemocap6": ClassSet(
        "iemocap6", IEMOCAP6_EMOTIONS, {e: e for e in IEMOCAP6_EMOTIONS},
        "IEMOCAP 6 classes (COSMIC order): happy, sad, neutral, angry, excited, frustrated"),
}
#: ``class_sets`` values: the registered sets, or ``all`` (every label of the training split).
CLASS_SET_CHOICES = (*CLASS_SETS, "all")

# CMU-MOSEI: a sentiment score in [-3, 3] per utterance, binned as GraphSmile's loader does.
# Each class is an interval (low, high, low_closed, high_closed); every score falls in exactly one.
# 7 classes: < -2 | [-2, -1) | [-1, 0) | exactly 0 | (0, 1] | (1, 2] | > 2.
INF = float("inf")
MOSEI_CLASS_BINS = ((-INF, -2.0, False, False), (-2.0, -1.0, True, False), (-1.0, 0.0, True, False),
                    (0.0, 0.0, True, True), (0.0, 1.0, False, True), (1.0, 2.0, False, True),
                    (2.0, INF, False, False))
# 3 sentiments (POLARITY order): < 0 negative | exactly 0 neutral | > 0 positive.
MOSEI_SENTIMENT_BINS = ((-INF, 0.0, False, False), (0.0, 0.0, True, True), (0.0, INF, False, False))

TIMING_DIM = 4
TIMING_FEATURES = ("duration", "words_per_second", "gap_to_previous", "overlap_with_previous")


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the loader needs to know about one dataset, as data."""

    name: str
    layout: str                                  # reader key in erc.data.readers.READERS
    description: str
    label_names: tuple[str, ...]
    sentiment_names: tuple[str, ...] = POLARITY
    # emotion name -> sentiment name; None when the file carries its own sentiments
    emotion_to_sentiment: dict[str, str] | None = None
    fields: tuple[str, ...] = ()                 # pickle tuple members, in order
    dims: dict[str, int] = field(default_factory=dict)   # modality -> feature dim (text: one layer)
    text_layers: int = 0                         # how many text layers the file holds (0: none)
    has_sentences: bool = True
    has_utterance_ids: bool = False              # utterance ids in the file (for joins)
    valid_source: str = "carve"                  # "file": the file's own valid ids; "carve": seeded split of train
    test_sessions: tuple[int, ...] = ()          # tables with sessions: the test sessions (the rest is train)
    # continuous labels -> class / sentiment index: one (low, high, low_closed, high_closed) per class
    score_class_bins: tuple[tuple[float, float, bool, bool], ...] | None = None
    score_sentiment_bins: tuple[tuple[float, float, bool, bool], ...] | None = None
    timing_source: str | None = None             # "release_join", "release_ids", "meld_csv", "table", None
    default_path: tuple[str, ...] | None = None  # under the real-data folder
    speakers_are_onehot: bool = False
    # sentences stored as text of this codec decoded as latin-1 (COSMIC MELD: cp1252); repaired on read
    sentence_codec: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities this dataset can provide (text may come from embeddings or a featuriser)."""
        mods = ["text"] + [m for m in ("audio", "visual") if m in self.dims]
        if self.timing_source is not None:
            mods.append("timing")
        return tuple(mods)


_GS_IEMOCAP6 = ("videoIDs", "videoSpeakers", "videoLabels", "videoText0", "videoText1", "videoText2",
                "videoText3", "videoAudio", "videoVisual", "videoSentence", "trainVid", "testVid")
_GS_IEMOCAP4 = ("videoIDs", "videoSpeakers", "videoLabels", "videoText", "videoAudio", "videoVisual",
                "videoSentence", "trainVid", "testVid")
_GS_MELD = ("videoIDs", "videoSpeakers", "videoLabels", "videoSentiments", "videoText0", "videoText1",
            "videoText2", "videoText3", "videoAudio", "videoVisual", "videoSentence", "trainVid",
            "testVid", "validVid")
_COSMIC_IEMOCAP = ("videoSpeakers", "videoLabels", "videoSentence", "trainVid", "testVid", "validVid")
_COSMIC_MELD = ("videoSpeakers", "videoLabels", "videoSentiments", "videoSentence", "trainVid",
                "testVid", "validVid")

DATASETS: dict[str, DatasetSpec] = {s.name: s for s in [
    DatasetSpec(
        name="iemocap6", layout="pickle", description="GraphSmile IEMOCAP-6 12-tuple (4 RoBERTa text layers)",
        label_names=IEMOCAP6_EMOTIONS, emotion_to_sentiment=IEMOCAP_TO_SENTIMENT, fields=_GS_IEMOCAP6,
        dims={"text": 1024, "audio": 1582, "visual": 342}, text_layers=4, has_utterance_ids=True,
        timing_source="release_ids"),
    DatasetSpec(
        name="graphsmile_iemocap4", layout="pickle",
        description="GraphSmile IEMOCAP-4 9-tuple (1 text layer; labels hap, sad, neu, ang)",
        label_names=GRAPHSMILE_IEMOCAP4_LABELS,
        emotion_to_sentiment={e: IEMOCAP_TO_SENTIMENT[e] for e in GRAPHSMILE_IEMOCAP4_LABELS},
        fields=_GS_IEMOCAP4,
        dims={"text": 1024, "audio": 100, "visual": 512}, text_layers=1, has_utterance_ids=True,
        timing_source="release_ids"),
    DatasetSpec(
        name="meld", layout="pickle", description="GraphSmile MELD 14-tuple (4 text layers, own sentiments)",
        label_names=MELD_EMOTIONS, sentiment_names=MELD_SENTIMENTS, fields=_GS_MELD,
        dims={"text": 1024, "audio": 300, "visual": 342}, text_layers=4, valid_source="file",
        speakers_are_onehot=True),
    DatasetSpec(
        name="mosei", layout="pickle",
        description="CMU-MOSEI in GraphSmile's 9-tuple layout; videoLabels are scores in [-3, 3]",
        label_names=MOSEI_CLASSES, fields=_GS_IEMOCAP4,
        dims={"text": 1024, "audio": 384, "visual": 35}, text_layers=1,
        score_class_bins=MOSEI_CLASS_BINS, score_sentiment_bins=MOSEI_SENTIMENT_BINS),
    DatasetSpec(
        name="dialoguegcn_iemocap", layout="pickle",
        description="DialogueRNN/DialogueGCN IEMOCAP 9-tuple (text 100, audio 100, visual 512)",
        label_names=IEMOCAP6_EMOTIONS, emotion_to_sentiment=IEMOCAP_TO_SENTIMENT, fields=_GS_IEMOCAP4,
        dims={"text": 100, "audio": 100, "visual": 512}, text_layers=1, has_utterance_ids=True,
        timing_source="release_ids"),
    DatasetSpec(
        name="cosmic_iemocap", layout="pickle",
        description="COSMIC IEMOCAP dialogues (speakers, labels, sentences, train/test/valid ids)",
        label_names=IEMOCAP6_EMOTIONS, emotion_to_sentiment=IEMOCAP_TO_SENTIMENT, fields=_COSMIC_IEMOCAP,
        valid_source="file", timing_source="release_join", default_path=("cosmic", "iemocap.pkl")),
    DatasetSpec(
        name="cosmic_meld", layout="pickle",
        description="COSMIC MELD dialogues (9-d one-hot speakers, emotion, sentiment, sentences)",
        label_names=MELD_EMOTIONS, sentiment_names=MELD_SENTIMENTS, fields=_COSMIC_MELD,
        valid_source="file", timing_source="meld_csv", default_path=("cosmic", "meld.pkl"),
        speakers_are_onehot=True, sentence_codec="cp1252"),
    DatasetSpec(
        name="meld_csv", layout="meld_csv",
        description="MELD {train,dev,test}_sent_emo.csv folder (dev = validation)",
        label_names=MELD_EMOTIONS, sentiment_names=MELD_SENTIMENTS, has_utterance_ids=True,
        valid_source="file", timing_source="table", default_path=("meld",)),
    DatasetSpec(
        name="iemocap_release", layout="iemocap_release",
        description=("IEMOCAP release root via erc.data.utterances.read_iemocap (6 classes, other emotions -1 = "
                     "unlabeled; session 5 = test, unlabeled in the shared copy)"),
        label_names=IEMOCAP6_EMOTIONS, emotion_to_sentiment=IEMOCAP_TO_SENTIMENT, has_utterance_ids=True,
        timing_source="table", default_path=("iemocap", "IEMOCAP_full_release"), test_sessions=(5,)),
    DatasetSpec(
        name="synthetic", layout="synthetic",
        description="erc.data.synthetic.generate_corpus: audio 32 + visual 24 + timing; session 5 = test",
        label_names=IEMOCAP6_EMOTIONS, emotion_to_sentiment=IEMOCAP_TO_SENTIMENT,
        dims={"audio": 32, "visual": 24}, has_utterance_ids=True, timing_source="table", test_sessions=(5,)),
]}


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; registered: {', '.join(sorted(DATASETS))}") from None
