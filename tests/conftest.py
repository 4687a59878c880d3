"""Session fixtures shared by every stage's tests. No test touches the network."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")
if not os.environ.get("ERC_DATASETS_CACHE"):   # parsed-corpus cache of this test session, not the user's
    import tempfile

    os.environ["ERC_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="erc-test-datasets-")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need CUDA: on a machine without it, selecting them (``-m gpu``) skips
    them with that reason instead of failing."""
    gpu = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in gpu:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def synthetic_corpus():
    """A small synthetic corpus (40 dialogues over 5 sessions), identical in every run."""
    from erc.data.synthetic import generate_corpus

    return generate_corpus(n_dialogues=40, min_len=6, max_len=14, seed=0)


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory, synthetic_corpus) -> Path:
    """A tiny RoBERTa + locally trained tokenizer saved as a HF folder (load with from_pretrained)."""
    from erc.encoders.tiny import build_tiny_encoder

    return build_tiny_encoder(tmp_path_factory.mktemp("tiny_encoder"), synthetic_corpus.texts)


@pytest.fixture(scope="session")
def synthetic_release(tmp_path_factory, synthetic_corpus) -> Path:
    """The synthetic corpus written in the IEMOCAP release layout (session 5 unlabeled)."""
    return synthetic_corpus.write_iemocap_release(tmp_path_factory.mktemp("release"),
                                                  unlabeled_sessions=(5,))


def free_port() -> int:
    """A TCP port that is free now (the OS picks it: bind to port 0), for a multi-process test's
    rendezvous. A fixed port fails when two runs, or a leftover process, hold it at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_processes(cmd: list[str], *, cwd, env, timeout: float) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True)`` for a launcher that starts worker processes.

    On timeout the launcher's whole process group is killed (``subprocess.run`` kills the launcher only,
    and a worker stuck in a collective would outlive the test) and the test fails with the output so far,
    so a hang says where it hung.
    """
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(map(str, cmd[:6]))} ...: no result after {timeout} s (process group killed)\n"
                    f"--- stdout (end) ---\n{out[-3000:]}\n--- stderr (end) ---\n{err[-5000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def data_required() -> bool:
    """``ERC_REQUIRE_DATA`` set (and not ``0``): a missing real-data file fails the test instead of
    skipping it, so a CI run cannot pass by skipping every real-data test (``.ci/run`` sets it)."""
    return os.environ.get("ERC_REQUIRE_DATA", "").strip() not in ("", "0")


def require_data(*parts: str) -> Path:
    """Path under the real-data folder, or skip the test saying what is missing (fail under
    ``ERC_REQUIRE_DATA=1``). Every test that reads real data gets its path here."""
    from erc.core.paths import data_dir, data_path

    root = data_dir()
    p = data_path(*parts) if root is not None else None
    if p is not None:
        return p
    why = ("real data folder absent (set ERC_DATA_DIR or place ../shared/data)" if root is None
           else f"{'/'.join(parts)} absent under {root}")
    if data_required():
        pytest.fail(f"ERC_REQUIRE_DATA is set but {why}", pytrace=False)
    pytest.skip(why)


PICKLE_SUFFIXES = {".pkl", ".pickle", ".bin", ".pt", ".pth", ".ckpt"}


def pickle_files(folder: Path) -> list[str]:
    """Files under ``folder`` that are pickles or ``torch.save`` archives (we never write either).

    A file counts when its suffix is a pickle one, or (safetensors aside, whose first bytes are a
    header length) it starts with the pickle protocol opcode or the zip magic ``torch.save`` uses.
    An ``.npz`` (a zip of ``.npy``) counts only when it needs pickle to load (object arrays).
    """
    import numpy as np

    found = []
    for p in sorted(Path(folder).rglob("*")):
        if not p.is_file():
            continue
        if p.suffix == ".npz":
            try:
                with np.load(p, allow_pickle=False) as z:
                    [z[k] for k in z.files]
            except ValueError:
                found.append(str(p.relative_to(folder)))
            continue
        head = p.open("rb").read(4)
        is_pickle = head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
        if p.suffix in PICKLE_SUFFIXES or (p.suffix != ".safetensors" and (is_pickle or head == b"PK\x03\x04")):
            found.append(str(p.relative_to(folder)))
    return found
