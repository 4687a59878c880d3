"""Dataclass configuration: YAML file as defaults, command-line flags override.

Every stage describes its run with one dataclass whose fields all have
defaults. A config is *composed*, not inherited: a field whose type is itself
a config dataclass is a **section** (``GraphTrainConfig.data`` holds a
:class:`erc.data.config.DialogueDataConfig`, ``GraphTrainConfig.cmerc`` a
:class:`erc.graph.cmerc_config.CMERCConfig`). In YAML a section is a mapping::

    lr: 1.0e-4
    data:
      dataset: iemocap6
      modalities: [text, audio, visual]

On the command line every leaf field of the tree is one ``--flag`` named after
the field alone (``--dataset``, ``--lr``, ``--rank-coef``), so a flag must be
unambiguous across the whole tree: :func:`flag_paths` (called when a command
is registered) refuses two fields that would share one.

:func:`add_dataclass_arguments` turns the fields into ``--flags``;
:func:`resolve_config` merges ``--config file.yaml`` and the flags that were
actually given into an instance, refusing unknown keys with a message that
names the file and the key. :func:`config_to_dict` / :func:`save_config` write
the nested form, which :func:`config_from_dict` reads back identically.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from erc.core.io import atomic_write_text

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or flag that cannot be turned into the stage's dataclass."""


#: ``mixed_precision`` of every trained stage: Accelerate's values, and ``auto`` (bf16 where the device
#: computes it natively, else no; resolved when the run starts and recorded in its config.yaml).
MIXED_PRECISION = ("no", "fp16", "bf16", "auto")

#: ``resume`` (every trained stage, one type, one meaning): one of these words or a checkpoint folder.
RESUME_MODES = ("auto", "never", "latest")
RESUME_HELP = ("auto: continue from the newest checkpoint in output_dir if there is one, else start fresh; "
               "never: start fresh; latest: continue from the newest checkpoint (error if none); "
               "or the path of one checkpoint folder")


def check_resume(value: str, field_name: str = "resume") -> None:
    """``resume`` is one of :data:`RESUME_MODES` or a checkpoint path (any other non-empty string)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"field '{field_name}': expected one of {', '.join(RESUME_MODES)} or a checkpoint "
                          f"folder, got {value!r}")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def is_section_type(tp: Any) -> bool:
    """True for a (possibly Optional) config dataclass type: a nested section."""
    tp, _ = _unwrap_optional(tp)
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, tp: Any, source: str, path: str) -> Any:
    """Convert a YAML/CLI value to the field's annotated type, or raise ConfigError.

    ``path`` is the field's dotted path (``data.modalities``); messages start with
    ``{source}: field '{path}'``.
    """
    where = f"{source}: field '{path}'"
    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: null is not allowed, expected {getattr(tp, '__name__', tp)}")
    if is_section_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields (a YAML section), "
                              f"got {value!r}")
        return _build(tp, value, source, path + ".")
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
            out = [_coerce(v, inner, source, path) for v in value]
            return out if origin is list else tuple(out)
        if origin is dict or tp is dict:
            if isinstance(value, str):      # a flag: "key=value key2=value2" (or comma-separated)
                pairs = [v.partition("=") for v in value.replace(",", " ").split() if v]
                if any(not k or not sep for k, sep, _ in pairs):
                    raise ValueError(value)
                value = {k: v for k, _, v in pairs}
            if not isinstance(value, dict):
                raise ValueError(value)
            args = typing.get_args(tp)
            if len(args) == 2:
                return {_coerce(k, args[0], source, path): _coerce(v, args[1], source, f"{path}.{k}")
                        for k, v in value.items()}
            return dict(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{where}: expected {getattr(tp, '__name__', str(tp))}, got {value!r}"
        ) from None
    return value


def _fmt_choices(choices: Any) -> str:
    return ", ".join(str(c) for c in choices)


def check_field_choices(f: dataclasses.Field, value: Any, source: str, path: str) -> None:
    """Refuse a value outside ``f.metadata["choices"]`` (list fields element-wise; None passes).

    The message names the source, the field (``path``), the value and the allowed
    values: ``configs/x.yaml: modalities: unknown ['smell']; allowed: text, audio, visual, timing``.
    """
    choices = f.metadata.get("choices")
    if choices is None or value is None:
        return
    if isinstance(value, (list, tuple)):
        bad = [v for v in value if v not in choices]
        if bad:
            raise ConfigError(f"{source}: {path}: unknown {bad!r} in {list(value)!r}; "
                              f"allowed: {_fmt_choices(choices)}")
    elif value not in choices:
        raise ConfigError(f"{source}: {path}: unknown {value!r}; allowed: {_fmt_choices(choices)}")


def check_choices(cfg: Any, source: str = "config", prefix: str = "") -> None:
    """Check every field of ``cfg`` (and of its sections) that declares ``choices``.

    :func:`config_from_dict` calls this for every config it builds; a config's
    ``__post_init__`` may call it so that direct construction is checked too.
    """
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_choices(value, source, f"{prefix}{f.name}.")
        else:
            check_field_choices(f, value, source, prefix + f.name)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


@functools.lru_cache(maxsize=None)
def flag_paths(cls: type) -> dict[str, tuple[str, ...]]:
    """Leaf field name (= flag name) -> its path in the config tree, e.g. ``'dataset' -> ('data', 'dataset')``.

    Sections are walked recursively (a section marked ``metadata={"cli": False}``
    is skipped, as is a leaf so marked). Two leaves with one name would share a
    flag: that is a :class:`ConfigError` naming both paths, raised when the
    command is registered.
    """
    out: dict[str, tuple[str, ...]] = {}

    def walk(c: type, prefix: tuple[str, ...]) -> None:
        hints = _hints(c)
        for f in dataclasses.fields(c):
            if f.metadata.get("cli") is False:
                continue
            path = prefix + (f.name,)
            if is_section_type(hints[f.name]):
                walk(_unwrap_optional(hints[f.name])[0], path)
                continue
            if f.name in out:
                raise ConfigError(
                    f"{cls.__name__}: fields '{'.'.join(out[f.name])}' and '{'.'.join(path)}' would share the "
                    f"flag {_flag(f.name)}; rename one of them")
            out[f.name] = path

    walk(cls, ())
    return out


def section_paths(cls: type) -> dict[tuple[str, ...], type]:
    """Every section of the tree (the root is ``()``) -> its dataclass."""
    out: dict[tuple[str, ...], type] = {(): cls}
    for f in dataclasses.fields(cls):
        tp = _hints(cls)[f.name]
        if is_section_type(tp):
            sub = _unwrap_optional(tp)[0]
            out.update({(f.name, *p): c for p, c in section_paths(sub).items()})
    return out


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one ``--flag`` per leaf field of the tree; unset flags stay absent from the namespace.

    A section's flags are gathered in an argument group named after it.
    """
    paths = flag_paths(cls)   # raises on a shared flag
    groups: dict[tuple[str, ...], Any] = {}
    sections = section_paths(cls)
    for name, path in paths.items():
        owner = sections[path[:-1]]
        f = next(x for x in dataclasses.fields(owner) if x.name == name)
        tp, _ = _unwrap_optional(_hints(owner)[name])
        help_text = f.metadata.get("help", "")
        if "choices" in f.metadata:   # checked by config_from_dict, with the same message as in YAML
            help_text += f" (one of: {_fmt_choices(f.metadata['choices'])})"
        help_text = f"{help_text} (default: {_default(f)!r})".strip()
        kwargs: dict[str, Any] = dict(dest=name, default=argparse.SUPPRESS, help=help_text)
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) in (list, tuple):
            kwargs["nargs"] = "*"
        target = parser
        if path[:-1]:
            key = path[:-1]
            if key not in groups:
                groups[key] = parser.add_argument_group(
                    f"section {'.'.join(key)} ({owner.__name__})", (owner.__doc__ or "").strip().split("\n")[0])
            target = groups[key]
        target.add_argument(_flag(name), **kwargs)


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


def _build(cls: type[T], values: dict, source: str, prefix: str = "") -> T:
    """Build ``cls`` (and its sections) from a nested dict; ``prefix`` is the section's dotted path."""
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        hints_txt = []
        leaves = flag_paths(cls)
        for k in unknown:
            if k in leaves and len(leaves[k]) > 1:
                hints_txt.append(f"'{k}' belongs in section '{'.'.join(leaves[k][:-1])}:'")
        raise ConfigError(
            f"{source}: unknown field(s) {', '.join(prefix + k for k in unknown)} for {cls.__name__}"
            + (f" ({'; '.join(hints_txt)})" if hints_txt else "")
            + f"; known fields: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(v, hints[k], source, prefix + k) for k, v in values.items()}
    for f in dataclasses.fields(cls):     # before construction: __post_init__ may rely on valid values
        if f.name in kwargs:
            check_field_choices(f, kwargs[f.name], source, prefix + f.name)
    try:
        cfg = cls(**kwargs)
        validate = getattr(cfg, "validate", None)
        if callable(validate):
            validate()
    except ConfigError as exc:     # a check across fields (validate / __post_init__): name the file too
        if type(exc) is not ConfigError or str(exc).startswith(f"{source}:"):
            raise
        raise ConfigError(f"{source}: {exc}") from exc
    return cfg


def config_from_dict(cls: type[T], values: dict, source: str = "config") -> T:
    """Build ``cls`` from a nested dict (sections as mappings), coercing types.

    Unknown keys are an error naming ``source`` (a flat key that belongs in a
    section says which); a value outside a field's ``choices`` (list fields
    element-wise) is an error naming the field, the value and the allowed
    values; every section's and the root's ``validate()`` runs.
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected a mapping of field: value, got {values!r}")
    return _build(cls, values, source)


def _set_path(tree: dict, path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        sub = tree.get(key)
        if not isinstance(sub, dict):
            sub = {} if sub is None else sub
            if not isinstance(sub, dict):   # a section given as an instance: keep its values
                sub = config_to_dict(sub)
            tree[key] = sub
        tree = sub
    tree[path[-1]] = value


def nest_flat(cls: type, flat: dict, source: str = "config") -> dict:
    """Flat ``{leaf name: value}`` (the flag names) -> the nested dict of ``cls``'s tree.

    A key naming a whole section (``{"data": {...}}``) is kept as that section.
    """
    paths = flag_paths(cls)
    sections = {p[0] for p in section_paths(cls) if p}
    root = {f.name for f in dataclasses.fields(cls)}
    out: dict = {}
    unknown = []
    for k, v in flat.items():
        if k in paths:
            _set_path(out, paths[k], v)
        elif k in sections and isinstance(v, dict):
            for kk, vv in v.items():
                _set_path(out, (k, kk), vv)
        elif k in root and k not in sections:      # a root field without a flag (e.g. a dict section)
            out[k] = v
        else:
            unknown.append(k)
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {', '.join(sorted(unknown))} for {cls.__name__}; "
                          f"known: {', '.join(sorted(paths))}")
    return out


def config_from_flat(cls: type[T], values: dict | None = None, source: str = "config", **kw: Any) -> T:
    """Build ``cls`` from flat leaf names (as on the command line): ``config_from_flat(GraphTrainConfig,
    dataset="synthetic", lr=1e-3)`` puts ``dataset`` into the ``data`` section."""
    return config_from_dict(cls, nest_flat(cls, {**(values or {}), **kw}, source), source)


def merge_values(base: dict, over: dict) -> dict:
    """``over`` laid onto ``base``: nested sections are merged key by key, anything else replaced."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge_values(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve_config(cls: type[T], args: argparse.Namespace | dict | None = None,
                   config_path: str | Path | None = None) -> T:
    """Defaults <- YAML file (nested) <- flags given on the command line (flat leaf names).

    ``args`` is an argparse namespace (attributes that are not fields, such as
    ``config``, are ignored) or a dict of flat leaf names (unknown keys are an error).
    """
    values: dict[str, Any] = {}
    source = "command line"
    if config_path:
        values = load_yaml(config_path)
        source = f"{config_path} + command line"
    if args is not None:
        if isinstance(args, argparse.Namespace):
            paths = flag_paths(cls)
            given = {k: v for k, v in vars(args).items() if k in paths}
        else:
            given = dict(args)
        values = merge_values(values, nest_flat(cls, given, source))
    return config_from_dict(cls, values, source)


def config_to_dict(cfg: Any) -> dict:
    """The nested dict of a config (sections as dicts); :func:`config_from_dict` reads it back."""
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as (nested) YAML, atomically."""
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False)
    atomic_write_text(path, text)
