from dataclasses import dataclass, field

import pytest

from erc.core.config import ConfigError, resolve_config, save_config, load_yaml


@dataclass
class Cfg:
    lr: float = 2.0e-5
    epochs: int = 5
    name: str = "x"
    use_amp: bool = False
    seeds: list[int] = field(default_factory=lambda: [0])
    out: str | None = None


def test_yaml_then_flags_override(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("lr: 1e-4\nepochs: 3\nseeds: [1, 2]\n")   # '1e-4' is a string to PyYAML
    cfg = resolve_config(Cfg, {"epochs": "7"}, y)
    assert cfg.lr == pytest.approx(1e-4) and cfg.epochs == 7 and cfg.seeds == [1, 2]
    save_config(cfg, tmp_path / "out.yaml")
    assert load_yaml(tmp_path / "out.yaml")["epochs"] == 7


def test_unknown_key_names_file_and_key(tmp_path):
    y = tmp_path / "bad.yaml"
    y.write_text("learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*learning_rate"):
        resolve_config(Cfg, None, y)


def test_bad_type_names_field(tmp_path):
    with pytest.raises(ConfigError, match="epochs"):
        resolve_config(Cfg, {"epochs": "many"})


def test_cli_flags(tmp_path):
    import argparse
    from erc.core.config import add_dataclass_arguments

    p = argparse.ArgumentParser()
    add_dataclass_arguments(p, Cfg)
    ns = p.parse_args(["--lr", "0.5", "--use-amp", "--seeds", "3", "4"])
    cfg = resolve_config(Cfg, ns)
    assert (cfg.lr, cfg.use_amp, cfg.seeds, cfg.epochs) == (0.5, True, [3, 4], 5)


def test_atomic_write_replaces_and_uses_normal_permissions(tmp_path):
    import os
    import stat

    from erc.core.io import atomic_write_text, read_json, write_json

    p = tmp_path / "a.json"
    write_json(p, {"x": float("nan"), "y": 1})
    assert read_json(p) == {"x": None, "y": 1}
    atomic_write_text(p, "new")
    assert p.read_text() == "new"
    assert [f.name for f in tmp_path.iterdir()] == ["a.json"]       # no temporary left behind
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask


# ----------------------------------------------------------------------------- composed configs
@dataclass
class Inner:
    dataset: str = "synthetic"
    modalities: list[str] = field(default_factory=lambda: ["text"])
    ratio: float = 0.1

    def validate(self) -> None:
        if not 0 <= self.ratio < 1:
            raise ConfigError(f"field 'ratio': expected 0 <= ratio < 1, got {self.ratio}")


@dataclass
class Outer:
    data: Inner = field(default_factory=Inner)
    lr: float = 1.0e-3
    epochs: int = 2


@dataclass
class Clash:
    data: Inner = field(default_factory=Inner)
    ratio: float = 0.5          # would share --ratio with data.ratio


def _project_config_classes() -> list[type]:
    """Every config dataclass of the project (root configs and sections), found by module."""
    import dataclasses
    import importlib

    out = []
    for mod in ("erc.data.config", "erc.vad.config", "erc.graph.config", "erc.graph.cmerc_config",
                "erc.compare.config", "erc.pipeline"):
        m = importlib.import_module(mod)
        out += [v for k, v in vars(m).items() if isinstance(v, type) and dataclasses.is_dataclass(v)
                and k.endswith("Config") and v.__module__ == mod]
    return out


def test_yaml_sections_and_flat_flags_reach_the_nested_field(tmp_path):
    import argparse

    from erc.core.config import add_dataclass_arguments

    y = tmp_path / "c.yaml"
    y.write_text("lr: 1.0e-2\ndata:\n  dataset: meld\n  ratio: 0.2\n")
    p = argparse.ArgumentParser()
    add_dataclass_arguments(p, Outer)
    ns = p.parse_args(["--modalities", "text", "audio", "--epochs", "3"])
    cfg = resolve_config(Outer, ns, y)
    assert cfg == Outer(data=Inner(dataset="meld", modalities=["text", "audio"], ratio=0.2), lr=0.01, epochs=3)
    # a flag overrides the YAML's section value
    cfg2 = resolve_config(Outer, {"dataset": "iemocap6"}, y)
    assert (cfg2.data.dataset, cfg2.data.ratio) == ("iemocap6", 0.2)


def test_saved_config_is_nested_and_loads_back_identically(tmp_path):
    from erc.core.config import config_from_dict

    cfg = resolve_config(Outer, {"dataset": "meld", "lr": 0.5})
    save_config(cfg, tmp_path / "config.yaml")
    raw = load_yaml(tmp_path / "config.yaml")
    assert raw == {"data": {"dataset": "meld", "modalities": ["text"], "ratio": 0.1}, "lr": 0.5, "epochs": 2}
    assert config_from_dict(Outer, raw) == cfg


def test_section_validate_runs_and_errors_name_the_dotted_field(tmp_path):
    with pytest.raises(ConfigError, match="ratio"):
        resolve_config(Outer, {"ratio": 1.5})
    with pytest.raises(ConfigError, match=r"field 'data\.ratio': expected float"):
        resolve_config(Outer, {"ratio": "many"})
    y = tmp_path / "flat.yaml"
    y.write_text("dataset: meld\n")           # belongs in the data: section
    with pytest.raises(ConfigError, match=r"flat\.yaml.*'dataset' belongs in section 'data:'"):
        resolve_config(Outer, None, y)
    with pytest.raises(ConfigError, match="unknown field"):
        resolve_config(Outer, {"no_such_field": 1})


def test_two_fields_sharing_a_flag_are_refused_at_registration():
    import argparse

    from erc.core.config import add_dataclass_arguments

    with pytest.raises(ConfigError, match=r"'data\.ratio' and 'ratio' would share the flag --ratio"):
        add_dataclass_arguments(argparse.ArgumentParser(), Clash)


def test_every_command_registers_and_every_config_round_trips():
    from erc.cli import build_parser
    from erc.core.config import config_from_dict, config_to_dict, flag_paths

    build_parser()                               # every subcommand's flags are unambiguous
    classes = _project_config_classes()
    assert {"GraphTrainConfig", "DialogueDataConfig", "UtteranceDataConfig", "CMERCConfig", "FinetuneConfig",
            "CompareConfig", "CompareDataConfig", "DifficultyConfig", "PipelineConfig"} <= {c.__name__ for c in classes}
    for cls in classes:
        flag_paths(cls)
        default = cls()
        assert config_from_dict(cls, config_to_dict(default)) == default, cls.__name__


def test_graph_config_holds_data_and_cmerc_and_keeps_the_known_flags():
    from erc.cli import build_parser
    from erc.core.config import config_from_flat
    from erc.data.config import DialogueDataConfig
    from erc.graph.cmerc_config import CMERCConfig
    from erc.graph.config import GraphTrainConfig

    args = build_parser().parse_args(["train-graph", "--dataset", "meld", "--modalities", "text", "audio",
                                      "--rank-coef", "0.005", "--curriculum", "--lr", "0.01", "--layers", "3"])
    cfg = resolve_config(GraphTrainConfig, args)
    assert isinstance(cfg.data, DialogueDataConfig) and isinstance(cfg.cmerc, CMERCConfig)
    assert (cfg.data.dataset, cfg.data.modalities) == ("meld", ["text", "audio"])
    assert (cfg.cmerc.rank_coef, cfg.cmerc.curriculum, cfg.lr) == (0.005, True, 0.01)
    # the CMERC section's own checks run (under inheritance its __post_init__ never did)
    with pytest.raises(ConfigError, match="epoch_ratio"):
        config_from_flat(GraphTrainConfig, epoch_ratio=0.0)


# ----------------------------------------------------------------------------- choices
def _section_path(root: type, cls: type) -> tuple[str, ...] | None:
    from erc.core.config import section_paths

    return next((p for p, c in section_paths(root).items() if c is cls), None)


def test_every_field_with_choices_refuses_a_value_outside_them():
    """For EVERY config class and EVERY field that declares choices (found by iteration, so new
    fields are covered): config_from_dict refuses a value outside them, naming field, value, choices."""
    import dataclasses
    import typing

    from erc.core.config import config_from_dict

    checked = []
    for cls in _project_config_classes():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if "choices" not in f.metadata:
                continue
            choices = tuple(f.metadata["choices"])
            bad = "__not_allowed__"
            assert bad not in choices
            is_list = typing.get_origin(hints[f.name]) in (list, tuple)
            value = [choices[0], bad] if is_list else bad
            with pytest.raises(ConfigError) as err:
                config_from_dict(cls, {f.name: value}, "test.yaml")
            msg = str(err.value)
            assert msg.startswith(f"test.yaml: {f.name}: unknown ") and repr(bad) in msg, msg
            assert all(str(c) in msg for c in choices), msg
            # the same value inside a stage config's section names the dotted field
            for root in _project_config_classes():
                path = _section_path(root, cls)
                if path:
                    nested: dict = {f.name: value}
                    for key in reversed(path):
                        nested = {key: nested}
                    with pytest.raises(ConfigError, match=rf"test\.yaml: {'.'.join(path)}\.{f.name}: unknown"):
                        config_from_dict(root, nested, "test.yaml")
            # every allowed value passes the check (lists: all of them at once)
            ok = list(choices) if is_list else choices[0]
            try:
                config_from_dict(cls, {f.name: ok})
            except ConfigError as exc:               # only other rules of validate() may refuse it
                assert ": unknown " not in str(exc), exc
            checked.append(f"{cls.__name__}.{f.name}")
    # the closed sets named in issue 10 all declare their choices
    for name in ("FinetuneConfig.pooling", "FinetuneConfig.mixed_precision", "FinetuneConfig.selection_metric",
                 "UtteranceDataConfig.format", "UtteranceDataConfig.split", "GraphTrainConfig.loss",
                 "GraphTrainConfig.selection_metric", "GraphTrainConfig.mixed_precision",
                 "DialogueDataConfig.text_mode", "DialogueDataConfig.modalities", "DialogueDataConfig.dataset",
                 "CompareConfig.zero_shot", "CompareConfig.class_sets", "CompareConfig.pooling",
                 "CompareDataConfig.format", "PipelineConfig.stages", "PipelineConfig.force",
                 "PredictGraphConfig.splits", "DifficultyConfig.split", "EmbedConfig.pooling"):
        assert name in checked, name


def test_choices_are_checked_on_the_command_line_too(capsys):
    from erc.cli import main

    smell = "data.modalities: unknown ['smell'] in ['text', 'smell']; allowed: text, audio, visual, timing"
    for argv, msg in ((["finetune", "--pooling", "max"], "pooling: unknown 'max'; allowed: cls, mean"),
                      (["train-graph", "--modalities", "text", "smell"], smell)):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2 and msg in capsys.readouterr().err


def test_pooling_max_and_fp8_from_yaml_are_refused(tmp_path):
    """The two values issue 10 saw pass: pooling max, mixed_precision fp8."""
    from erc.vad.config import FinetuneConfig

    y = tmp_path / "ft.yaml"
    y.write_text("pooling: max\n")
    with pytest.raises(ConfigError, match=r"ft\.yaml \+ command line: pooling: unknown 'max'; allowed: cls, mean"):
        resolve_config(FinetuneConfig, None, y)
    with pytest.raises(ConfigError, match=r"mixed_precision: unknown 'fp8'; allowed: no, fp16, bf16"):
        resolve_config(FinetuneConfig, {"mixed_precision": "fp8"})


def test_every_shipped_config_file_loads_into_its_config(project_root, monkeypatch):
    """configs/*.yaml use the current names and sections (a stale key is an error naming it)."""
    from erc.baselines.config import BaselineTrainConfig
    from erc.benchmark.config import BenchmarkConfig
    from erc.benchmark.plan import cells
    from erc.compare.config import CompareConfig
    from erc.data.config import DialogueDataConfig
    from erc.graph.config import GraphTrainConfig
    from erc.hrg.config import HRGTrainConfig
    from erc.pipeline import PipelineConfig, compare_config, embed_config, finetune_config, graph_config
    from erc.vad.config import FinetuneConfig

    kinds = {"vad_iemocap": FinetuneConfig, "vad_emobank": FinetuneConfig, "finetune_": FinetuneConfig,
             "compare_iemocap_finetune": FinetuneConfig, "compare_": CompareConfig,
             "graph_": GraphTrainConfig, "fusion_": DialogueDataConfig, "pipeline_": PipelineConfig,
             "hrg_": HRGTrainConfig, "baseline_": BaselineTrainConfig, "benchmark_": BenchmarkConfig}
    files = sorted((project_root / "configs").glob("*.yaml"))
    loaded = []
    for path in files:
        if path.name == "vad_anchors.yaml":            # phrases for the zero-shot projection, not a config
            continue
        cls = next(c for prefix, c in kinds.items() if path.stem.startswith(prefix))
        # the flags its usage line in the file adds (text from `cli.py embed`)
        flags = {"text_embeddings": "emb.npz"} if path.name.startswith(("graph_cosmic_", "baseline_")) else None
        cfg = resolve_config(cls, flags, path)
        if cls is PipelineConfig:
            for build in (finetune_config, embed_config, graph_config, compare_config):
                build(cfg)
            for variant in cfg.graph_variants:
                graph_config(cfg, variant)
        if cls is BenchmarkConfig:       # every cell's stage config resolves (base configs, overrides)
            monkeypatch.chdir(project_root)          # base config paths are relative to the working directory
            assert cells(cfg)
        loaded.append(path.name)
    assert len(loaded) == len(files) - 1 and "graph_iemocap4.yaml" in loaded


def test_a_check_across_fields_names_the_file_once(tmp_path):
    """validate() errors carry no file name of their own: the one line names it (once, nested sections too)."""
    p = tmp_path / "c.yaml"
    p.write_text("data: {ratio: 1.5}\n")
    with pytest.raises(ConfigError) as info:
        resolve_config(Outer, {}, p)
    assert str(info.value) == f"{p} + command line: field 'ratio': expected 0 <= ratio < 1, got 1.5"
