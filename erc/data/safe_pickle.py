"""Loading dataset pickles without running code from them.

Research dialogue pickles (COSMIC, DialogueGCN, MMGCN, GraphSmile) are passed
around on drives and forks. A plain ``pickle.load`` calls whatever global the
file names (``os.system``, ``builtins.eval``, ...), so a crafted file runs code on
load. :func:`load_pickle` uses :class:`RestrictedUnpickler`, whose ``find_class``
resolves only the globals in :data:`ALLOWED_GLOBALS`: builtin container and scalar
types, and the numpy / pandas constructors that rebuild arrays, scalars, dtypes,
Series, DataFrames and their indexes. Anything else raises
:class:`UnsafePickleError` naming the file and the global (``module.name``), before
it is imported or called. A file that is damaged in any other way raises
:class:`erc.core.errors.FileFormatError` naming the file.

What the known layouts need (see erc.data.registry): the COSMIC pickles hold only
builtins (no global at all); GraphSmile / DialogueGCN / MMGCN pickles hold numpy
arrays and scalars (``numpy.dtype``, ``numpy._core.multiarray._reconstruct`` /
``scalar``, ``numpy._core.numeric._frombuffer``, and ``numpy.core.*`` for files
written by numpy 1.x, ``_codecs.encode`` for protocol-2 byte strings); per-dialogue
values may be numpy-backed pandas objects (``copyreg._reconstructor`` rebuilds them
in protocols 0 and 1; it only calls ``__new__``/``__init__`` of classes that passed
this same check). Pandas columns stored as Arrow arrays
(pandas 3 strings) need pyarrow globals and are refused.
"""
from __future__ import annotations

import _compat_pickle
import importlib
import io
import pickle
from pathlib import Path
from typing import Any

from erc.core.errors import FileFormatError

_BUILTIN_TYPES = ("bool", "bytearray", "bytes", "complex", "dict", "float", "frozenset", "int", "list",
                  "object", "range", "set", "slice", "str", "tuple")

ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {("builtins", n) for n in _BUILTIN_TYPES}
    | {("_codecs", "encode"), ("copyreg", "_reconstructor")}
    | {(mod, name)
       for mod, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))
       for mod in (f"numpy._core.{mod}", f"numpy.core.{mod}")}
    | {("numpy", "dtype"), ("numpy", "ndarray")}
    | {("pandas", "Series"), ("pandas", "DataFrame"), ("pandas", "Index"), ("pandas", "RangeIndex"),
       ("pandas.core.series", "Series"), ("pandas.core.frame", "DataFrame"),
       ("pandas.core.indexes.base", "Index"), ("pandas.core.indexes.range", "RangeIndex"),
       ("pandas.core.indexes.base", "_new_Index"),
       ("pandas.core.internals.managers", "BlockManager"),
       ("pandas.core.internals.managers", "SingleBlockManager"),
       ("pandas._libs.internals", "_unpickle_block")}
)

# Names older pandas (1.x) wrote for the same constructors (as pandas.compat.pickle_compat maps them).
_RENAMED = {
    ("pandas.core.internals.blocks", "new_block"): ("pandas._libs.internals", "_unpickle_block"),
    ("pandas.core.indexes.numeric", "Int64Index"): ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.numeric", "UInt64Index"): ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.numeric", "Float64Index"): ("pandas.core.indexes.base", "Index"),
}


class UnsafePickleError(FileFormatError, pickle.UnpicklingError):
    """A pickle that names a global outside :data:`ALLOWED_GLOBALS` (it could run code); nothing was run."""


def _python3_name(module: str, name: str) -> tuple[str, str]:
    """Python 2 names (``__builtin__.set``, ``copy_reg``) as Python 3 spells them (pickle's fix_imports),
    and pandas 1.x names as pandas 3 spells them."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _RENAMED.get((module, name), (_compat_pickle.IMPORT_MAPPING.get(module, module), name))


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only :data:`ALLOWED_GLOBALS`; ``source`` names the file in errors."""

    def __init__(self, file, *, source: str, encoding: str = "latin1"):
        super().__init__(file, encoding=encoding)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        module3, name3 = _python3_name(module, name)
        if (module3, name3) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"{self.source}: refusing to load this pickle: it calls the global '{module3}.{name3}', which "
                "is not allowed (dataset pickles may hold only builtins and numpy/pandas data; nothing was run)")
        if module3.startswith("numpy.core."):          # numpy 1.x names; numpy 2 moved them to numpy._core
            try:
                return getattr(importlib.import_module("numpy._core." + module3[len("numpy.core."):]), name3)
            except ImportError:
                pass
        return getattr(importlib.import_module(module3), name3)


def load_pickle(path: str | Path, encoding: str = "latin1") -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (latin-1 for Python 2 strings, as the COSMIC files need).

    Raises :class:`UnsafePickleError` for a forbidden global and
    :class:`erc.core.errors.FileFormatError` for any other damage, both naming the file.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        return RestrictedUnpickler(io.BytesIO(data), source=str(path), encoding=encoding).load()
    except UnsafePickleError:
        raise
    except RecursionError:
        raise FileFormatError(f"{path}: not a readable pickle: nested too deeply") from None
    except Exception as exc:  # any damage: only allowed constructors ran, so every failure is the file's
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise FileFormatError(f"{path}: not a readable pickle ({type(exc).__name__}: {detail}); "
                              "expected a dialogue pickle (a tuple of per-dialogue dicts and id lists)") from exc
