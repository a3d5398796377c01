"""SageMaker's contract through real HTTP: /ping, /invocations (chat, completion, streaming),
error mapping and the request size limit. The adapter is started as SageMaker starts the image:
with the `serve` argument."""

from __future__ import annotations

import re
import socket
import time

import pytest

MODEL = "org/chat-model"
CHAT = {"messages": [{"role": "user", "content": "hi"}]}
LIMIT = 4096


@pytest.fixture(scope="module")
def stack(module_procs):
    engine = module_procs.engine("--served-model-name", MODEL)
    env = {
        "MDEPLOY_ENGINE_URL": engine.url,
        "MDEPLOY_MAX_BODY_BYTES": str(LIMIT),
        "MDEPLOY_ACCESS_LOG": "1",  # access lines for every request, not only 5xx
    }
    adapter = module_procs.adapter("serve", env=env)
    return engine, adapter


def test_detected_from_the_serve_argument(stack):
    _, adapter = stack
    assert "platform: sagemaker (started with the `serve` argument" in adapter.log


def test_ping_is_200_when_the_engine_is_ready(stack):
    _, adapter = stack
    r = adapter.get("/ping")
    assert r.status_code == 200 and r.json()["status"] == "ready"


def test_chat_invocation_goes_to_chat_completions(stack):
    engine, adapter = stack
    r = adapter.post("/invocations", json=CHAT)
    assert r.status_code == 200
    assert r.json()["object"] == "chat.completion"
    assert r.json()["choices"][0]["message"]["content"] == "echo:hi"
    seen = engine.seen()[-1]
    # The client did not name the model: the adapter filled in the served one.
    assert seen["path"] == "/v1/chat/completions" and seen["body"]["model"] == MODEL


def test_completion_invocation_goes_to_completions(stack):
    engine, adapter = stack
    r = adapter.post("/invocations", json={"prompt": "once", "max_tokens": 3, "model": MODEL})
    assert r.status_code == 200 and r.json()["object"] == "text_completion"
    assert r.json()["choices"][0]["text"] == "echo:once"
    assert engine.seen()[-1]["path"] == "/v1/completions"


@pytest.mark.parametrize("body", [{"prompt": "s", "stream": True}, {**CHAT, "stream": True}])
def test_streaming_invocation_is_server_sent_events(stack, sse, body):
    _, adapter = stack
    r = adapter.post("/invocations", json=body)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events, done = sse(r.text)
    assert done and len(events) == 5
    assert all(e["object"] in ("text_completion", "chat.completion.chunk") for e in events)


def test_the_engine_is_told_the_body_is_json_whatever_the_client_said(stack):
    engine, adapter = stack
    r = adapter.post(
        "/invocations", content=b'{"prompt": "t"}', headers={"content-type": "text/plain"}
    )
    assert r.status_code == 200
    assert engine.seen()[-1]["headers"]["content-type"] == "application/json"


def test_engine_errors_pass_through_with_their_body(stack):
    _, adapter = stack
    r = adapter.post("/invocations", json={**CHAT, "model": "no/such-model"})
    assert r.status_code == 404 and "does not exist" in r.json()["message"]
    r = adapter.post("/invocations", json={**CHAT, "x_fake": {"status": 500}})
    assert r.status_code == 500 and r.json()["message"] == "injected failure"
    r = adapter.post("/invocations", json={**CHAT, "x_fake": {"status": 429}})
    assert r.status_code == 429


@pytest.mark.parametrize("raw", [b"{", b"[1, 2]", b"not json"])
def test_malformed_json_is_400(stack, raw):
    _, adapter = stack
    r = adapter.post("/invocations", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request"


def test_a_body_that_is_neither_chat_nor_completion_is_400(stack):
    _, adapter = stack
    r = adapter.post("/invocations", json={"input": "embed me"})
    assert r.status_code == 400 and "messages" in r.json()["error"]["message"]


def test_wrong_method_405_and_unknown_route_404(stack):
    _, adapter = stack
    r = adapter.get("/invocations")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert adapter.post("/ping").status_code == 405
    assert adapter.get("/no/such/route").status_code == 404
    # Another cloud's routes are not served here.
    assert adapter.post("/score", json=CHAT).status_code == 404


def _raw_exchange(port: int, head: bytes, body_part: bytes) -> bytes:
    """Send a head and part of a body, then read the answer's head (a hang raises timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + body_part)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def test_declared_oversize_body_is_refused_before_it_is_sent(stack):
    _, adapter = stack
    port = int(adapter.url.rsplit(":", 1)[1])
    head = (
        b"POST /invocations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 50000000\r\n\r\n"
    )
    # Only 1 KiB of the declared 50 MB is ever sent: an answer at all proves it did not wait.
    data = _raw_exchange(port, head, b"{" + b" " * 1023)
    assert data.startswith(b"HTTP/1.1 413")


def test_chunked_oversize_body_is_refused_once_past_the_limit(stack):
    _, adapter = stack
    port = int(adapter.url.rsplit(":", 1)[1])
    head = (
        b"POST /invocations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = f"{LIMIT + 1:x}".encode() + b"\r\n" + b" " * (LIMIT + 1) + b"\r\n"
    data = _raw_exchange(port, head, chunk)  # no terminating chunk: the body never ends
    assert data.startswith(b"HTTP/1.1 413")


def test_a_body_at_the_limit_is_accepted(stack):
    _, adapter = stack
    body = b'{"prompt": "' + b"x" * (LIMIT - 14) + b'"}'
    assert len(body) == LIMIT
    assert adapter.post("/invocations", content=body).status_code == 200


def test_credentials_and_bodies_stay_out_of_logs_and_engine(stack):
    engine, adapter = stack
    r = adapter.post(
        "/invocations",
        json={"prompt": "TOPSECRET-PROMPT"},
        headers={"authorization": "Bearer TOPSECRET-KEY"},
    )
    assert r.status_code == 200
    # The cloud checked the token; it is not the engine's business.
    assert "authorization" not in engine.seen()[-1]["headers"]
    time.sleep(0.1)
    log = adapter.log
    assert "TOPSECRET" not in log
    assert re.search(r"POST /invocations 200 \d+\.\dms", log)
