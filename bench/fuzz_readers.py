"""Fuzz the IEMOCAP release parser and the dialogue-pickle readers with mutations of the REAL files.

    python bench/fuzz_readers.py [--cases 2000] [--seed 0] [--only CASE] [--show 3]

Each case copies real files to a temporary folder, mutates them, and reads them the way
the commands do:

* ``release``: two dialogues (transcription + EmoEvaluation) of two random labeled sessions
  of ``iemocap/IEMOCAP_full_release`` are copied and one file (or the EmoEvaluation
  folder) is mutated line-wise or byte-wise; read with ``read_iemocap`` and the
  ``iemocap_release`` corpus reader.
* ``pickle-bytes``: ``cosmic/iemocap.pkl`` or ``cosmic/meld.pkl`` with bytes flipped,
  inserted, deleted, duplicated or the file truncated; read with ``describe`` (detection,
  as ``inspect`` does) and ``describe`` with the file's registry entry (``read_pickle``).
* ``pickle-struct``: the same pickles loaded, one member / dialogue entry / split list
  replaced by a value of the wrong type, length or range, and written back.

Outcome of a case: ``loaded`` (the mutation left a readable file, no warning), ``warned``
(read, with a warning from the reader, e.g. an EmoEvaluation header that does not
parse), ``clean`` (an
expected error: ``ErcError`` (DataValidationError, FileFormatError, UnsafePickleError),
``ConfigError``, or a ``ValueError`` / ``OSError``, whose message names the file) or
``crash`` (anything else, or a message that does not name the file). Prints one row per
target x mutation and the distinct crashes with a case number to rerun (``--only``).
Needs the real data folder (``ERC_DATA_DIR`` or ``../shared/data``); asserts nothing.
"""
from __future__ import annotations

import argparse
import collections
import logging
import pickle
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from erc.core.config import ConfigError  # noqa: E402
from erc.core.errors import ErcError  # noqa: E402
from erc.core.paths import data_path  # noqa: E402
from erc.data.inspect import describe  # noqa: E402
from erc.data.readers import read_corpus  # noqa: E402
from erc.data.registry import get_spec  # noqa: E402
from erc.data.safe_pickle import load_pickle  # noqa: E402
from erc.data.utterances import read_iemocap  # noqa: E402

PICKLES = {"iemocap.pkl": "cosmic_iemocap", "meld.pkl": "cosmic_meld"}


# --------------------------------------------------------------------------- release mutations
def _lines_mutation(rng: random.Random, text: str) -> tuple[str, str]:
    lines = text.split("\n")
    kind = rng.choice(["drop_char", "junk_number", "drop_line", "dup_line", "swap_lines", "insert_line",
                       "strip_brackets", "tabs_to_spaces"])
    i = rng.randrange(len(lines))
    line = lines[i]
    if kind == "drop_char" and line:
        special = [k for k, c in enumerate(line) if c in "[]:-\t,."]
        k = rng.choice(special) if special and rng.random() < 0.8 else rng.randrange(len(line))
        lines[i] = line[:k] + line[k + 1:]
    elif kind == "junk_number":
        import re
        nums = list(re.finditer(r"\d+(?:\.\d+)?", line))
        if nums:
            m = rng.choice(nums)
            junk = rng.choice(["", "abc", "1e999", "nan", "-5", "9" * 400, "0x1F", "1.2.3", "∞"])
            lines[i] = line[:m.start()] + junk + line[m.end():]
    elif kind == "drop_line":
        del lines[i]
    elif kind == "dup_line":
        lines.insert(i, line)
    elif kind == "swap_lines":
        j = rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == "insert_line":
        lines.insert(i, rng.choice(["[", "]", "[1 - 2]", "[1.0 - 2.0]\tX\tneu\t[1, 2, 3]", "Ses01F_x [1-2]:",
                                    "Ses01F_impro01_F000 [1.0-", "[1.0 - 2.0]\tSes01F_impro01_F000\tneu\t[1, 2]",
                                    "\x00\x01\x02", "% comment", "C-E1:\tNeutral;"]))
    elif kind == "strip_brackets":
        lines[i] = line.replace("]", "", 1) if rng.random() < 0.5 else line.replace("[", "", 1)
    elif kind == "tabs_to_spaces":
        lines[i] = line.replace("\t", " ")
    return "\n".join(lines), kind


def _bytes_mutation(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    b = bytearray(data)
    kind = rng.choice(["flip", "truncate", "insert", "delete", "duplicate"])
    if not b:
        return bytes(rng.randbytes(rng.randint(1, 16))), "insert"
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == "truncate":
        del b[rng.randrange(len(b)):]
    elif kind == "insert":
        k = rng.randrange(len(b) + 1)
        b[k:k] = rng.randbytes(rng.randint(1, 16))
    elif kind == "delete":
        k = rng.randrange(len(b))
        del b[k:k + rng.randint(1, 16)]
    else:
        k = rng.randrange(len(b))
        n = rng.randint(1, 64)
        b[k:k] = b[k:k + n]
    return bytes(b), kind


def release_case(rng: random.Random, src: Path, work: Path) -> tuple[str, callable]:
    root = work / "release"
    # sessions with labels (the shared copy has none for session 5): a warning then means the mutation
    # was noticed; removing / emptying EmoEvaluation is one of the mutations
    sessions = sorted(p.name for p in src.glob("Session*") if (p / "dialog" / "EmoEvaluation").is_dir())
    for s in rng.sample(sessions, 2):
        tdir = src / s / "dialog" / "transcriptions"
        for f in rng.sample(sorted(tdir.glob("*.txt")), 2):
            dst = root / s / "dialog" / "transcriptions" / f.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dst)
            e = src / s / "dialog" / "EmoEvaluation" / f.name
            if e.is_file():
                (root / s / "dialog" / "EmoEvaluation").mkdir(parents=True, exist_ok=True)
                shutil.copyfile(e, root / s / "dialog" / "EmoEvaluation" / f.name)
    files = sorted(root.rglob("*.txt"))
    r = rng.random()
    if r < 0.05:
        target = rng.choice(sorted(root.glob("Session*/dialog/EmoEvaluation")) or [root])
        if target != root:
            if rng.random() < 0.5:
                shutil.rmtree(target)
                kind = "eval_folder_removed"
            else:
                for f in target.glob("*.txt"):
                    f.unlink()
                kind = "eval_folder_emptied"
        else:
            kind = "none"
    elif r < 0.08:
        f = rng.choice(files)
        f.unlink()
        f.mkdir()
        kind = "file_is_folder"
    elif r < 0.55:
        f = rng.choice(files)
        text, kind = _lines_mutation(rng, f.read_text(encoding="latin-1"))
        f.write_bytes(text.encode("utf-8", errors="replace") if any(ord(c) > 255 for c in text)
                      else text.encode("latin-1"))
    else:
        f = rng.choice(files)
        data, kind = _bytes_mutation(rng, f.read_bytes())
        f.write_bytes(data)
        kind = "bytes_" + kind

    def run():
        read_iemocap(root)
        read_corpus(get_spec("iemocap_release"), root)
    return kind, run, str(root)


# --------------------------------------------------------------------------- pickle mutations
_WRONG_VALUES = [None, 5, -1.5, "abc", b"xy", [], [None], [[1, 2]], {"a": 1}, [float("nan")], ["x", "y"],
                 [99, 0], [-7], [0.5, 1.0], np.zeros((2, 3)), np.array(["a"]), [1] * 5000, ({1, 2}),
                 [[0.0] * 9, [1.0]], [object.__name__]]


def _struct_mutation(rng: random.Random, obj: tuple) -> tuple[tuple, str]:
    members = list(obj)
    kind = rng.choice(["drop_member", "swap_members", "member_type", "dialogue_value", "drop_dialogue",
                       "split_ids", "key_type", "extra_member"])
    m = rng.randrange(len(members))
    if kind == "drop_member":
        del members[m]
    elif kind == "extra_member":
        members.insert(m, {})
    elif kind == "swap_members":
        j = rng.randrange(len(members))
        members[m], members[j] = members[j], members[m]
    elif kind == "member_type":
        members[m] = rng.choice([None, 3, "videoLabels", list(members[m]) if hasattr(members[m], "__iter__") else [],
                                 set(), {}, (1, 2)])
    elif kind in ("dialogue_value", "drop_dialogue", "key_type"):
        dicts = [i for i, v in enumerate(members) if isinstance(v, dict)]
        i = rng.choice(dicts)
        d = dict(members[i])
        key = rng.choice(list(d))
        if kind == "dialogue_value":
            d[key] = rng.choice(_WRONG_VALUES)
        elif kind == "drop_dialogue":
            del d[key]
        else:
            d[rng.choice([7, 3.5, (1,), None, b"k"])] = d.pop(key)
        members[i] = d
    else:  # split id lists
        lists = [i for i, v in enumerate(members) if isinstance(v, list)]
        i = rng.choice(lists)
        ids = list(members[i])
        op = rng.choice(["unknown", "dup", "other_split", "non_str", "empty", "dict"])
        if op == "unknown":
            ids.append("no_such_dialogue")
        elif op == "dup" and ids:
            ids.append(ids[0])
        elif op == "other_split":
            other = rng.choice([j for j in lists if j != i])
            if members[other]:
                ids.append(members[other][0])
        elif op == "non_str":
            ids[rng.randrange(len(ids))] = rng.choice([None, 3, (1, 2), 2.5])
        elif op == "empty":
            ids = []
        else:
            ids = {v: 1 for v in ids}
        members[i] = ids
        kind = f"split_ids_{op}"
    return tuple(members), kind


def pickle_case(rng: random.Random, src: Path, work: Path, structural: bool, cache: dict) -> tuple:
    name = rng.choice(sorted(PICKLES))
    path = work / name
    if structural:
        if name not in cache:
            cache[name] = load_pickle(src / name)
        obj, kind = _struct_mutation(rng, cache[name])
        path.write_bytes(pickle.dumps(obj, protocol=rng.choice([2, 4, 5])))
    else:
        data, kind = _bytes_mutation(rng, (src / name).read_bytes())
        path.write_bytes(data)
        kind = "bytes_" + kind
    spec = get_spec(PICKLES[name])

    def run():
        try:
            describe(path)
        except ErcError:
            pass            # detection refusing the file is fine; the registry reader must say why, too
        describe(path, spec.name)     # read_corpus -> read_pickle, then the summary inspect prints
    return f"{name}:{kind}", run, str(path)


# --------------------------------------------------------------------------- driver
class _Count(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.n = 0

    def emit(self, record):
        self.n += 1


def outcome(run, name: str, warnings: _Count) -> tuple[str, str | None]:
    warnings.n = 0
    try:
        run()
        return ("warned" if warnings.n else "loaded"), None
    except (ErcError, ConfigError, ValueError, OSError) as exc:
        if name in str(exc):
            return "clean", None
        return "crash", _signature(exc)
    except Exception as exc:  # noqa: BLE001 - counting these is the point
        return "crash", _signature(exc)


def _signature(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/erc/" in f.filename]
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    msg = str(exc).splitlines()[0][:110] if str(exc) else ""
    return f"{type(exc).__name__} at {where}: {msg}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", type=int, default=None, help="run this case number only, with a traceback")
    ap.add_argument("--show", type=int, default=3, help="example case numbers per distinct crash")
    args = ap.parse_args()
    warnings = _Count()             # the readers' warnings are counted, not printed
    erc_logger = logging.getLogger("erc")
    erc_logger.addHandler(warnings)
    erc_logger.propagate = False
    release, cosmic = data_path("iemocap", "IEMOCAP_full_release"), data_path("cosmic")
    if release is None or cosmic is None:
        sys.exit("real data folder absent (set ERC_DATA_DIR or place ../shared/data): nothing to fuzz")
    targets = ["release", "pickle-bytes", "pickle-struct"]
    rows = collections.defaultdict(collections.Counter)
    crashes: dict[str, list[int]] = collections.defaultdict(list)
    cache: dict = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="erc-fuzz-") as tmp:
        cases = [args.only] if args.only is not None else range(args.cases)
        for case in cases:
            rng = random.Random(args.seed * 1_000_003 + case)
            target = targets[case % len(targets)]
            work = Path(tmp) / f"case{case}"
            work.mkdir()
            if target == "release":
                kind, run, name = release_case(rng, release, work)
            else:
                kind, run, name = pickle_case(rng, cosmic, work, target == "pickle-struct", cache)
            if args.only is not None:
                print(f"case {case}: {target} {kind}")
                run()
                print("loaded")
                return
            result, sig = outcome(run, name, warnings)
            group = kind.split(":")[-1]
            rows[(target, group)][result] += 1
            if sig is not None:
                crashes[f"{target}: {sig}"].append(case)
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - t0
    print(f"fuzz_readers: {args.cases} cases, seed {args.seed}, {elapsed:.1f} s")
    print(f"{'target':14s} {'mutation':24s} {'cases':>6s} {'loaded':>7s} {'warned':>7s} {'clean':>6s} {'crash':>6s}")
    tot = collections.Counter()
    for (target, group), c in sorted(rows.items()):
        n = sum(c.values())
        tot.update(c)
        print(f"{target:14s} {group:24s} {n:6d} {c['loaded']:7d} {c['warned']:7d} {c['clean']:6d} {c['crash']:6d}")
    print(f"{'total':39s} {sum(tot.values()):6d} {tot['loaded']:7d} {tot['warned']:7d} {tot['clean']:6d} "
          f"{tot['crash']:6d}")
    if crashes:
        print("\ncrashes (not a clean error naming the file):")
        for sig, ids in sorted(crashes.items(), key=lambda kv: -len(kv[1])):
            print(f"  {len(ids):4d} x {sig}  (e.g. --only {' '.join(map(str, ids[:args.show]))})")


if __name__ == "__main__":
    main()
