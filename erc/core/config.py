"""Dataclass configuration: YAML file as defaults, command-line flags override.

Every stage describes its run with one dataclass whose fields all have
defaults. :func:`add_dataclass_arguments` turns the fields into ``--flags``;
:func:`resolve_config` merges ``--config file.yaml`` and the flags that were
actually given into an instance, refusing unknown keys with a message that
names the file and the key.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from erc.core.io import atomic_write_text

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or flag that cannot be turned into the stage's dataclass."""


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML/CLI value to the field's annotated type, or raise ConfigError."""
    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: null is not allowed, expected {getattr(tp, '__name__', tp)}")
    origin = typing.get_origin(tp)
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in {"true", "yes", "1", "false", "no", "0"}:
                return value.lower() in {"true", "yes", "1"}
            raise ValueError(value)
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)  # also accepts YAML's '1e-5' string
        if tp is str:
            return str(value)
        if origin in (list, tuple):
            (inner, *_) = typing.get_args(tp) or (Any,)
            if isinstance(value, str):
                value = [v for v in value.replace(",", " ").split() if v]
            if not isinstance(value, (list, tuple)):
                value = [value]
            out = [_coerce(v, inner, where) for v in value]
            return out if origin is list else tuple(out)
        if origin is dict or tp is dict:
            if not isinstance(value, dict):
                raise ValueError(value)
            return dict(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{where}: expected {getattr(tp, '__name__', str(tp))}, got {value!r}"
        ) from None
    return value


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one ``--flag`` per dataclass field; unset flags stay absent from the namespace."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("cli") is False:   # e.g. nested sections, set in the YAML file only
            continue
        tp, _ = _unwrap_optional(hints[f.name])
        help_text = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        help_text = f"{help_text} (default: {default!r})".strip()
        kwargs: dict[str, Any] = dict(dest=f.name, default=argparse.SUPPRESS, help=help_text)
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) in (list, tuple):
            kwargs["nargs"] = "*"
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        parser.add_argument(_flag(f.name), **kwargs)


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of field: value at the top level")
    return data


def config_from_dict(cls: type[T], values: dict, source: str = "config") -> T:
    """Build ``cls`` from a dict, coercing types; unknown keys are an error naming ``source``."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"{source}: unknown field(s) {', '.join(unknown)} for {cls.__name__}; "
            f"known fields: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(v, hints[k], f"{source}: field '{k}'") for k, v in values.items()}
    cfg = cls(**kwargs)
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        validate()
    return cfg


def resolve_config(cls: type[T], args: argparse.Namespace | dict | None = None,
                   config_path: str | Path | None = None) -> T:
    """Defaults <- YAML file <- flags given on the command line."""
    values: dict[str, Any] = {}
    source = "command line"
    if config_path:
        values.update(load_yaml(config_path))
        source = f"{config_path} + command line"
    if args is not None:
        given = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
        field_names = {f.name for f in dataclasses.fields(cls)}
        values.update({k: v for k, v in given.items() if k in field_names})
    return config_from_dict(cls, values, source)


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False)
    atomic_write_text(path, text)
