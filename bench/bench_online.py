"""Online prediction bench: per-turn latency of the library and of `erc serve`, memory over a long soak,
and the faults a public endpoint meets. Loopback only (127.0.0.1), bounded in requests and in time.

    python bench/bench_online.py --model-dir RUN/seed_0/best_model                # everything below
    python bench/bench_online.py --model-dir M --only library                     # push vs its floor
    python bench/bench_online.py --model-dir M --only serve --concurrency 1 8 32 --soak-turns 10000

* ``library``: ``OnlinePredictor.push`` per turn (no HTTP) over the model's test dialogues, against
  its floor, one text-encoder forward of that utterance alone; p50 / p99 of each and their ratio.
  With ``--check-offline`` it also runs the model offline (``predict-graph`` on the test split) and
  reports the largest probability difference and the share of equal predictions.
* ``serve``: starts ``erc serve`` on a free loopback port, then for each concurrency ``c`` runs ``c``
  client threads (one keep-alive connection and one conversation at a time each: open, post a test
  dialogue's turns, delete) for ``--turns-per-level`` turns: p50 / p95 / p99 per-turn latency and
  turns/s. A soak of ``--soak-turns`` turns at ``--soak-concurrency`` samples the server's resident
  memory every ``--rss-every`` turns (``/proc/PID/status``). Then the faults: malformed JSON, wrong
  types, a 1 MB text, unknown ids, clients that disconnect mid-request, more conversations than the
  limit, each with what the server answered, and whether it still serves afterwards.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms, dtype=np.float64)
    return {"n": int(a.size), "p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}


def test_dialogues(model_dir: Path, limit: int | None = None) -> list[dict]:
    """The model's test dialogues as raw turns (text, speaker, start, end, other features)."""
    from erc.core.config import load_yaml
    from erc.data.readers import read_corpus
    from erc.data.registry import get_spec

    data = dict(load_yaml(model_dir / "config.yaml").get("data") or {})
    corpus = read_corpus(get_spec(data.get("dataset", "synthetic")), data.get("path"),
                         synthetic_dialogues=data.get("synthetic_dialogues", 60),
                         synthetic_seed=data.get("synthetic_seed", 0))
    split = "test" if corpus.splits.get("test") else next(iter(corpus.splits))
    out = []
    for k in corpus.splits[split][:limit]:
        d = corpus.dialogues[k]
        n = len(d.texts)
        start = getattr(d, "start", None)
        end = getattr(d, "end", None)
        feats = getattr(d, "features", None) or {}
        out.append({"dialogue_id": k, "turns": [
            {"text": str(d.texts[t]) or ".", "speaker": str(d.speakers[t]),
             "start": None if start is None else float(start[t]), "end": None if end is None else float(end[t]),
             "features": {m: np.asarray(v[t], dtype=np.float32).tolist() for m, v in feats.items()}}
            for t in range(n)]})
    return out


def _turn_args(turn: dict, modalities: list[str]) -> dict:
    feats = {m: v for m, v in turn["features"].items() if m in modalities}
    return {"text": turn["text"], "speaker": turn["speaker"], "features": feats or None,
            "start": turn["start"] if "timing" in modalities else None,
            "end": turn["end"] if "timing" in modalities else None}


# -- library -----------------------------------------------------------------------------------
def bench_library(model_dir: Path, dialogues: list[dict], check_offline: bool) -> dict:
    from erc.data.text import hash_featurize
    from erc.online.api import OnlinePredictor

    online = OnlinePredictor.from_pretrained(model_dir)
    mods = online.modalities
    enc = online.turn_text_encoder
    if enc is not None:
        def floor(t):
            return enc([t["text"]], [t["speaker"]])     # one encoder forward of the utterance alone
    else:
        def floor(t):
            return hash_featurize([t["text"]], int(online.settings.get("hash_dim", 256)))
    warm = online.start()
    for t in dialogues[0]["turns"][:5]:
        online.push(warm, **_turn_args(t, mods))
        floor(t)
    push_ms, floor_ms, rows = [], [], []
    for d in dialogues:
        chat = online.start(d["dialogue_id"])
        for t in d["turns"]:
            args = _turn_args(t, mods)
            t0 = time.perf_counter()
            r = online.push(chat, **args)
            t1 = time.perf_counter()
            floor(t)
            t2 = time.perf_counter()
            push_ms.append(1e3 * (t1 - t0))
            floor_ms.append(1e3 * (t2 - t1))
            rows.append((d["dialogue_id"], r["turn"], r["emotion"], list(r["emotion_probabilities"].values())))
    out = {"turns": len(push_ms), "push": percentiles(push_ms), "floor": percentiles(floor_ms),
           "ratio_p50": float(np.median(push_ms) / np.median(floor_ms)),
           "ratio_p99": float(np.percentile(push_ms, 99) / np.percentile(floor_ms, 99))}
    if check_offline:
        import tempfile

        import pandas as pd

        from erc.graph.config import PredictGraphConfig
        from erc.graph.predict import run_predict_graph

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "offline.csv"
            run_predict_graph(PredictGraphConfig(model_dir=str(model_dir), output=str(path), splits=["test"]))
            ref = pd.read_csv(path, dtype={"dialogue_id": str})
        cols = [f"p_{n}" for n in online.label_names]
        ref = ref.set_index(["dialogue_id", "position"])
        diffs, same = [], 0
        for dlg, pos, emo, probs in rows:
            r = ref.loc[(str(dlg), pos)]
            diffs.append(float(np.abs(np.asarray(probs) - r[cols].to_numpy(dtype=np.float64)).max()))
            same += int(r["emotion"] == emo)
        out["offline_check"] = {"turns": len(rows), "max_abs_prob_diff": max(diffs), "same_emotion": same / len(rows)}
    return out


# -- service -----------------------------------------------------------------------------------
class Server:
    def __init__(self, model_dir: Path, num_threads: int, limits: dict):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        args = [sys.executable, "-m", "erc.cli", "serve", "--model-dir", str(model_dir), "--host", "127.0.0.1",
                "--port", str(self.port), "--num-threads", str(num_threads), "--log-level", "warning"]
        for k, v in limits.items():
            args += [f"--{k.replace('_', '-')}", str(v)]
        self.log = open(os.devnull, "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.output: list[str] = []
        threading.Thread(target=lambda: self.output.extend(self.proc.stdout), daemon=True).start()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("server exited:\n" + "".join(self.output))
            try:
                if request(self.port, "GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.25)
        raise SystemExit("server did not answer within 180 s")

    def rss_mib(self) -> float:
        return _status_kib(self.proc.pid, "VmRSS") / 1024

    def hwm_mib(self) -> float:
        return _status_kib(self.proc.pid, "VmHWM") / 1024

    def stop(self) -> str:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return "".join(self.output)


def _status_kib(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return float(line.split()[1])
    return float("nan")


def request(port: int, method: str, path: str, body=None, raw: bytes | None = None, conn=None, timeout=60.0):
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        text = resp.read()
        return resp.status, (json.loads(text) if text else None)
    finally:
        if own:
            conn.close()


def _client(port: int, dialogues: list[dict], mods: list[str], budget: "Budget", latencies: list[float],
            errors: list[str], start_index: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    k = start_index
    try:
        while not budget.done():
            d = dialogues[k % len(dialogues)]
            k += 1
            status, body = request(port, "POST", "/v1/conversations", conn=conn)
            if status != 201:
                errors.append(f"open: {status} {body}")
                time.sleep(0.05)
                continue
            cid = body["conversation_id"]
            for t in d["turns"]:
                if not budget.take():
                    break
                t0 = time.perf_counter()
                status, body = request(port, "POST", f"/v1/conversations/{cid}/turns", _turn_args(t, mods), conn=conn)
                latencies.append(1e3 * (time.perf_counter() - t0))
                if status != 200:
                    errors.append(f"turn: {status} {body}")
            request(port, "DELETE", f"/v1/conversations/{cid}", conn=conn)
    finally:
        conn.close()


class Budget:
    """At most ``turns`` turns, and nothing after ``seconds``: every load loop stops by itself."""

    def __init__(self, turns: int, seconds: float):
        self.left, self.deadline, self.lock = turns, time.monotonic() + seconds, threading.Lock()

    def take(self) -> bool:
        with self.lock:
            if self.left <= 0 or time.monotonic() > self.deadline:
                return False
            self.left -= 1
            return True

    def done(self) -> bool:
        return self.left <= 0 or time.monotonic() > self.deadline


def load_level(server: Server, dialogues, mods, concurrency: int, turns: int, seconds: float,
               rss_every: int = 0) -> dict:
    budget, latencies, errors = Budget(turns, seconds), [], []
    rss_series: list[tuple[int, float]] = []
    stop = threading.Event()

    def sample():
        next_at = 0
        while not stop.is_set():
            n = len(latencies)
            if rss_every and n >= next_at:
                rss_series.append((n, round(server.rss_mib(), 1)))
                next_at += rss_every
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    threads = [threading.Thread(target=_client, args=(server.port, dialogues, mods, budget, latencies, errors,
                                                      7 * i)) for i in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    if rss_every:
        rss_series.append((len(latencies), round(server.rss_mib(), 1)))
    out = {"concurrency": concurrency, "turns": len(latencies), "wall_s": wall, "turns_per_s": len(latencies) / wall,
           **percentiles(latencies), "errors": len(errors), "first_errors": errors[:3],
           "rss_mib_after": round(server.rss_mib(), 1)}
    if rss_every:
        out["rss_series"] = rss_series
    return out


def faults(server: Server, dialogues, mods, limits: dict, n: int = 200) -> list[dict]:
    port = server.port
    turn = _turn_args(dialogues[0]["turns"][0], mods)
    rows = []

    def answer(status, body):
        msg = body["error"]["message"] if isinstance(body, dict) and "error" in body else str(body)[:80]
        msg = re.sub(r"'no\d+'", "'noN'", msg)          # one row for every unknown id
        return f"{status}: {msg[:110]}"

    def record(name, count, answers, **extra):
        ok = request(port, "GET", "/health")[0] == 200
        rows.append({"fault": name, "count": count, "answers": sorted(set(answers)), "healthy_after": ok,
                     "rss_mib_after": round(server.rss_mib(), 1), **extra})

    cid = request(port, "POST", "/v1/conversations")[1]["conversation_id"]
    path = f"/v1/conversations/{cid}/turns"
    record("malformed JSON", n, [answer(*request(port, "POST", path, raw=b'{"text": "hi", "speaker": ')) for _ in range(n)])
    record("wrong types (text: 5, speaker: [])", n,
           [answer(*request(port, "POST", path, {**turn, "text": 5, "speaker": []})) for _ in range(n)])
    record("wrong feature length", n, [answer(*request(port, "POST", path, {**turn, "features": {m: [0.0] for m in mods
                                                                                                 if m not in ("text", "timing")} or {"text": [0.0]}}))
                                       for _ in range(n)])
    big = {**turn, "text": "x" * 1_000_000}
    n_big = max(1, n // 4)
    record("a 1 MB text", n_big, [answer(*request(port, "POST", path, big)) for _ in range(n_big)])
    record("text over max_text_chars", n, [answer(*request(port, "POST", path, {**turn, "text": "y" * (limits["max_text_chars"] + 1)}))
                                           for _ in range(n)])
    record("unknown conversation ids", n, [answer(*request(port, "POST", f"/v1/conversations/no{k}/turns", turn))
                                           for k in range(n)])
    for k in range(n):                               # the body announced, half of it sent, the socket closed
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      f"Content-Length: 4000\r\n\r\n{{\"text\": \"half a request".encode())
    n_full = min(n, limits["max_turns"])
    for k in range(n_full):                          # a full request, the client gone before the answer
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            body = json.dumps(turn).encode()
            s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    time.sleep(1.0)
    status, hist = request(port, "GET", f"/v1/conversations/{cid}")
    record(f"clients that disconnect mid-request ({n} with half a body, {n_full} full requests whose answer is not "
           "read)", n + n_full, [f"(nobody reads an answer); turns added: {len(hist['turns'])} of the {n_full} full requests (a request "
            "whose client is gone before the server reads it is dropped, never half-applied)"])
    request(port, "DELETE", f"/v1/conversations/{cid}")
    opened, answers = [], []
    for _ in range(limits["max_conversations"] + 50):
        status, body = request(port, "POST", "/v1/conversations")
        answers.append(answer(status, body) if status != 201 else "201: opened")
        if status == 201:
            opened.append(body["conversation_id"])
    record(f"more conversations than the limit ({limits['max_conversations']} + 50)", limits["max_conversations"] + 50,
           answers, opened=len(opened))
    for c in opened:
        request(port, "DELETE", f"/v1/conversations/{c}")
    c = request(port, "POST", "/v1/conversations")[1]["conversation_id"]
    got = [request(port, "POST", f"/v1/conversations/{c}/turns", turn)[0] for _ in range(limits["max_turns"] + 5)]
    record(f"more turns than max_turns ({limits['max_turns']})", len(got),
           [f"{s}" for s in got[limits["max_turns"]:]], accepted=got.count(200))
    request(port, "DELETE", f"/v1/conversations/{c}")
    return rows


def bench_serve(model_dir: Path, dialogues, args) -> dict:
    from erc.core.config import load_yaml

    meta = json.loads((model_dir / "model_config.json").read_text())
    mods = list(meta["model"]["input_dims"])
    longest = max(len(d["turns"]) for d in dialogues)
    limits = {"max_conversations": max(64, 2 * max(args.concurrency + [args.soak_concurrency])),
              "max_turns": longest + 10, "max_text_chars": 2000, "idle_timeout_s": 600.0, "max_body_bytes": 262144}
    server = Server(model_dir, args.num_threads, limits)
    try:
        out = {"limits": limits, "rss_mib_loaded": round(server.rss_mib(), 1), "levels": []}
        for c in args.concurrency:
            load_level(server, dialogues, mods, c, min(50, args.turns_per_level), 60)        # warm-up, not reported
            out["levels"].append(load_level(server, dialogues, mods, c, args.turns_per_level, args.max_seconds))
            print(f"concurrency {c}: {out['levels'][-1]['turns_per_s']:.1f} turns/s", file=sys.stderr, flush=True)
        if args.soak_turns:
            out["soak"] = load_level(server, dialogues, mods, args.soak_concurrency, args.soak_turns,
                                     args.max_seconds * 4, rss_every=args.rss_every)
            series = [r for n, r in out["soak"]["rss_series"] if n >= args.rss_every]     # after the first block
            out["soak"]["rss_min_mib"], out["soak"]["rss_max_mib"] = min(series), max(series)
            print(f"soak: {out['soak']['turns']} turns", file=sys.stderr, flush=True)
        out["faults"] = faults(server, dialogues, mods, limits, args.fault_requests)
        out["rss_mib_end"], out["peak_rss_mib"] = round(server.rss_mib(), 1), round(server.hwm_mib(), 1)
    finally:
        log = server.stop()
    out["server_log_tracebacks"] = log.count("Traceback")
    return out


def markdown(res: dict) -> str:
    lines = []
    if "library" in res:
        lib = res["library"]
        lines += ["| per turn (library, no HTTP) | p50 ms | p99 ms |", "|---|---|---|",
                  f"| `push` | {lib['push']['p50_ms']:.2f} | {lib['push']['p99_ms']:.2f} |",
                  f"| floor: one encoder forward of the utterance alone | {lib['floor']['p50_ms']:.2f} | "
                  f"{lib['floor']['p99_ms']:.2f} |",
                  f"| ratio | {lib['ratio_p50']:.2f} | {lib['ratio_p99']:.2f} |", "", f"{lib['turns']} turns."]
        if "offline_check" in lib:
            oc = lib["offline_check"]
            lines += [f"Offline check ({oc['turns']} turns): largest probability difference "
                      f"{oc['max_abs_prob_diff']:.2e}, same emotion {100 * oc['same_emotion']:.2f} %."]
        lines.append("")
    if "serve" in res:
        s = res["serve"]
        lines += ["| concurrent conversations | turns | turns/s | p50 ms | p95 ms | p99 ms | errors | RSS after (MiB) |",
                  "|---|---|---|---|---|---|---|---|"]
        for lv in s["levels"] + ([dict(s["soak"], concurrency=f"{s['soak']['concurrency']} (soak)")] if "soak" in s else []):
            lines.append(f"| {lv['concurrency']} | {lv['turns']} | {lv['turns_per_s']:.1f} | {lv['p50_ms']:.1f} | "
                         f"{lv['p95_ms']:.1f} | {lv['p99_ms']:.1f} | {lv['errors']} | {lv['rss_mib_after']} |")
        if "soak" in s:
            so = s["soak"]
            lines += ["", f"Soak: RSS every {so['rss_series'][1][0] - so['rss_series'][0][0] if len(so['rss_series']) > 1 else '-'} "
                      f"turns (MiB): " + ", ".join(f"{r}" for _, r in so["rss_series"]),
                      f"after the first block: min {so['rss_min_mib']} MiB, max {so['rss_max_mib']} MiB "
                      f"(spread {so['rss_max_mib'] - so['rss_min_mib']:.1f} MiB)."]
        lines += ["", f"Server RSS loaded {s['rss_mib_loaded']} MiB, at the end {s['rss_mib_end']} MiB, peak "
                  f"{s['peak_rss_mib']} MiB; tracebacks in the server log: {s['server_log_tracebacks']}.", "",
                  "| fault | requests | server answered | serving after | RSS after (MiB) |", "|---|---|---|---|---|"]
        for f in s["faults"]:
            extra = "".join(f"; {k} {v}" for k, v in f.items() if k in ("opened", "accepted"))
            lines.append(f"| {f['fault']} | {f['count']} | {' / '.join(f['answers'])}{extra} | "
                         f"{'yes' if f['healthy_after'] else 'NO'} | {f['rss_mib_after']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model-dir", required=True, help="best_model/ of a causal train-graph run")
    p.add_argument("--only", choices=("library", "serve"), default=None, help="run one part only")
    p.add_argument("--num-threads", type=int, default=2, help="torch threads (bench process and server)")
    p.add_argument("--dialogues", type=int, default=None, help="test dialogues used (default: all)")
    p.add_argument("--check-offline", action="store_true", help="library: compare with predict-graph on the test split")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--turns-per-level", type=int, default=1000)
    p.add_argument("--soak-turns", type=int, default=10000)
    p.add_argument("--soak-concurrency", type=int, default=8)
    p.add_argument("--rss-every", type=int, default=1000)
    p.add_argument("--fault-requests", type=int, default=200, help="requests per fault kind (a 1 MB text: a quarter)")
    p.add_argument("--max-seconds", type=float, default=300.0, help="time bound of each load level (soak: 4x)")
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.num_threads)
    model_dir = Path(args.model_dir)
    dialogues = test_dialogues(model_dir, args.dialogues)
    res: dict = {"model_dir": str(model_dir), "num_threads": args.num_threads, "dialogues": len(dialogues)}
    if args.only in (None, "library"):
        res["library"] = bench_library(model_dir, dialogues, args.check_offline)
    if args.only in (None, "serve"):
        res["serve"] = bench_serve(model_dir, dialogues, args)
    print(markdown(res))
    if args.json:
        from erc.core.io import write_json

        write_json(args.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
