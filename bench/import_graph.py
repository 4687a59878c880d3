"""Print the import graph between the project's packages; with ``--check``, fail on upward imports.

    python bench/import_graph.py [ROOT] [--check]

Every ``import`` statement of every module is read (also those inside
functions), so a lazy import counts like a top-level one. A package is
``erc.<name>`` (a sub-package or a top module of the ``erc`` package); in a
tree without ``erc/`` (the layout before it), each top-level package is one.

Layers (a package may import only packages of a LOWER layer, or its own):

   -1 erc.metrics                  the evaluate modules and their computations (numpy, scikit-learn)
    0 erc.core                     config, I/O, run start-up, training harness, metrics
    1 erc.data                     corpora, dataset facts, splits, dialogue batches
    2 erc.encoders                 Hugging Face encoders, pooling, tiny offline encoder, embed
    3 erc.vad erc.graph erc.hrg    trained stages, side by side (and erc.baselines)
    4 erc.compare erc.online       the comparison builds on the V/A/D stage's models; online prediction
                                   and the service on the graph stage's causal models
    5 erc.pipeline erc.benchmark   the top: chains, benchmarks and dispatches the stages
      erc.cli
"""
from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

LAYERS = {
    "erc.metrics": -1,
    "erc.core": 0,
    "erc.data": 1,
    "erc.encoders": 2,
    "erc.vad": 3, "erc.graph": 3, "erc.hrg": 3, "erc.baselines": 3,
    "erc.compare": 4, "erc.online": 4,
    "erc.pipeline": 5, "erc.benchmark": 5, "erc.cli": 5,
}


def packages(root: Path) -> dict[str, Path]:
    """Package name -> its folder or module file."""
    top = root / "erc"
    if top.is_dir():
        found = {f"erc.{p.name}": p for p in top.iterdir()
                 if p.is_dir() and (p / "__init__.py").is_file()}
        found.update({f"erc.{p.stem}": p for p in top.glob("*.py") if p.stem != "__init__"})
        return found
    return {p.name: p for p in root.iterdir() if p.is_dir() and (p / "__init__.py").is_file()
            and p.name not in ("tests", "bench")}


def owner(module: str, names: dict[str, Path]) -> str | None:
    parts = module.split(".")
    for k in (2, 1):
        cand = ".".join(parts[:k])
        if cand in names:
            return cand
    return None


def import_graph(root: Path) -> dict[str, set[str]]:
    names = packages(root)
    graph: dict[str, set[str]] = defaultdict(set)
    for pkg, where in names.items():
        files = [where] if where.is_file() else sorted(where.rglob("*.py"))
        graph[pkg]
        for f in files:
            tree = ast.parse(f.read_text(encoding="utf-8"), filename=str(f))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    mods = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    mods = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                else:
                    continue
                for m in mods:
                    dep = owner(m, names)
                    if dep and dep != pkg:
                        graph[pkg].add(dep)
    return dict(graph)


def violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for pkg, deps in sorted(graph.items()):
        if pkg not in LAYERS:
            bad.append(f"{pkg}: not assigned to a layer in bench/import_graph.py")
            continue
        for d in sorted(deps):
            if LAYERS.get(d, 99) >= LAYERS[pkg]:
                bad.append(f"{pkg} (layer {LAYERS[pkg]}) imports {d} (layer {LAYERS.get(d, '?')})")
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parent.parent))
    ap.add_argument("--check", action="store_true", help="exit 1 if a package imports one not below it")
    args = ap.parse_args()
    graph = import_graph(Path(args.root))
    for pkg in sorted(graph, key=lambda p: (LAYERS.get(p, 99), p)):
        deps = sorted(graph[pkg], key=lambda p: (LAYERS.get(p, 99), p))
        print(f"{pkg} -> {', '.join(deps) if deps else '(nothing)'}")
    if args.check:
        bad = violations(graph)
        print("\n" + ("\n".join(bad) if bad else "no package imports one above it or beside it"))
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
