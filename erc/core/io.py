"""Atomic writes: a reader never sees half a file, an interrupted run never loses the last one."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from erc.core.errors import FileFormatError, OutputNotWritableError



def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _default_mode() -> int:
    return 0o666 & ~_umask()


def apply_default_permissions(root: str | Path) -> None:
    """Give a folder tree the usual umask permissions (dirs 0777, files 0666, executables 0777, minus umask).

    ``tempfile.mkdtemp`` creates 0700 folders and safetensors writes 0600 files; a
    published model or checkpoint folder is meant to be shared like any other output.
    """
    umask = _umask()
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o777 & ~umask)
        for name in filenames:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                continue
            executable = os.stat(p).st_mode & 0o111
            os.chmod(p, (0o777 if executable else 0o666) & ~umask)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _default_mode())  # mkstemp creates 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    try:
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _finite(obj: Any) -> Any:
    """Replace NaN/inf by None so the JSON is standard (json.dump would write NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: str | Path, obj: Any) -> None:
    obj = json.loads(json.dumps(obj, default=_json_default))
    atomic_write_text(path, json.dumps(_finite(obj), indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; a damaged one raises :class:`FileFormatError` naming the file and the position."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise FileFormatError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
                              ) from None
    except UnicodeDecodeError as exc:
        raise FileFormatError(f"{path}: not valid JSON (not UTF-8 text: byte {exc.start})") from None


def write_csv(path: str | Path, rows: Sequence[dict], columns: Iterable[str] | None = None) -> None:
    """Write dict rows as CSV atomically; ``columns`` fixes the order (default: first row's keys)."""
    rows = list(rows)
    cols = list(columns) if columns is not None else (list(rows[0].keys()) if rows else [])
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k, "") for k in cols})
    atomic_write_text(path, buf.getvalue())


def _sidecars(final_dir: Path) -> tuple[Path, Path]:
    """``.NAME.new`` (a complete replacement waiting to be swapped in) and ``.NAME.old`` (the copy it replaces)."""
    return final_dir.with_name(f".{final_dir.name}.new"), final_dir.with_name(f".{final_dir.name}.old")


def complete_dir(final_dir: str | Path) -> Path | None:
    """The newest complete copy of a folder published by :func:`atomic_replace_dir`, without changing anything.

    After a kill at any instruction of a replacement, one of ``NAME``, ``.NAME.new``
    (complete by construction: it gets that name by a rename of a fully written
    folder) or ``.NAME.old`` holds a complete copy; the newest is returned (None:
    never published).
    """
    final_dir = Path(final_dir)
    new, old = _sidecars(final_dir)
    for p in (new, final_dir, old):
        if p.is_dir():
            return p
    return None


def recover_dir(final_dir: str | Path) -> str | None:
    """Finish a replacement of ``final_dir`` that a kill interrupted; returns what it did (None: nothing to do).

    ``.NAME.new`` present: it is swapped in (it is the newest complete copy).
    ``NAME`` missing but ``.NAME.old`` present: the old copy is put back. A leftover
    ``.NAME.old`` beside a complete ``NAME`` is removed. Resumers call this before
    looking for ``NAME``; :func:`atomic_replace_dir` calls it on every replacement.
    """
    final_dir = Path(final_dir)
    new, old = _sidecars(final_dir)
    action = None
    if new.is_dir():
        if final_dir.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(final_dir, old)
        os.replace(new, final_dir)
        action = f"{final_dir}: swapped in the complete copy {new.name} left by an interrupted replacement"
    elif not final_dir.exists() and old.is_dir():
        os.replace(old, final_dir)
        action = f"{final_dir}: restored the previous copy {old.name} left by an interrupted replacement"
    if old.exists() and final_dir.exists():
        shutil.rmtree(old)
    return action


def atomic_replace_dir(tmp_dir: str | Path, final_dir: str | Path) -> None:
    """Move a fully written ``tmp_dir`` into place as ``final_dir``; a kill at any point loses no complete copy.

    Order: finish any earlier interrupted replacement; give the tree the usual
    umask permissions; rename ``tmp_dir`` to ``.NAME.new`` (from here on the new copy
    is recognisable as complete); then :func:`recover_dir` swaps it in
    (``NAME`` -> ``.NAME.old``, ``.NAME.new`` -> ``NAME``, remove ``.NAME.old``).
    Between any two steps a complete copy exists under one of the three names and
    :func:`recover_dir` (or :func:`complete_dir`, read-only) finds it.
    """
    tmp_dir, final_dir = Path(tmp_dir), Path(final_dir)
    new, _old = _sidecars(final_dir)
    recover_dir(final_dir)
    apply_default_permissions(tmp_dir)
    if tmp_dir != new:
        os.replace(tmp_dir, new)
    recover_dir(final_dir)


def check_writable(path: str | Path, what: str = "output", folder: bool = False) -> Path:
    """Raise :class:`OutputNotWritableError` now if ``path`` (a file, or a folder with ``folder``) cannot be written.

    Creates nothing that stays: the nearest existing ancestor must be a folder in which a
    file can be created (tried, then removed), so this holds for root and read-only mounts too.
    """
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        kind = "a folder" if path.is_dir() else "a file"
        raise OutputNotWritableError(f"{what} {path}: is {kind}; expected {'a folder' if folder else 'a file path'}")
    anc = path if (folder and path.exists()) else path.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise OutputNotWritableError(f"{what} {path}: cannot be created: {anc} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=anc, prefix=".erc-write-check.")
    except OSError as exc:
        raise OutputNotWritableError(f"{what} {path}: folder {anc} is not writable "
                                     f"({exc.strerror or type(exc).__name__})") from None
    os.close(fd)
    os.unlink(probe)
    return path


def check_safetensors(path: str | Path) -> dict:
    """Read a ``.safetensors`` header and check that the file holds all the bytes it announces.

    Returns the header (tensor name -> dtype, shape, data_offsets). A truncated or
    damaged file raises :class:`FileFormatError` naming it; the tensors are not loaded.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise FileFormatError(f"{path}: truncated safetensors file ({size} bytes); expected an 8-byte "
                                  "header length, a JSON header and the tensor data")
        n = int.from_bytes(head, "little")
        if n > size - 8:
            raise FileFormatError(f"{path}: damaged safetensors file: header length {n} exceeds the file "
                                  f"size {size} (truncated or not a safetensors file)")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise FileFormatError(f"{path}: damaged safetensors file: the header is not valid JSON") from None
    if not isinstance(header, dict):
        raise FileFormatError(f"{path}: damaged safetensors file: the header is not a JSON object")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) for o in offsets) or not 0 <= offsets[0] <= offsets[1]):
            raise FileFormatError(f"{path}: damaged safetensors file: tensor {name!r} has no valid "
                                  "data_offsets [begin, end]")
        end = max(end, offsets[1])
    if 8 + n + end > size:
        raise FileFormatError(f"{path}: truncated safetensors file: its tensors need {8 + n + end} bytes, "
                              f"the file has {size}")
    return header
