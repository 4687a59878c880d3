"""The benchmark config's ``published:`` figures: what loads, and one-line errors naming the file and the field."""
from __future__ import annotations

import re

import pytest
import yaml

from erc.benchmark.config import BenchmarkConfig, PublishedFigure
from erc.core.config import ConfigError, resolve_config

GOOD = {"method": "graph", "dataset": "synthetic", "metric": "weighted_f1", "value": 62.75, "source": "P, 2019",
        "selection": "test"}


def _load(tmp_path, *figures):
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump({"methods": {"graph": {}, "mlp": {}}, "datasets": {"synthetic": {}},
                                    "published": list(figures)}))
    return resolve_config(BenchmarkConfig, {}, path), str(path)


def test_the_cosmic_benchmark_lists_the_three_published_figures(project_root):
    cfg = resolve_config(BenchmarkConfig, {}, project_root / "configs" / "benchmark_cosmic.yaml")
    figs = cfg.published_figures()
    assert [(f.method, f.dataset, f.value, f.selection) for f in figs] == [
        ("dialoguernn", "cosmic_iemocap", 62.75, "test"), ("dialoguegcn", "cosmic_iemocap", 64.18, "test"),
        ("dialoguernn", "cosmic_iemocap", 64.76, "test")]
    assert all(f.metric == "weighted_f1" for f in figs) and "COSMIC" in figs[2].source


def test_a_good_figure_loads_and_metric_defaults_to_weighted_f1(tmp_path):
    cfg, _ = _load(tmp_path, GOOD, {k: v for k, v in GOOD.items() if k != "metric"} | {"value": 40})
    assert cfg.published_figures() == [PublishedFigure("graph", "synthetic", "weighted_f1", 62.75, "P, 2019", "test"),
                                       PublishedFigure("graph", "synthetic", "weighted_f1", 40.0, "P, 2019", "test")]


@pytest.mark.parametrize("change,message", [
    ({"method": "dialoguegcn"}, r"published\[1\]\.method: 'dialoguegcn' is not a method entry; entries: graph, mlp"),
    ({"dataset": "meld"}, r"published\[1\]\.dataset: 'meld' is not a dataset entry; entries: synthetic"),
    ({"value": "62.75"}, r"published\[1\]\.value: expected a number from 0 to 100 .*got '62.75'"),
    ({"value": 162.0}, r"published\[1\]\.value: expected a number from 0 to 100"),
    ({"value": True}, r"published\[1\]\.value: expected a number"),
    ({"selection": "best"}, r"published\[1\]\.selection: unknown 'best'; allowed: test, validation"),
    ({"metric": "f1"}, r"published\[1\]\.metric: unknown 'f1'; allowed: weighted_f1, accuracy, macro_f1"),
    ({"source": ""}, r"published\[1\]\.source: expected the paper"),
    ({"venue": "x"}, r"published\[1\]: unknown field\(s\) venue"),
    ({"selection": None}, r"published\[1\]\.selection: unknown None")])
def test_bad_figures_name_the_file_and_the_field(tmp_path, change, message):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, GOOD, {**GOOD, **change})
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{tmp_path / 'bench.yaml'} + command line: published[1]")
    assert re.search(message, text), text


def test_a_figure_missing_fields_or_not_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match=r"bench\.yaml \+ command line: published\[0\]: missing field\(s\) value, "
                                          r"selection"):
        _load(tmp_path, {k: v for k, v in GOOD.items() if k not in ("value", "selection")})
    with pytest.raises(ConfigError, match=r"bench\.yaml \+ command line: published\[0\]: expected a mapping"):
        _load(tmp_path, "graph 62.75")
