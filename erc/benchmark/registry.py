"""The methods ``erc benchmark`` can run, as data: name -> stage (config class, run function, run
identity, outputs) + base config + whether it reads the benchmark's text feature files.

A method is one entry. Every method writes the multi-seed layout of ``train-graph``:
``run_dir/results.json`` (``per_seed``: each seed's ``valid`` / ``test`` metrics at its best validation
epoch) and ``run_dir/seed_<k>/best_model/test_predictions.csv`` (``dialogue_id, position, label,
pred, p_<class>``), which is all the benchmark reads.

To add a method: declare (or reuse) its :class:`erc.core.runs.StageSpec` in its stage package and add
one :class:`Method` here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from erc.baselines.stage import TRAIN_BASELINE
from erc.core.runs import StageSpec
from erc.data.registry import DATASETS, MELD_EMOTIONS
from erc.graph.cmerc_config import PAPER_DEFAULTS
from erc.graph.stage import TRAIN_GRAPH
from erc.hrg.stage import TRAIN_HRG

BaseConfig = Callable[[str, list[str]], dict]   # (registry dataset name, modalities) -> stage config values


@dataclass(frozen=True)
class Method:
    """``stage``: config class, ``run`` function, identity rule and outputs (the stage's own spec);
    ``base(dataset, modalities)``: config values under the benchmark entry's base YAML and overrides;
    ``fixed``: config values that make the stage this method (e.g. ``{"method": "mlp"}`` of a stage that
    trains several), laid over everything and refused in overrides;
    ``text_features``: True if the method reads the benchmark's text feature files (one cell per
    features entry), False if it reads the transcript itself (one cell, shown in every features block
    under ``text_label``)."""

    name: str
    stage: StageSpec
    base: BaseConfig
    description: str
    fixed: dict = field(default_factory=dict)
    text_features: bool = True
    text_label: str = "transcript"


def _nothing(dataset: str, modalities: list[str]) -> dict:
    return {}


def _cmerc_paper(dataset: str, modalities: list[str]) -> dict:
    """All CMERC strategies on with the paper's values: MELD's for a dataset of MELD's labels, else IEMOCAP's
    (the modality-level contrastive loss is skipped by the stage when there is one modality)."""
    spec = DATASETS.get(dataset)
    setting = "meld" if spec is not None and spec.label_names == MELD_EMOTIONS else "iemocap"
    return {"cmerc": {"curriculum": True, **PAPER_DEFAULTS[setting]}}


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("graph", TRAIN_GRAPH, _nothing, "GraphSmile-style graph model (erc.graph)"),
    Method("graph_cmerc", TRAIN_GRAPH, _cmerc_paper,
           "graph model + CMERC curriculum, ranking and contrastive losses, paper settings "
           "(erc/graph/cmerc_config.py)"),
    Method("hrg", TRAIN_HRG, _nothing, "HRG-SSA (erc.hrg): its backbone encodes the transcript", text_features=False),
    Method("dialoguernn", TRAIN_BASELINE, _nothing, "DialogueRNN (erc.baselines)", fixed={"method": "dialoguernn"}),
    Method("dialoguegcn", TRAIN_BASELINE, _nothing, "DialogueGCN (erc.baselines)", fixed={"method": "dialoguegcn"}),
    Method("mlp", TRAIN_BASELINE, _nothing, "context-free MLP on each utterance's features (erc.baselines)",
           fixed={"method": "mlp"}),
)}


def method(name: str) -> Method:
    return METHODS[name]


def config_fields(cls: type) -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(cls)}


def describe(m: Method) -> dict[str, Any]:
    return {"method": m.name, "stage": m.stage.name, "config_class": m.stage.config_class.__name__,
            "run": m.stage.run, "text_features": m.text_features}
