"""Session fixtures shared by every stage's tests. No test touches the network."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


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


def require_data(*parts: str) -> Path:
    """Path under the real-data folder, or skip the test saying what is missing."""
    from erc.core.paths import data_dir, data_path

    if data_dir() is None:
        pytest.skip("real data folder absent (set ERC_DATA_DIR or place ../shared/data)")
    p = data_path(*parts)
    if p is None:
        pytest.skip(f"{'/'.join(parts)} absent under {data_dir()}")
    return p
