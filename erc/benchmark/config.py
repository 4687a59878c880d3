"""Configuration of ``erc benchmark``: methods x datasets x text features x modalities x seeds.

:class:`BenchmarkConfig` is the command's dataclass (flags: ``--output-dir``, ``--seeds``, ...).
Its three grids are mappings in the YAML, parsed into :class:`MethodEntry`, :class:`DatasetEntry`
by :meth:`BenchmarkConfig.method_entries` / :meth:`BenchmarkConfig.dataset_entries`, each error
naming the field::

    methods:
      graph:                                   # a name; method: defaults to the name (erc.benchmark.registry)
        configs: {cosmic_iemocap: configs/graph_cosmic_iemocap.yaml}   # per-dataset base config
        overrides: {epochs: 60}                # stage fields over the base config
      graph_long: {method: graph, overrides: {epochs: 240}}
    datasets:
      cosmic_iemocap:
        data: {valid_fraction: 0.1}            # DialogueDataConfig fields; dataset: defaults to the name
        features: {zs_minilm: /path/embeddings.npz, ft: {text_embeddings: /path/ft.npz}}
        modalities: [text, text_timing]        # names from the top-level modalities (default: all)
    modalities: {text: [text], text_timing: [text, timing]}
    published:                                 # figures from papers, shown beside ours (not compared by test)
      - {method: dialoguegcn, dataset: cosmic_iemocap, metric: weighted_f1, value: 64.18,
         source: "Ghosal et al., EMNLP 2019", selection: test}

A published ``value`` is a percentage as the paper prints it; ``method`` and ``dataset`` name entries
of this config; ``selection`` says which split picked the paper's epoch (``test`` or ``validation``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from erc.core.config import ConfigError, load_yaml

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
SELECTION = ("weighted_f1", "accuracy", "macro_f1")
# text-feature fields of DialogueDataConfig a features entry may set
FEATURE_FIELDS = ("text_source", "text_embeddings", "text_mode", "text_join", "hash_dim")


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise ConfigError(f"{where}: name {value!r} is not a folder name (letters, digits, '_', '-', '.', "
                          "starting with a letter or digit)")
    return value


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    return value


@dataclass
class MethodEntry:
    """One row family of the table: a registered method, per-dataset base configs, overrides."""

    name: str
    method: str
    configs: dict[str, str] = field(default_factory=dict)     # dataset entry name -> YAML path
    overrides: dict[str, Any] = field(default_factory=dict)   # nested stage fields

    def base_values(self, dataset: str) -> dict:
        """The per-dataset base config of this entry (its YAML), or {} when none is given."""
        path = self.configs.get(dataset)
        return load_yaml(path) if path else {}


@dataclass
class DatasetEntry:
    """One dataset: its ``data:`` fields (split included), its text feature sets, its modality variants."""

    name: str
    data: dict[str, Any]
    features: dict[str, dict[str, Any]]                       # name -> DialogueDataConfig text fields
    modalities: list[str]                                     # names of BenchmarkConfig.modalities


PUBLISHED_SELECTION = ("test", "validation")
PUBLISHED_METRICS = ("weighted_f1", "accuracy", "macro_f1")      # test-split metrics of the table


@dataclass
class PublishedFigure:
    """A figure from a paper for a method entry on a dataset entry (test split), in percent as printed."""

    method: str
    dataset: str
    metric: str
    value: float
    source: str
    selection: str          # the split that picked the paper's epoch: test or validation


def _published(raw: Any, i: int, methods: list[str], datasets: list[str]) -> PublishedFigure:
    where = f"published[{i}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping {{method, dataset, metric, value, source, selection}}, "
                          f"got {raw!r}")
    known = ("method", "dataset", "metric", "value", "source", "selection")
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(known)}")
    missing = [k for k in known if k not in raw and k != "metric"]
    if missing:
        raise ConfigError(f"{where}: missing field(s) {', '.join(missing)}")
    method, dataset = raw["method"], raw["dataset"]
    metric, selection = raw.get("metric", "weighted_f1"), raw["selection"]
    if method not in methods:
        raise ConfigError(f"{where}.method: {method!r} is not a method entry; entries: {', '.join(methods)}")
    if dataset not in datasets:
        raise ConfigError(f"{where}.dataset: {dataset!r} is not a dataset entry; entries: {', '.join(datasets)}")
    if metric not in PUBLISHED_METRICS:
        raise ConfigError(f"{where}.metric: unknown {metric!r}; allowed: {', '.join(PUBLISHED_METRICS)}")
    value = raw["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
        raise ConfigError(f"{where}.value: expected a number from 0 to 100 (the paper's figure in percent), "
                          f"got {value!r}")
    if selection not in PUBLISHED_SELECTION:
        raise ConfigError(f"{where}.selection: unknown {selection!r}; allowed: {', '.join(PUBLISHED_SELECTION)} "
                          "(the split that picked the paper's epoch)")
    if not isinstance(raw["source"], str) or not raw["source"].strip():
        raise ConfigError(f"{where}.source: expected the paper (a non-empty string), got {raw['source']!r}")
    return PublishedFigure(str(method), str(dataset), str(metric), float(value), raw["source"].strip(), selection)


@dataclass
class BenchmarkConfig:
    """``erc benchmark``: every method under one protocol (same split, same seeds, selection on validation
    only) on every dataset, text feature set and modality variant; one table with a paired significance
    test of each method against ``reference``."""

    output_dir: str = field(default="runs/benchmark", metadata={
        "help": "benchmark folder: cells/<dataset>/<features>/<modalities>/<method>/ and the table files"})
    methods: dict = field(default_factory=lambda: {"graph": {}}, metadata={
        "cli": False, "help": "name -> {method: registry name (default: the name), configs: {dataset: base YAML}, "
                              "overrides: stage fields}"})
    datasets: dict = field(default_factory=lambda: {"synthetic": {}}, metadata={
        "cli": False, "help": "name -> {data: DialogueDataConfig fields (dataset defaults to the name), "
                              "features: {name: embeddings file, or text fields}, modalities: [variant names]}"})
    modalities: dict = field(default_factory=lambda: {"text": ["text"]}, metadata={
        "cli": False, "help": "modality variants: name -> list of modalities"})
    seeds: int = field(default=5, metadata={"help": "seeds per cell (seed, seed+1, ...), the same for every cell"})
    seed: int = field(default=0, metadata={"help": "first seed"})
    selection_metric: str = field(default="weighted_f1", metadata={
        "help": "validation metric that picks each seed's epoch, in every cell", "choices": SELECTION})
    reference: str = field(default="graph", metadata={
        "help": "method entry every other method is tested against (paired bootstrap over test dialogues)"})
    bootstrap_resamples: int = field(default=10000, metadata={"help": "bootstrap resamples (B)"})
    bootstrap_seed: int = field(default=0, metadata={"help": "seed of the bootstrap resampling"})
    num_threads: int = field(default=0, metadata={
        "help": "torch CPU threads of each cell (0 = the stage's own setting)"})
    published: list = field(default_factory=list, metadata={
        "cli": False, "help": "figures from papers shown beside the table: a list of {method: method entry, "
                              "dataset: dataset entry, metric: weighted_f1 | accuracy | macro_f1 (default "
                              "weighted_f1), value: percent as printed, source: the paper, selection: test | "
                              "validation (the split that picked the paper's epoch)}"})
    plan_only: bool = field(default=False, metadata={
        "help": "print the plan (what runs, resumes, is skipped) and stop"})
    table_only: bool = field(default=False, metadata={
        "help": "write the table from the cells finished so far, train nothing"})

    def validate(self) -> None:
        if self.seeds < 1:
            raise ConfigError(f"seeds: expected >= 1, got {self.seeds}")
        if self.bootstrap_resamples < 1:
            raise ConfigError(f"bootstrap_resamples: expected >= 1, got {self.bootstrap_resamples}")
        methods = self.method_entries()
        self.dataset_entries()
        if self.reference not in methods:
            raise ConfigError(f"reference: {self.reference!r} is not a method entry; entries: "
                              f"{', '.join(methods)}")
        self.published_figures()

    def published_figures(self) -> list[PublishedFigure]:
        """The ``published:`` list, checked entry by entry (each error names ``published[i].field``)."""
        if not isinstance(self.published, list):
            raise ConfigError(f"published: expected a list of figures, got {self.published!r}")
        methods, datasets = list(self.methods or {}), list(self.datasets or {})
        return [_published(raw, i, methods, datasets) for i, raw in enumerate(self.published)]

    def __post_init__(self) -> None:
        self.validate()

    # ----- the grids ---------------------------------------------------------------------------
    def method_entries(self) -> dict[str, MethodEntry]:
        from erc.benchmark.registry import METHODS

        out = {}
        if not isinstance(self.methods, dict) or not self.methods:
            raise ConfigError(f"methods: expected a non-empty mapping name -> method entry, got {self.methods!r}")
        for name, raw in self.methods.items():
            where = f"methods.{name}"
            _name(name, "methods")
            raw = _mapping(raw, where)
            unknown = sorted(set(raw) - {"method", "configs", "overrides"})
            if unknown:
                raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; known: method, configs, overrides")
            method = raw.get("method", name)
            if method not in METHODS:
                raise ConfigError(f"{where}.method: unknown method {method!r}; registered: {', '.join(METHODS)}")
            configs = raw.get("configs") or {}
            if isinstance(configs, str):           # one base config for every dataset
                configs = {d: configs for d in (self.datasets or {})}
            configs = {str(k): str(v) for k, v in _mapping(configs, where + ".configs").items()}
            bad = sorted(set(configs) - set(self.datasets or {}))
            if bad:
                raise ConfigError(f"{where}.configs: no dataset entry {', '.join(bad)}; datasets: "
                                  f"{', '.join(self.datasets or {})}")
            out[name] = MethodEntry(name, method, configs, _mapping(raw.get("overrides"), where + ".overrides"))
        return out

    def modality_variants(self) -> dict[str, list[str]]:
        if not isinstance(self.modalities, dict) or not self.modalities:
            raise ConfigError(f"modalities: expected a mapping name -> list of modalities, got {self.modalities!r}")
        out = {}
        for name, mods in self.modalities.items():
            _name(name, "modalities")
            if isinstance(mods, str):
                mods = mods.replace(",", " ").split()
            if not isinstance(mods, list) or not mods:
                raise ConfigError(f"modalities.{name}: expected a non-empty list of modalities, got {mods!r}")
            out[name] = [str(m) for m in mods]
        return out

    def dataset_entries(self) -> dict[str, DatasetEntry]:
        variants = self.modality_variants()
        if not isinstance(self.datasets, dict) or not self.datasets:
            raise ConfigError(f"datasets: expected a non-empty mapping name -> dataset entry, got {self.datasets!r}")
        out = {}
        for name, raw in self.datasets.items():
            where = f"datasets.{name}"
            _name(name, "datasets")
            raw = _mapping(raw, where)
            unknown = sorted(set(raw) - {"data", "features", "modalities"})
            if unknown:
                raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; known: data, features, modalities")
            data = {"dataset": name, **_mapping(raw.get("data"), where + ".data")}
            if "modalities" in data:
                raise ConfigError(f"{where}.data.modalities: the benchmark sets modalities from its variants; "
                                  "list variant names under datasets.<name>.modalities instead")
            features = {}
            for fname, fval in _mapping(raw.get("features"), where + ".features").items():
                _name(fname, where + ".features")
                if isinstance(fval, str):
                    fval = {"text_source": "embeddings", "text_embeddings": fval}
                fval = _mapping(fval, f"{where}.features.{fname}")
                bad = sorted(set(fval) - set(FEATURE_FIELDS))
                if bad:
                    raise ConfigError(f"{where}.features.{fname}: unknown field(s) {', '.join(bad)}; a features "
                                      f"entry is an embeddings file or a mapping of {', '.join(FEATURE_FIELDS)}")
                if fval.get("text_embeddings") and "text_source" not in fval:
                    fval = {"text_source": "embeddings", **fval}
                features[fname] = fval
            if not features:
                features = {"default": {}}      # the dataset's own text (DialogueDataConfig text_source auto)
            mods = raw.get("modalities", list(variants))
            mods = [mods] if isinstance(mods, str) else list(mods or [])
            bad = [m for m in mods if m not in variants]
            if bad or not mods:
                raise ConfigError(f"{where}.modalities: unknown variant(s) {bad or mods!r}; variants: "
                                  f"{', '.join(variants)} (the top-level modalities mapping)")
            out[name] = DatasetEntry(name, data, features, mods)
        return out
