"""The commands, pointed at crafted, damaged or unwritable files (issue 15): the payload never runs, every
expected failure is one or two lines naming file and field, exit status 2, and ``--debug`` shows the traceback."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from erc.cli import main
from erc.core.config import save_config
from erc.core.errors import FileFormatError
from erc.data.config import DialogueDataConfig
from erc.graph.config import GraphTrainConfig
from erc.data.synthetic_pickles import build_layout, write_layout_pickle
from erc.graph.model import LEGACY_MODEL_FILE, META_FILE, MODEL_FILE, GraphModelConfig, GraphSmile, load_graph_model, save_graph_model
from erc.core.io import read_json, write_json
from tests.data.test_safety import _System, crafted_pickle

HINT = "(run with --debug or ERC_DEBUG=1 to see the traceback)"


def run_main(argv, capsys) -> tuple[int, list[str]]:
    """``erc ARGV`` in this process: (exit status, stderr lines)."""
    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code
    return rc, capsys.readouterr().err.strip().splitlines()


def error_lines(lines: list[str], command: str) -> list[str]:
    """The error's own lines (after any log lines): ``erc COMMAND: ...`` and the hint."""
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"erc {command}: "))
    return lines[start:]


@pytest.fixture()
def graph_model_dir(tmp_path) -> Path:
    """A saved (untrained) graph model whose run config reads cosmic_iemocap text through the hash featuriser."""
    d = tmp_path / "best_model"
    cfg = GraphModelConfig(input_dims={"text": 16}, hidden_dim=8, layers=[1], win_p=2, win_f=2,
                           label_names=["hap", "sad", "neu", "ang", "exc", "fru"],
                           sentiment_names=["negative", "neutral", "positive"])
    save_graph_model(GraphSmile(cfg), d, extra={"normalization": {}})
    data = DialogueDataConfig(dataset="cosmic_iemocap", modalities=["text"], text_source="hash", hash_dim=16)
    save_config(GraphTrainConfig(data=data), d / "config.yaml")
    return d


# --------------------------------------------------------------------------- the crafted pickle, every command
def test_crafted_pickle_through_every_command(tmp_path, capsys, graph_model_dir, project_root):
    marker = tmp_path / "MARKER"
    evil = crafted_pickle(tmp_path / "evil.pkl", marker)
    commands = {
        "inspect": [evil],
        "load-data": ["--dataset", "cosmic_iemocap", "--path", evil, "--modalities", "text", "--text-source", "hash"],
        "embed": ["--dataset", "cosmic_iemocap", "--path", evil, "--output", tmp_path / "e" / "emb.npz"],
        "predict-graph": ["--model-dir", graph_model_dir, "--path", evil, "--output", tmp_path / "p.csv"],
    }
    forbidden = f"'{os.system.__module__}.system'"
    for command, args in commands.items():
        rc, lines = run_main([command, *args], capsys)
        err = error_lines(lines, command)
        assert rc == 2 and len(err) == 2 and err[1] == HINT, (command, lines)
        assert err[0].startswith(f"erc {command}: error: {evil}: refusing to load this pickle") and forbidden in err[0]
        assert not marker.exists(), command
    assert not (tmp_path / "e").exists() and not (tmp_path / "p.csv").exists()
    # train-graph (Accelerate) in its own process, as users run it
    proc = subprocess.run([sys.executable, "cli.py", "train-graph", "--dataset", "cosmic_iemocap", "--path", str(evil),
                           "--modalities", "text", "--text-source", "hash", "--epochs", "1",
                           "--output-dir", str(tmp_path / "run")], cwd=project_root, capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{evil}: refusing to load this pickle" in proc.stderr and forbidden in proc.stderr
    assert not marker.exists()


def test_exit_status_traceback_only_with_debug(tmp_path, project_root):
    evil = crafted_pickle(tmp_path / "evil.pkl", tmp_path / "MARKER")
    plain = subprocess.run([sys.executable, "cli.py", "inspect", str(evil)], cwd=project_root,
                           capture_output=True, text=True)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines()[-1] == HINT and len(plain.stderr.strip().splitlines()) == 2
    for extra_args, env in ((["--debug", "inspect", str(evil)], {}), (["inspect", str(evil), "--debug"], {}),
                            (["inspect", str(evil)], {"ERC_DEBUG": "1"})):
        dbg = subprocess.run([sys.executable, "cli.py", *extra_args], cwd=project_root, capture_output=True,
                             text=True, env={**os.environ, **env})
        assert dbg.returncode == 1 and "Traceback (most recent call last)" in dbg.stderr
        assert "UnsafePickleError" in dbg.stderr and f"{os.system.__module__}.system" in dbg.stderr
    assert not (tmp_path / "MARKER").exists()


# --------------------------------------------------------------------------- one error path
def test_data_validation_error_is_two_lines(tmp_path, capsys):
    obj = list(build_layout("cosmic_iemocap", n_dialogues=4, seed=3))
    first = obj[3][0]                                            # trainVid[0]
    obj[1] = {**obj[1], first: [9] + list(obj[1][first])[1:]}  # label 9 of 6 classes
    path = write_layout_pickle(tmp_path / "bad.pkl", "cosmic_iemocap", obj)
    rc, lines = run_main(["load-data", "--dataset", "cosmic_iemocap", "--path", path, "--modalities", "text",
                          "--text-source", "hash"], capsys)
    assert rc == 2 and error_lines(lines, "load-data") == [
        f"erc load-data: error: {path}: dialogue {first!r}: field 'videoLabels': label 9 at utterance 0 outside "
        "the class range 0..5", HINT]


def test_missing_and_damaged_files_are_named(tmp_path, capsys):
    rc, lines = run_main(["load-data", "--dataset", "cosmic_iemocap", "--path", tmp_path / "nope.pkl",
                          "--modalities", "text", "--text-source", "hash"], capsys)
    assert rc == 2 and error_lines(lines, "load-data")[0] == (
        f"erc load-data: error: {tmp_path / 'nope.pkl'}: no such file (dataset cosmic_iemocap)")
    pkl = write_layout_pickle(tmp_path / "c.pkl", "cosmic_iemocap", n_dialogues=4)
    (tmp_path / "e.npz").write_bytes(b"PK\x03\x04 not really a zip")
    rc, lines = run_main(["load-data", "--dataset", "cosmic_iemocap", "--path", pkl, "--modalities", "text",
                          "--text-embeddings", tmp_path / "e.npz"], capsys)
    err = error_lines(lines, "load-data")
    assert rc == 2 and err[0].startswith(f"erc load-data: error: {tmp_path / 'e.npz'}: not a readable embedding file")
    np.savez(tmp_path / "o.npz", embeddings=np.array([{"a": 1}], dtype=object), utterance_ids=np.array([""]),
             dialogue_ids=np.array(["d"]), positions=np.array([0]))
    rc, lines = run_main(["load-data", "--dataset", "cosmic_iemocap", "--path", pkl, "--modalities", "text",
                          "--text-embeddings", tmp_path / "o.npz"], capsys)
    assert rc == 2 and "o.npz: not a readable embedding file (ValueError: Object arrays cannot be loaded" in lines[-2]


# --------------------------------------------------------------------------- predict / embed
@pytest.fixture(scope="module")
def vad_model_dir(tmp_path_factory, tiny_encoder_dir) -> Path:
    from erc.vad.model import VADRegressor

    torch.manual_seed(0)
    return VADRegressor.from_encoder_name(str(tiny_encoder_dir)).save_pretrained(
        tmp_path_factory.mktemp("vad") / "best_model")


def test_predict_keeps_ids_and_texts_as_written(tmp_path, capsys, vad_model_dir):
    from erc.vad.model import VADRegressor

    (tmp_path / "in.csv").write_text("id,text\n001,None\n002,NA\n003,\n")
    out = tmp_path / "pred.csv"
    rc, _ = run_main(["predict", "--model-dir", vad_model_dir, "--input", tmp_path / "in.csv", "--id-column", "id",
                      "--output", out], capsys)
    assert rc == 0
    rows = [ln.split(",") for ln in out.read_text().splitlines()]
    assert [r[0] for r in rows] == ["utterance_id", "001", "002", "003"]
    want = VADRegressor.from_pretrained(vad_model_dir).predict(["None", "NA", ""])
    got = np.array([[float(x) for x in r[1:]] for r in rows[1:]])
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert np.abs(got[0] - got[2]).max() > 1e-6            # "None" was predicted as text, not as an empty cell


def test_unwritable_output_fails_before_any_work(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")
    bad_out = tmp_path / "file.txt" / "out.csv"
    # the model folder and the input do not exist: the output is what the error must be about
    for command, args in (("predict", ["--model-dir", tmp_path / "no_model", "--input", tmp_path / "no.csv"]),
                          ("embed", ["--dataset", "cosmic_iemocap", "--path", tmp_path / "no.pkl"]),
                          ("predict-graph", ["--model-dir", tmp_path / "no_model"])):
        rc, lines = run_main([command, *args, "--output", bad_out], capsys)
        assert rc == 2 and error_lines(lines, command) == [
            f"erc {command}: error: field 'output': {bad_out}: cannot be created: {tmp_path / 'file.txt'} is a file, "
            "not a folder", HINT], command


def test_truncated_model_file_is_named(tmp_path, capsys, vad_model_dir):
    import shutil

    model = shutil.copytree(vad_model_dir, tmp_path / "m")
    head = model / "model.safetensors"
    head.write_bytes(head.read_bytes()[:-7])
    (tmp_path / "in.csv").write_text("text\nhello\n")
    rc, lines = run_main(["predict", "--model-dir", model, "--input", tmp_path / "in.csv", "--output",
                          tmp_path / "p.csv"], capsys)
    assert rc == 2 and error_lines(lines, "predict")[0].startswith(
        f"erc predict: error: {head}: truncated safetensors file")
    assert not (tmp_path / "p.csv").exists()


# --------------------------------------------------------------------------- graph model folder
def test_model_config_missing_key_is_named(tmp_path, capsys, graph_model_dir):
    meta = read_json(graph_model_dir / META_FILE)
    del meta["model"]["hidden_dim"]
    write_json(graph_model_dir / META_FILE, meta)
    with pytest.raises(FileFormatError) as err:
        load_graph_model(graph_model_dir)
    assert str(err.value).startswith(f"{graph_model_dir / META_FILE}: field 'model': missing key(s) ['hidden_dim']")
    pkl = write_layout_pickle(tmp_path / "c.pkl", "cosmic_iemocap", n_dialogues=4)
    rc, lines = run_main(["predict-graph", "--model-dir", graph_model_dir, "--path", pkl, "--output",
                          tmp_path / "p.csv"], capsys)
    assert rc == 2 and "model_config.json: field 'model': missing key(s) ['hidden_dim']" in lines[-2]


def test_graph_model_is_safetensors_and_damage_is_named(tmp_path, graph_model_dir):
    """The saved graph model is safetensors (no pickle in the folder); a truncated file is named; an
    older release's model.pt still loads, read with weights_only=True (a payload never runs)."""
    from tests.conftest import pickle_files

    model, _ = load_graph_model(graph_model_dir)               # the intact folder loads
    assert model.cfg.hidden_dim == 8 and not model.training
    weights = graph_model_dir / MODEL_FILE
    assert MODEL_FILE == "model.safetensors" and weights.is_file() and pickle_files(graph_model_dir) == []
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 7])
    with pytest.raises(FileFormatError, match=rf"{weights}: truncated safetensors file"):
        load_graph_model(graph_model_dir)

    weights.unlink()                                         # a folder written before safetensors
    legacy = graph_model_dir / LEGACY_MODEL_FILE
    torch.save(reference, legacy)
    old, _ = load_graph_model(graph_model_dir)
    assert all(torch.equal(old.state_dict()[k], v) for k, v in reference.items())
    marker = tmp_path / "MARKER"
    torch.save({"w": _System(f"touch {marker}")}, legacy)     # weights_only=True refuses it, nothing runs
    with pytest.raises(FileFormatError, match=rf"{legacy}: refusing to load: it holds objects other than tensors"):
        load_graph_model(graph_model_dir)
    assert not marker.exists()
    torch.save({"unexpected.weight": torch.zeros(1)}, legacy)
    with pytest.raises(FileFormatError, match=rf"{legacy}: does not match the architecture in {META_FILE}"):
        load_graph_model(graph_model_dir)
