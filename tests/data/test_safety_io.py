"""erc.core.io safety (issue 15): a folder replacement killed at any step loses no complete copy, published
folders get umask permissions, outputs are checked writable, damaged JSON / safetensors files are named."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from erc.core.errors import FileFormatError, OutputNotWritableError
from erc.core.io import (atomic_replace_dir, check_safetensors, check_writable, complete_dir, read_json,
                         recover_dir)

FILES = ("a.txt", "sub/b.txt")


def _write_version(folder: Path, version: str) -> Path:
    for name in FILES:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(f"{version}:{name}")
    return folder


def _version(folder: Path) -> str | None:
    """'v1' / 'v2' when ``folder`` holds every file of that version, else None (incomplete or mixed)."""
    texts = [(folder / n).read_text() if (folder / n).is_file() else "" for n in FILES]
    versions = {t.split(":")[0] for t in texts}
    if len(versions) == 1 and all(t.endswith(f":{n}") for t, n in zip(texts, FILES)):
        return versions.pop()
    return None


# The child replaces ckpt (v1) by a fully written temporary folder (v2) and SIGKILLs itself just before
# its K-th file-system step (os.replace or shutil.rmtree) inside atomic_replace_dir.
CHILD = textwrap.dedent("""
    import os, shutil, signal, sys
    from pathlib import Path
    import erc.core.io as io
    k, root = int(sys.argv[1]), Path(sys.argv[2])
    steps = [0]
    def killing(real):
        def step(*args, **kwargs):
            steps[0] += 1
            if steps[0] == k:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)
        return step
    io.os.replace = killing(os.replace)
    io.shutil.rmtree = killing(shutil.rmtree)
    io.atomic_replace_dir(root / ".ckpt.tmp", root / "ckpt")
    print(steps[0])
""")


def _run_child(k: int, root: Path, project_root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(project_root)}
    return subprocess.run([sys.executable, "-c", CHILD, str(k), str(root)], capture_output=True, text=True,
                          env=env, cwd=project_root)


def test_replacement_killed_at_every_step_keeps_a_complete_copy(tmp_path, project_root):
    # the uninterrupted run: how many steps there are (4: tmp->.new, ckpt->.old, .new->ckpt, rm .old)
    root = tmp_path / "full"
    _write_version(root / "ckpt", "v1")
    _write_version(root / ".ckpt.tmp", "v2")
    done = _run_child(0, root, project_root)
    assert done.returncode == 0, done.stderr
    n_steps = int(done.stdout)
    assert n_steps == 4 and _version(root / "ckpt") == "v2"
    assert sorted(p.name for p in root.iterdir()) == ["ckpt"]
    for k in range(1, n_steps + 1):
        root = tmp_path / f"kill{k}"
        _write_version(root / "ckpt", "v1")
        _write_version(root / ".ckpt.tmp", "v2")
        r = _run_child(k, root, project_root)
        assert r.returncode == -signal.SIGKILL, (k, r.stderr)
        # read-only: the newest complete copy is found wherever the kill left it
        found = complete_dir(root / "ckpt")
        expected = "v1" if k == 1 else "v2"            # from step 2 on, v2 is complete under .ckpt.new
        assert found is not None and _version(found) == expected, (k, sorted(p.name for p in root.iterdir()))
        if k == 3:   # the probe: killed between the two renames, no ckpt/ at all
            assert not (root / "ckpt").exists() and _version(root / ".ckpt.old") == "v1"
        # a resumer recovers it in place; nothing is left beside it
        recover_dir(root / "ckpt")
        assert _version(root / "ckpt") == expected
        assert sorted(p.name for p in root.iterdir() if p.name != ".ckpt.tmp") == ["ckpt"]


def test_next_replacement_after_a_kill_keeps_the_complete_copy(tmp_path):
    # state left by a kill between the two renames: only .ckpt.old (v1) and .ckpt.new (v2)
    _write_version(tmp_path / ".ckpt.old", "v1")
    _write_version(tmp_path / ".ckpt.new", "v2")
    _write_version(tmp_path / ".ckpt.tmp", "v3")
    atomic_replace_dir(tmp_path / ".ckpt.tmp", tmp_path / "ckpt")
    assert _version(tmp_path / "ckpt") == "v3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_old_copy_is_restored_when_no_new_one_completed(tmp_path):
    _write_version(tmp_path / ".ckpt.old", "v1")
    assert "restored the previous copy" in recover_dir(tmp_path / "ckpt")
    assert _version(tmp_path / "ckpt") == "v1" and recover_dir(tmp_path / "ckpt") is None


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_published_folders_get_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        tmp = Path(tempfile.mkdtemp(dir=tmp_path, prefix=".best.", suffix=".tmp"))   # 0700, as before
        (tmp / "w.safetensors").write_bytes(b"x")
        os.chmod(tmp / "w.safetensors", 0o600)
        (tmp / "run.sh").write_text("#!/bin/sh\n")
        os.chmod(tmp / "run.sh", 0o700)
        (tmp / "sub").mkdir(mode=0o700)
        atomic_replace_dir(tmp, tmp_path / "best_model")
    finally:
        os.umask(old)
    best = tmp_path / "best_model"
    assert _mode(best) == 0o755 and _mode(best / "sub") == 0o755
    assert _mode(best / "w.safetensors") == 0o644 and _mode(best / "run.sh") == 0o755


def test_vad_best_model_folder_is_not_private(tmp_path, tiny_encoder_dir):
    from erc.vad.model import VADRegressor

    old = os.umask(0o022)
    try:
        VADRegressor.from_encoder_name(str(tiny_encoder_dir)).save_pretrained(tmp_path / "best_model")
    finally:
        os.umask(old)
    best = tmp_path / "best_model"
    assert _mode(best) == 0o755          # was 0700 (tempfile.mkdtemp)
    modes = {p.name: _mode(p) for p in best.iterdir()}
    assert modes["model.safetensors"] == 0o644 and modes["config.json"] == 0o644   # were 0600
    assert set(modes.values()) == {0o644}


def test_check_writable(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    assert check_writable(tmp_path / "new" / "deeper" / "out.csv") == tmp_path / "new" / "deeper" / "out.csv"
    assert not (tmp_path / "new").exists()                                      # creates nothing
    with pytest.raises(OutputNotWritableError, match=r"file\.txt is a file, not a folder"):
        check_writable(tmp_path / "file.txt" / "out.csv", "field 'output':")
    with pytest.raises(OutputNotWritableError, match=r"is a folder; expected a file path"):
        check_writable(tmp_path)
    with pytest.raises(OutputNotWritableError, match=r"is a file; expected a folder"):
        check_writable(tmp_path / "file.txt", folder=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]          # the probe file is gone


def test_damaged_safetensors_and_json_are_named(tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({"a": torch.arange(6, dtype=torch.float32), "b": torch.ones(2, 2)}, str(path))
    header = check_safetensors(path)
    assert header["a"]["shape"] == [6] and header["b"]["dtype"] == "F32"
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    with pytest.raises(FileFormatError, match=rf"{path}: truncated safetensors file: its tensors need "
                                              rf"{len(data)} bytes, the file has {len(data) - 5}"):
        check_safetensors(path)
    path.write_bytes(data[:20])
    with pytest.raises(FileFormatError, match=rf"{path}: damaged safetensors file: header length"):
        check_safetensors(path)
    (tmp_path / "c.json").write_text('{"a": 1,')
    with pytest.raises(FileFormatError, match=r"c\.json: not valid JSON \(.* at line 1, column 9\)"):
        read_json(tmp_path / "c.json")
