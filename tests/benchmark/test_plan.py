"""Planning a benchmark: the cells, what each imposes, and skip / resume / refuse against each cell's folder."""
from __future__ import annotations

import pytest

from erc.benchmark.config import BenchmarkConfig
from erc.benchmark.plan import cells, format_plan, plan
from erc.benchmark.run import mark_complete
from erc.core.config import ConfigError, config_from_dict, resolve_config
from erc.core.io import write_json
from erc.core.runs import RunMismatchError, record_identity


def _cfg(tmp_path, **kw) -> BenchmarkConfig:
    values = {"output_dir": str(tmp_path / "bench"), "seeds": 2,
              "modalities": {"text": ["text"], "text_timing": ["text", "timing"]},
              "datasets": {"synthetic": {"data": {"synthetic_dialogues": 12, "valid_fraction": 0.25},
                                         "features": {"h32": {"text_source": "hash", "hash_dim": 32},
                                                      "emb": "/nowhere/embeddings.npz"}}},
              "methods": {"graph": {"overrides": {"epochs": 1, "lr": 1.0e-3}},
                          "graph_cmerc": {},
                          "hrg": {"overrides": {"backbone": "builtin:tiny", "head": "classify"}}}}
    values.update(kw)
    return config_from_dict(BenchmarkConfig, values, "test")


def test_cells_grid_and_what_every_cell_shares(tmp_path):
    cfg = _cfg(tmp_path)
    got = cells(cfg)
    # 2 variants x (2 features x 2 feature methods + 1 transcript method) = 10 cells
    assert [c.label for c in got[:5]] == ["synthetic/h32/text/graph", "synthetic/h32/text/graph_cmerc",
                                          "synthetic/transcript/text/hrg", "synthetic/emb/text/graph",
                                          "synthetic/emb/text/graph_cmerc"]
    assert len(got) == 10
    for c in got:
        assert c.config.seed == 0 and c.config.seeds == 2 and c.config.selection_metric == "weighted_f1"
        assert c.config.data.valid_fraction == 0.25 and c.config.data.synthetic_dialogues == 12
        assert c.config.output_dir == str(tmp_path / "bench" / "cells" / c.dataset / c.features / c.modalities
                                          / c.method / "run")
    graph_emb = next(c for c in got if c.label == "synthetic/emb/text_timing/graph")
    assert graph_emb.config.data.text_embeddings == "/nowhere/embeddings.npz"
    assert graph_emb.config.data.text_source == "embeddings"
    assert graph_emb.config.data.modalities == ["text", "timing"] and graph_emb.config.epochs == 1
    assert graph_emb.config.cmerc.rank_coef == 0.0
    h32 = next(c for c in got if c.label == "synthetic/h32/text/graph_cmerc")
    assert h32.config.data.hash_dim == 32 and h32.config.cmerc.curriculum          # CMERC paper settings (IEMOCAP)
    assert h32.config.cmerc.rank_coef == 0.005 and h32.config.cmerc.epoch_ratio == 0.15
    hrg = next(c for c in got if c.method == "hrg")
    assert hrg.config.backbone == "builtin:tiny" and hrg.config.data.text_embeddings is None
    reasons = {p.cell.label: p.reason for p in plan(cfg)}          # a placeholder features file is flagged
    assert "MISSING input /nowhere/embeddings.npz" in reasons["synthetic/emb/text/graph"]
    assert "MISSING" not in reasons["synthetic/h32/text/graph"]


def test_base_config_split_fields_do_not_leak_into_a_cell(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("data: {dataset: synthetic, valid_fraction: 0.4, split_seed: 9}\nepochs: 3\nseeds: 7\n")
    cfg = _cfg(tmp_path, methods={"graph": {"configs": {"synthetic": str(base)}}})
    c = cells(cfg)[0]
    assert c.config.epochs == 3                                   # the base config's own setting
    assert (c.config.seeds, c.config.data.valid_fraction, c.config.data.split_seed) == (2, 0.25, 0)


def test_overrides_of_imposed_fields_and_bad_grids_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"methods.graph.overrides: seeds"):
        cells(_cfg(tmp_path, methods={"graph": {"overrides": {"seeds": 3}}}))
    with pytest.raises(ConfigError, match=r"methods.graph.overrides: data.valid_fraction"):
        cells(_cfg(tmp_path, methods={"graph": {"overrides": {"data": {"valid_fraction": 0.5}}}}))
    with pytest.raises(ConfigError, match=r"methods.x.method: unknown method 'dialoguefoo'"):
        _cfg(tmp_path, methods={"graph": {}, "x": {"method": "dialoguefoo"}})
    with pytest.raises(ConfigError, match=r"reference: 'hrg' is not a method entry"):
        _cfg(tmp_path, methods={"graph": {}}, reference="hrg")
    with pytest.raises(ConfigError, match=r"datasets.synthetic.modalities: unknown variant"):
        _cfg(tmp_path, datasets={"synthetic": {"modalities": ["smell"]}})
    with pytest.raises(ConfigError, match=r"datasets.synthetic.features.f: unknown field\(s\) lr"):
        _cfg(tmp_path, datasets={"synthetic": {"features": {"f": {"lr": 1}}}})


def _finish(cell) -> None:
    """What a finished stage leaves (its run identity and outputs), then the benchmark's marker."""
    record_identity(cell.run_dir, cell.spec.stage.identity(cell.config))
    write_json(cell.run_dir / "results.json", {"per_seed": []})
    (cell.run_dir / "epochs.csv").write_text("seed,epoch\n")
    mark_complete(cell)


def test_plan_skips_finished_resumes_unfinished_refuses_changed(tmp_path):
    cfg = _cfg(tmp_path, datasets={"synthetic": {"features": {"h32": {"text_source": "hash", "hash_dim": 32}},
                                                 "modalities": ["text"]}})
    finished, unfinished, *rest = cells(cfg)
    _finish(finished)
    record_identity(unfinished.run_dir, unfinished.spec.stage.identity(unfinished.config))   # started, not done
    (unfinished.run_dir / "checkpoints").mkdir()
    actions = {p.cell.label: p.action for p in plan(cfg)}
    assert actions == {finished.label: "skip", unfinished.label: "resume", rest[0].label: "run"}
    assert "1 run, 1 resume, 1 skip" in format_plan(plan(cfg))

    # more epochs extend a finished run (epochs are not part of the identity): it resumes, it is not refused
    longer = _cfg(tmp_path, datasets=cfg.datasets, methods={**cfg.methods, "graph": {"overrides": {"epochs": 2,
                                                                                                  "lr": 1.0e-3}}})
    assert {p.cell.label: p.action for p in plan(longer)}[finished.label] == "resume"

    changed = _cfg(tmp_path, datasets=cfg.datasets, methods={**cfg.methods, "graph": {"overrides": {"epochs": 1,
                                                                                                   "lr": 5.0e-3}}})
    with pytest.raises(RunMismatchError, match=r"synthetic/h32/text/graph \(lr 0.001 -> 0.005\)") as info:
        plan(changed)
    assert "graph_cmerc" not in str(info.value)        # only the changed cell is named


def test_a_marker_written_before_a_field_was_added_still_skips(tmp_path, project_root, monkeypatch):
    """A finished train-baseline cell whose cell.json predates ``edge_attention`` (added with its default off, in
    TRAIN_BASELINE_IDENTITY.added) is still complete; the field switched on is another run."""
    from erc.core.io import read_json

    monkeypatch.chdir(project_root)
    gcn = {"method": "dialoguegcn", "overrides": {"epochs": 1}}
    cfg = _cfg(tmp_path, methods={"graph": {}, "gcn": gcn},
               datasets={"synthetic": {"features": {"h32": {"text_source": "hash", "hash_dim": 32}},
                                       "modalities": ["text"]}})
    cell = next(c for c in cells(cfg) if c.method == "gcn")
    _finish(cell)
    marker = cell.folder / "cell.json"
    old = read_json(marker)
    assert old["config"].pop("edge_attention") is False                  # as the code before the field wrote it
    write_json(marker, old)
    assert {p.cell.label: p.action for p in plan(cfg)}[cell.label] == "skip"
    on = _cfg(tmp_path, methods={"graph": {}, "gcn": {**gcn, "overrides": {"epochs": 1, "edge_attention": True}}},
              datasets=cfg.datasets)
    with pytest.raises(RunMismatchError, match=r"synthetic/h32/text/gcn \(edge_attention '\(absent\)' -> True\)"):
        plan(on)


def test_a_marker_differing_only_in_fields_that_do_not_change_the_run_still_skips(tmp_path):
    """A finished graph cell whose cell.json predates ``recompute_graphs`` (a memory mode, not in the run identity)
    and records other threads and checkpointing is still complete; a marker with fewer epochs is not (it resumes)."""
    from erc.core.io import read_json

    cfg = _cfg(tmp_path, methods={"graph": {"overrides": {"epochs": 2}}},
               datasets={"synthetic": {"features": {"h32": {"text_source": "hash", "hash_dim": 32}},
                                       "modalities": ["text"]}})
    (cell,) = cells(cfg)
    _finish(cell)
    marker = cell.folder / "cell.json"
    old = read_json(marker)
    assert old["config"].pop("recompute_graphs") is False
    old["config"].update(num_threads=7, checkpoint=not old["config"]["checkpoint"], release_memory=True)
    write_json(marker, old)
    assert [p.action for p in plan(cfg)] == ["skip"]
    old["config"]["epochs"] = 1                                  # finished with fewer epochs than asked: extend it
    write_json(marker, old)
    assert [p.action for p in plan(cfg)] == ["resume"]
    old["config"].update(epochs=2, seeds=1)                      # fewer seeds: the same
    write_json(marker, old)
    assert [p.action for p in plan(cfg)] == ["resume"]


def test_flags_override_the_yaml(tmp_path, project_root):
    cfg = resolve_config(BenchmarkConfig, {"seeds": 3, "output_dir": str(tmp_path / "b")},
                         project_root / "configs" / "benchmark_synthetic.yaml")
    assert cfg.seeds == 3
    assert set(cfg.method_entries()) == {"graph", "graph_cmerc", "hrg", "dialoguernn", "dialoguegcn", "mlp"}
    assert all(c.config.seeds == 3 for c in cells(cfg))


def test_a_new_method_is_one_registry_entry(tmp_path, monkeypatch):
    from erc.benchmark import registry
    from erc.graph.stage import TRAIN_GRAPH

    entry = registry.Method("wide_graph", TRAIN_GRAPH, lambda dataset, mods: {"hidden_dim": 8, "dropout": 0.3},
                            "a test method")
    monkeypatch.setitem(registry.METHODS, "wide_graph", entry)
    cfg = _cfg(tmp_path, methods={"graph": {}, "w": {"method": "wide_graph", "overrides": {"dropout": 0.1}}})
    w = [c for c in cells(cfg) if c.method == "w"]
    assert len(w) == 4 and all(c.spec is entry for c in w)          # 2 features x 2 variants
    assert (w[0].config.hidden_dim, w[0].config.dropout) == (8, 0.1)  # base, then the entry's overrides

    fixed = registry.Method("causal_graph", TRAIN_GRAPH, lambda dataset, mods: {}, "fixed fields",
                            fixed={"win_f": 0})
    monkeypatch.setitem(registry.METHODS, "causal_graph", fixed)
    base = tmp_path / "graph.yaml"
    base.write_text("win_f: 5\nwin_p: 5\n")
    cfg = _cfg(tmp_path, methods={"graph": {}, "c": {"method": "causal_graph", "configs": {"synthetic": str(base)}}})
    c = next(c for c in cells(cfg) if c.method == "c")
    assert (c.config.win_p, c.config.win_f) == (5, 0)                 # what makes the method wins over its base
    with pytest.raises(ConfigError, match=r"methods.c.overrides: win_f"):
        cells(_cfg(tmp_path, methods={"graph": {}, "c": {"method": "causal_graph", "overrides": {"win_f": 2}}}))


def test_stage_finished_needs_every_seed_at_its_last_epoch(tmp_path):
    from erc.benchmark.plan import stage_finished

    cfg = _cfg(tmp_path, datasets={"synthetic": {"features": {"h": {"text_source": "hash"}}, "modalities": ["text"]}})
    graph, _, hrg = cells(cfg)                      # graph: epochs 1, 2 seeds; hrg: 20 epochs by default

    def results(cell, per_seed):
        write_json(cell.run_dir / "results.json", {"per_seed": per_seed})
        (cell.run_dir / "epochs.csv").write_text("seed,epoch\n")

    results(graph, [{"seed": 0, "epochs_run": 1}])
    assert not stage_finished(graph)                                            # one of two seeds
    results(graph, [{"seed": 0, "epochs_run": 1}, {"seed": 1, "epochs_run": 1}])
    assert stage_finished(graph)
    results(hrg, [{"seed": 0, "epochs_run": 20, "finished": True}, {"seed": 1, "epochs_run": 3, "finished": False}])
    assert not stage_finished(hrg)                                              # a time-boxed seed


def test_one_process_per_cell_and_stale_locks_taken_over(tmp_path):
    import os
    import socket
    import subprocess

    from erc.benchmark.run import LOCK, claim, release

    cell = cells(_cfg(tmp_path))[0]
    assert claim(cell) is None                                  # taken
    holder = claim(cell)                                        # a second benchmark process finds it held
    assert holder["pid"] == os.getpid()
    release(cell)
    assert not (cell.folder / LOCK).exists() and claim(cell) is None
    release(cell)
    gone = subprocess.Popen(["true"])
    gone.wait()                                                 # a finished, reaped process: its pid is free
    write_json(cell.folder / LOCK, {"pid": gone.pid, "host": socket.gethostname()})
    assert claim(cell) is None                                  # stale: taken over
    release(cell)


def test_baselines_are_one_entry_each_with_their_method_fixed(tmp_path, project_root, monkeypatch):
    monkeypatch.chdir(project_root)
    base = "configs/baseline_dialoguegcn_cosmic_iemocap.yaml"
    cfg = _cfg(tmp_path, methods={"graph": {}, "dialoguernn": {}, "gcn": {"method": "dialoguegcn",
                                                                           "configs": {"synthetic": base}},
                                  "mlp": {"overrides": {"mlp_dims": [8]}}})
    by = {c.method: c for c in cells(cfg) if c.features == "h32" and c.modalities == "text"}
    assert {m: by[m].config.method for m in ("dialoguernn", "gcn", "mlp")} == {
        "dialoguernn": "dialoguernn", "gcn": "dialoguegcn", "mlp": "mlp"}
    assert all(by[m].spec.stage.name == "train-baseline" for m in ("dialoguernn", "gcn", "mlp"))
    assert by["gcn"].config.data.dataset == "synthetic" and by["gcn"].config.data.hash_dim == 32   # the benchmark's
    assert by["mlp"].config.mlp_dims == [8] and by["mlp"].config.seeds == 2
    with pytest.raises(ConfigError, match=r"methods.mlp.overrides: method"):
        cells(_cfg(tmp_path, methods={"graph": {}, "mlp": {"overrides": {"method": "dialoguernn"}}}))
