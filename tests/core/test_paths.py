"""Where real data is found, and the ERC_REQUIRE_DATA switch that turns its absence into a failure."""
from __future__ import annotations

import pytest

from erc.core import paths
from tests.conftest import require_data


def test_data_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ERC_DATA_DIR", str(tmp_path))
    assert paths.data_dir() == tmp_path
    assert paths.data_path("cosmic", "iemocap.pkl") is None
    (tmp_path / "cosmic").mkdir()
    (tmp_path / "cosmic" / "iemocap.pkl").write_bytes(b"")
    assert paths.data_path("cosmic", "iemocap.pkl") == tmp_path / "cosmic" / "iemocap.pkl"
    assert require_data("cosmic", "iemocap.pkl") == tmp_path / "cosmic" / "iemocap.pkl"


@pytest.mark.parametrize("flag,outcome", [(None, pytest.skip.Exception), ("0", pytest.skip.Exception),
                                          ("1", pytest.fail.Exception)])
def test_missing_file_skips_unless_data_is_required(tmp_path, monkeypatch, flag, outcome):
    monkeypatch.setenv("ERC_DATA_DIR", str(tmp_path))      # an empty data folder
    if flag is None:
        monkeypatch.delenv("ERC_REQUIRE_DATA", raising=False)
    else:
        monkeypatch.setenv("ERC_REQUIRE_DATA", flag)
    with pytest.raises(outcome, match=f"cosmic/iemocap.pkl absent under {tmp_path}"):
        require_data("cosmic", "iemocap.pkl")


def test_missing_folder_fails_when_data_is_required(monkeypatch):
    monkeypatch.setattr(paths, "data_dir", lambda: None)
    monkeypatch.setenv("ERC_REQUIRE_DATA", "1")
    with pytest.raises(pytest.fail.Exception, match="ERC_REQUIRE_DATA is set but real data folder absent"):
        require_data("emobank", "emobank.csv")
    monkeypatch.delenv("ERC_REQUIRE_DATA")
    with pytest.raises(pytest.skip.Exception, match="real data folder absent"):
        require_data("emobank", "emobank.csv")
