"""`erc serve` as a real server on a free loopback port, talked to over HTTP (127.0.0.1 only)."""
from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from erc.online.api import OnlinePredictor
from tests.conftest import free_port

LIMITS = dict(max_conversations=3, max_turns=4, max_text_chars=60, idle_timeout_s=3.0, max_body_bytes=8192)


class Server:
    def __init__(self, model_dir, **limits):
        self.port = free_port()
        args = [sys.executable, "-m", "erc.cli", "serve", "--model-dir", str(model_dir), "--port", str(self.port),
                "--num-threads", "1", "--log-level", "warning"]
        for k, v in limits.items():
            args += [f"--{k.replace('_', '-')}", str(v)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stdout.read()}")
            try:
                if self.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not answer /health within 120 s")

    def request(self, method: str, path: str, body=None, raw: bytes | None = None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
            conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
            resp = conn.getresponse()
            text = resp.read().decode()
            return resp.status, (json.loads(text) if text else None)
        finally:
            conn.close()

    def stop(self) -> str:
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out


@pytest.fixture(scope="module")
def server(causal_model):
    s = Server(causal_model, **LIMITS)
    yield s
    log = s.stop()
    assert "Traceback" not in log, log


def _turn(text="hello there", speaker="F", start=0.0, end=1.0, **extra):
    return {"text": text, "speaker": speaker, "features": {"audio": [0.1] * 32, "visual": [0.2] * 24},
            "start": start, "end": end, **extra}


def _open(server) -> str:
    status, body = server.request("POST", "/v1/conversations")
    assert status == 201, body
    return body["conversation_id"]


def test_turns_over_http_equal_the_library_and_history_and_delete(server, causal_model):
    turns = [_turn("i am so happy about the trip", "F", 0.0, 1.5), _turn("well the job is okay", "M", 1.7, 3.0),
             _turn("honestly this place makes me furious", "F", 3.1, 4.0)]
    library = OnlinePredictor.from_pretrained(causal_model)
    ref_chat = library.start()
    cid = _open(server)
    for t in turns:
        status, got = server.request("POST", f"/v1/conversations/{cid}/turns", t)
        assert status == 200, got
        want = library.push(ref_chat, t["text"], t["speaker"], t["features"], t["start"], t["end"])
        assert got["turn"] == want["turn"] and got["emotion"] == want["emotion"]
        assert got["sentiment"] == want["sentiment"] and got["conversation_id"] == cid
        np.testing.assert_allclose(list(got["emotion_probabilities"].values()),
                                   list(want["emotion_probabilities"].values()), atol=1e-6)
    status, hist = server.request("GET", f"/v1/conversations/{cid}")
    assert status == 200 and [h["turn"] for h in hist["turns"]] == [0, 1, 2]
    assert server.request("DELETE", f"/v1/conversations/{cid}")[0] == 204
    status, body = server.request("GET", f"/v1/conversations/{cid}")
    assert status == 404 and body["error"]["fields"][0]["field"] == "conversation_id"


def test_health_model_and_openapi(server):
    status, health = server.request("GET", "/health")
    assert status == 200 and health["status"] == "ok" and health["limits"]["max_turns"] == 4
    status, model = server.request("GET", "/v1/model")
    assert model["modalities"] == {"text": 256, "audio": 32, "visual": 24, "timing": 4} and model["needs_timing"]
    status, spec = server.request("GET", "/openapi.json")
    assert status == 200 and "/v1/conversations/{conversation_id}/turns" in spec["paths"]


@pytest.mark.parametrize("payload,status,field,expected", [
    ({"text": 5, "speaker": "F"}, 422, "text", "a valid string"),
    ({"speaker": "F"}, 422, "text", "required"),
    ({"text": "hi"}, 422, "speaker", "required"),
    ({**_turn(), "features": {"audio": "loud"}}, 422, "features.audio", "a valid list"),
    ({**_turn(), "features": {"audio": [0.1] * 3, "visual": [0.2] * 24}}, 422, "features.audio", "expected 32 numbers"),
    ({**_turn(), "start": None}, 422, "start, end", "the model uses timing"),
    ({**_turn(), "mood": "x"}, 422, "mood", "no such field"),
    ({**_turn(), "text": "x" * 61}, 422, "text", "at most 60 characters"),
    ([1, 2], 422, "body", "a JSON object"),
])
def test_bad_turns_are_json_errors_naming_the_field(server, payload, status, field, expected):
    cid = _open(server)
    try:
        got_status, body = server.request("POST", f"/v1/conversations/{cid}/turns", payload)
        assert got_status == status, body
        fields = body["error"]["fields"]
        assert any(f["field"] == field and expected in f["expected"] for f in fields), body
        assert server.request("GET", f"/v1/conversations/{cid}")[1]["turns"] == []    # nothing added
    finally:
        server.request("DELETE", f"/v1/conversations/{cid}")


def test_malformed_json_oversized_body_and_unknown_ids(server):
    cid = _open(server)
    try:
        status, body = server.request("POST", f"/v1/conversations/{cid}/turns", raw=b'{"text": "hi", ')
        assert status == 400 and body["error"]["fields"][0] == {"field": "body", "expected": "a JSON object",
                                                               "got": "malformed JSON"}
        status, body = server.request("POST", f"/v1/conversations/{cid}/turns", _turn(text="x" * 1_000_000))
        assert status == 413 and "at most 8192 bytes" in body["error"]["message"]
        status, body = server.request("POST", "/v1/conversations/nope/turns", _turn())
        assert status == 404 and "'nope'" in body["error"]["message"]
        assert server.request("DELETE", "/v1/conversations/nope")[0] == 404
        assert server.request("GET", "/no/such/path")[0] == 404
    finally:
        server.request("DELETE", f"/v1/conversations/{cid}")


def test_limits_on_turns_and_conversations_and_idle_expiry(server):
    cid = _open(server)
    for k in range(4):
        assert server.request("POST", f"/v1/conversations/{cid}/turns", _turn(start=k, end=k + 0.5))[0] == 200
    status, body = server.request("POST", f"/v1/conversations/{cid}/turns", _turn(start=5, end=6))
    assert status == 409 and "max_turns" in body["error"]["message"]
    others = [_open(server), _open(server)]                   # 3 open now, the limit
    status, body = server.request("POST", "/v1/conversations")
    assert status == 429 and "max_conversations" in body["error"]["message"]
    time.sleep(LIMITS["idle_timeout_s"] + 1.0)                # every one of them idles out
    assert server.request("GET", f"/v1/conversations/{others[0]}")[0] == 404
    assert server.request("GET", "/health")[1]["conversations"] == 0
    assert server.request("POST", "/v1/conversations")[0] == 201


def test_a_client_that_disconnects_mid_request_leaves_the_server_serving(server):
    cid = _open(server)
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(f"POST /v1/conversations/{cid}/turns HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      f"Content-Length: 500\r\n\r\n{{\"text\": \"half".encode())
    assert server.request("GET", "/health")[0] == 200
    assert server.request("POST", f"/v1/conversations/{cid}/turns", _turn())[0] == 200
    server.request("DELETE", f"/v1/conversations/{cid}")


def test_serve_refuses_several_workers_and_a_missing_folder_in_one_line(tmp_path, causal_model):
    bad = subprocess.run([sys.executable, "-m", "erc.cli", "serve", "--model-dir", str(causal_model), "--workers", "2"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "workers: 2" in bad.stderr and "Traceback" not in bad.stderr
    missing = subprocess.run([sys.executable, "-m", "erc.cli", "serve", "--model-dir", str(tmp_path / "none")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "none" in missing.stderr and "Traceback" not in missing.stderr
