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
