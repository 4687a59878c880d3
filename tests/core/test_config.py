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
