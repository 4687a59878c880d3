"""The online bench runs end to end against a real `erc serve` on a loopback port and reports every
figure issue 28 names: push against its floor, the offline equality check, each concurrency level,
the soak's RSS series and one row per fault, with the server serving after each.

Not timed; this catches the bench drifting from the library and the service it measures.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FAULTS = ("malformed JSON", "wrong types", "wrong feature length", "a 1 MB text", "text over max_text_chars",
          "unknown conversation ids", "clients that disconnect mid-request", "more conversations than the limit",
          "more turns than max_turns")


def test_online_bench_reports_every_figure(causal_model, tmp_path):
    out = tmp_path / "online.json"
    cmd = [sys.executable, str(ROOT / "bench" / "bench_online.py"), "--model-dir", str(causal_model),
           "--num-threads", "1", "--dialogues", "2", "--check-offline", "--concurrency", "1", "3",
           "--turns-per-level", "12", "--soak-turns", "40", "--rss-every", "10", "--fault-requests", "4",
           "--max-seconds", "60", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    lib = r["library"]
    assert lib["push"]["n"] == lib["turns"] > 0
    assert lib["offline_check"]["same_emotion"] == 1.0 and lib["offline_check"]["max_abs_prob_diff"] < 1e-5
    assert lib["ratio_p50"] == lib["push"]["p50_ms"] / lib["floor"]["p50_ms"]
    s = r["serve"]
    assert [lv["concurrency"] for lv in s["levels"]] == [1, 3]
    assert all(lv["turns"] == 12 and lv["errors"] == 0 for lv in s["levels"])
    assert s["soak"]["turns"] == 40 and s["soak"]["rss_series"][-1][0] == 40
    names = [f["fault"] for f in s["faults"]]
    assert len(names) == len(FAULTS) and all(n.startswith(k) for n, k in zip(names, FAULTS))
    assert all(f["healthy_after"] for f in s["faults"])
    by = dict(zip(FAULTS, s["faults"]))
    assert by["malformed JSON"]["answers"] == ["400: body: expected a JSON object"]
    assert all(a.startswith("413:") for a in by["a 1 MB text"]["answers"])
    assert all(a.startswith("404:") for a in by["unknown conversation ids"]["answers"])
    assert by["more conversations than the limit"]["opened"] == s["limits"]["max_conversations"]
    assert by["more turns than max_turns"]["accepted"] == s["limits"]["max_turns"]
    assert s["server_log_tracebacks"] == 0
    assert "| fault |" in proc.stdout and "| `push` |" in proc.stdout
