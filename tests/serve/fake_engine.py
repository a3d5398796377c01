"""
A stand-in for vLLM's OpenAI-compatible server (`vllm.entrypoints.openai.api_server`).

Used by the adapter tests and benchmarks/adapter.py instead of a GPU. It is a standalone
program (stdlib + uvicorn, nothing from mdeploy) speaking the same HTTP as vLLM:

- `GET /health`: 503 until `--load-delay` seconds have passed (model "loading"), then 200;
  with `--hang-while-loading` it does what vLLM really does while loading instead: accepts
  the connection and answers nothing until loaded;
- `GET /v1/models`: the served model; `GET /metrics`: Prometheus text;
- `POST /v1/chat/completions`, `POST /v1/completions`: vLLM-shaped JSON, or server-sent events
  ending in `data: [DONE]` with `"stream": true`; a missing `model` is a 400 (as in vLLM
  releases that require it) and an unknown one a 404, with vLLM's error body.

Test controls, which vLLM does not have: a body key `x_fake` with `status` (answer with that
error status), `delay` (seconds before answering), `chunks` and `chunk_delay` (shape of a
stream), `crash` (exit the process mid-request), `crash_after` (exit after that many stream
events). `GET /fake/requests` lists the requests received (path, headers, body);
`GET /fake/stats` counts health probes, generation requests received, and requests aborted
because their client hung up;
`POST /fake/crash` exits at once. Unknown flags (vLLM's own, e.g. `--max-model-len`) are
accepted and listed in `/fake/argv`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import deque
from typing import Any

import uvicorn

EVENT_STREAM = [(b"content-type", b"text/event-stream; charset=utf-8")]


class FakeEngine:
    """The ASGI app; state is per process, like the real engine's."""

    def __init__(self, args: argparse.Namespace, extra: list[str]) -> None:
        self.model = args.served_model_name or args.model
        self.loaded_at = time.monotonic() + args.load_delay
        self.hang = args.hang_while_loading
        self.chunks = args.chunks
        self.chunk_delay = args.chunk_delay
        self.argv = sys.argv[1:]
        self.extra = extra
        self.seen: deque[dict[str, Any]] = deque(maxlen=200)
        self.created = int(time.time())
        self.counter = 0
        self.health_calls = 0
        self.aborted = 0
        self.received = 0
        self.in_flight = 0  # generation requests being answered now
        self.max_in_flight = 0  # the most at once: proves fan-out without a clock

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        route = (scope["method"], scope["path"])
        handler = {
            ("GET", "/health"): self.health,
            ("GET", "/v1/models"): self.models,
            ("GET", "/metrics"): self.metrics,
            ("POST", "/v1/chat/completions"): self.generate,
            ("POST", "/v1/completions"): self.generate,
            ("GET", "/fake/requests"): self.requests,
            ("GET", "/fake/argv"): self.show_argv,
            ("GET", "/fake/stats"): self.stats,
            ("POST", "/fake/reset-max"): self.reset_max,
            ("POST", "/fake/crash"): self.crash,
        }.get(route)
        if handler is None:
            await json_reply(send, 404, {"detail": "Not Found"})
            return
        await handler(scope, body, send, receive)

    def loaded(self) -> bool:
        return time.monotonic() >= self.loaded_at

    async def health(self, scope: dict, body: bytes, send: Any, receive: Any) -> None:
        self.health_calls += 1
        if self.hang:
            await asyncio.sleep(max(0.0, self.loaded_at - time.monotonic()))
        await send({"type": "http.response.start", "status": 200 if self.loaded() else 503})
        await send({"type": "http.response.body", "body": b""})

    async def models(self, scope: dict, body: bytes, send: Any, receive: Any) -> None:
        card = {"id": self.model, "object": "model", "created": self.created, "owned_by": "vllm"}
        await json_reply(send, 200, {"object": "list", "data": [{**card, "root": self.model}]})

    async def metrics(self, scope: dict, body: bytes, send: Any, receive: Any) -> None:
        text = b"# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 0.0\n"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": text})

    async def requests(self, scope: dict, body: bytes, send: Any, receive: Any) -> None:
        await json_reply(send, 200, list(self.seen))

    async def reset_max(self, scope: dict, body: bytes, send: Any, receive: Any) -> None:
        self.max_in_flight = self.in_flight
        await json_reply(send, 200, {"max_in_flight": self.max_in_flight})

    async def stats(self, scope: dict, body: bytes, send: Any, receive: Any) -> None:
        stats = {
            "health_calls": self.health_calls,
            "aborted": self.aborted,
            "max_in_flight": self.max_in_flight,
        }
        await json_reply(send, 200, {**stats, "received": self.received})

    async def show_argv(self, scope: dict, body: bytes, send: Any, receive: Any) -> None:
        await json_reply(send, 200, {"argv": self.argv, "unknown": self.extra})

    async def crash(self, scope: dict, body: bytes, send: Any, receive: Any) -> None:
        os._exit(3)

    async def generate(self, scope: dict, raw: bytes, send: Any, receive: Any) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self._generate(scope, raw, send, receive)
        finally:
            self.in_flight -= 1

    async def _generate(self, scope: dict, raw: bytes, send: Any, receive: Any) -> None:
        try:
            req = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # vLLM's parser answers 400 to both
            await vllm_error(send, 400, f"JSON decode error: {exc!r}", "BadRequestError")
            return
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.seen.append({"path": scope["path"], "headers": headers, "body": req})
        self.received += 1
        ctl = req.get("x_fake") or {}
        if ctl.get("crash"):
            os._exit(3)
        waits = ctl.get("delay") or (req.get("stream") and ctl.get("chunk_delay", self.chunk_delay))
        # Only a request that waits needs to notice its client leaving; others stay cheap.
        if waits:
            gone = asyncio.ensure_future(wait_disconnect(receive))
        else:
            gone = asyncio.get_running_loop().create_future()
        try:
            await self.answer(scope, req, ctl, send, gone)
        finally:
            gone.cancel()

    async def answer(self, scope: dict, req: dict, ctl: dict, send: Any, gone: Any) -> None:
        if ctl.get("delay") and await self.pause(float(ctl["delay"]), gone):
            return
        if ctl.get("status"):
            await vllm_error(send, int(ctl["status"]), "injected failure", "InternalServerError")
            return
        if "model" not in req:
            await vllm_error(send, 400, "Field required: model", "BadRequestError")
            return
        if req["model"] != self.model:
            await vllm_error(
                send, 404, f"The model `{req['model']}` does not exist.", "NotFoundError"
            )
            return
        chat = scope["path"].endswith("/chat/completions")
        text = "echo:" + prompt_of(req, chat)
        self.counter += 1
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{self.counter}"
        if req.get("stream") is True:
            await self.stream(send, rid, chat, text, ctl, gone)
        else:
            await json_reply(send, 200, self.completion(rid, chat, text))

    def completion(self, rid: str, chat: bool, text: str) -> dict[str, Any]:
        usage = {"prompt_tokens": 3, "total_tokens": 3 + len(text), "completion_tokens": len(text)}
        if chat:
            message = {"role": "assistant", "content": text, "tool_calls": []}
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}
            obj = "text_completion"
        choice["stop_reason"] = None
        return {
            "id": rid,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": usage,
        }

    async def pause(self, seconds: float, gone: Any) -> bool:
        """Sleep like a generation step; True (and counted) if the client hung up meanwhile."""
        await asyncio.wait({gone}, timeout=seconds)
        if gone.done():
            self.aborted += 1  # vLLM aborts the request when its client disconnects
        return gone.done()

    async def stream(
        self, send: Any, rid: str, chat: bool, text: str, ctl: dict, gone: Any
    ) -> None:
        chunks = int(ctl.get("chunks", self.chunks))
        delay = float(ctl.get("chunk_delay", self.chunk_delay))
        await send({"type": "http.response.start", "status": 200, "headers": EVENT_STREAM})
        obj = "chat.completion.chunk" if chat else "text_completion"
        for i in range(chunks):
            piece = f"{text}[{i}]"
            if chat:
                choice = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
            else:
                choice = {"index": 0, "text": piece, "finish_reason": None}
            event = {"id": rid, "object": obj, "created": self.created, "model": self.model}
            event["choices"] = [choice]
            await send({"type": "http.response.body", "body": sse(event), "more_body": True})
            if ctl.get("crash_after") == i + 1:
                os._exit(3)  # the engine dies mid-stream
            if delay and i < chunks - 1 and await self.pause(delay, gone):
                return
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


async def wait_disconnect(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def prompt_of(req: dict[str, Any], chat: bool) -> str:
    if chat:
        messages = req.get("messages") or [{}]
        return str(messages[-1].get("content", ""))
    return str(req.get("prompt", ""))


def sse(event: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(event).encode() + b"\n\n"


async def json_reply(send: Any, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def vllm_error(send: Any, status: int, message: str, kind: str) -> None:
    payload = {"object": "error", "message": message, "type": kind, "param": None, "code": status}
    await json_reply(send, status, payload)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", default="fake/model")
    p.add_argument("--served-model-name", default=None)
    p.add_argument("--load-delay", type=float, default=0.0)
    p.add_argument("--hang-while-loading", action="store_true")
    p.add_argument("--chunks", type=int, default=5)
    p.add_argument("--chunk-delay", type=float, default=0.0)
    args, extra = p.parse_known_args()
    app = FakeEngine(args, extra)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=1,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
