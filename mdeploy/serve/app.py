"""
The contract adapter: one ASGI app that answers every cloud's routes in front of vLLM.

Routes, by platform (`contract.py` holds the paths):

=============  ===========================================================================
everywhere     `/v1/chat/completions`, `/v1/completions`, `/v1/models`, `/health`,
               `/metrics` (proxied as they are), `/live` (liveness), `/ready` (readiness)
sagemaker      `GET /ping` (readiness), `POST /invocations` (OpenAI body, streaming too)
vertex         `GET $AIP_HEALTH_ROUTE` (readiness), `POST $AIP_PREDICT_ROUTE` (instances →
               predictions, or an OpenAI body passed straight through: rawPredict)
azureml        `GET /live`, `GET /ready`, `POST /score` (OpenAI body, streaming too)
=============  ===========================================================================

With `MDEPLOY_API_KEY` set, every route but liveness and readiness (`/live`, `/ready`,
`/health`, SageMaker `/ping`, Vertex's health route) answers 401 without
`Authorization: Bearer <key>`; unknown paths too, so they reveal nothing.

A Vertex predict fans its `instances` out over a bounded number of engine connections
(`MDEPLOY_FANOUT_CONNECTIONS`, shared by all requests) and refuses more than
`MDEPLOY_MAX_INSTANCES` with 413, so one request cannot exhaust file handles or memory.
Every engine request, streamed or not, is dropped as soon as the client hangs up: the closed
engine connection makes vLLM abort the generation.

Access lines (method, path, status, milliseconds) go to stderr for 5xx answers, and for every
request with `MDEPLOY_ACCESS_LOG=1`; bodies and headers are never logged. The app owns the
engine client's lifetime and, when the adapter started the engine, watches it: an engine exit
turns readiness off and asks the server to exit non-zero so the platform restarts the
container.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from mdeploy.serve.asgi import (
    BearerKey,
    ClientDisconnected,
    HTTPError,
    Receive,
    Request,
    Router,
    Scope,
    Send,
    error_payload,
    send_json,
    unauthorized,
)
from mdeploy.serve.config import ServeConfig
from mdeploy.serve.contract import LIVENESS_ROUTE, READINESS_ROUTE
from mdeploy.serve.engine import EngineProcess
from mdeploy.serve.health import Readiness
from mdeploy.serve.protocol import HANGUP
from mdeploy.serve.proxy import Answer, EngineClient, until_disconnect
from mdeploy.serve.translate import (
    ENGINE_POST_ROUTES,
    BadRequest,
    engine_route,
    instance_body,
    parse_object,
    predictions,
    vertex_instances,
)

__all__ = ["EXIT_ENGINE_DIED", "Adapter"]

log = logging.getLogger("mdeploy.serve")
access_log = logging.getLogger("mdeploy.serve.access")

EXIT_ENGINE_DIED = 1
_JSON = (b"content-type", b"application/json")
_PASSTHROUGH_GET = ("/v1/models", "/health", "/metrics")
_PASSTHROUGH_POST = ("/v1/chat/completions", "/v1/completions")


class Adapter:
    """
    The ASGI application. `Adapter(config, engine=None)`; `on_fatal(code)` is called when an
    owned engine exits (the server sets it to stop itself with that exit code).
    """

    def __init__(self, config: ServeConfig, *, engine: EngineProcess | None = None) -> None:
        self.config = config
        self.engine = EngineClient(
            config.engine_url,
            timeout=config.engine_timeout,
            probe_timeout=config.probe_timeout,
            forward_authorization=config.platform == "plain",
        )
        self.readiness = Readiness(self.engine.healthy, ttl=config.ready_ttl)
        self.router = self._routes()
        self._key = BearerKey(config.api_key) if config.api_key else None
        contract = config.contract
        # Probes carry no key (Kubernetes, SageMaker, Vertex and Azure probe anonymously).
        self._open = frozenset(
            {LIVENESS_ROUTE, READINESS_ROUTE, "/health", contract.liveness, contract.readiness}
        )
        self._fanout_slots: asyncio.Semaphore | None = None  # made in the server's loop
        self.on_fatal: Callable[[int], None] = lambda code: None
        self.exit_code = 0
        self._process = engine
        self._watcher: asyncio.Task[None] | None = None

    def _routes(self) -> Router:
        router = Router()
        for path in _PASSTHROUGH_GET:
            router.add(path, ["GET"], self._passthrough)
        for path in _PASSTHROUGH_POST:
            router.add(path, ["POST"], self._passthrough)
        contract = self.config.contract
        router.add(LIVENESS_ROUTE, ["GET"], self._liveness)
        router.add(contract.liveness, ["GET"], self._liveness)
        router.add(READINESS_ROUTE, ["GET"], self._readiness)
        # Platform routes last: Vertex may point its routes at /health or /v1/completions.
        router.add(contract.readiness, ["GET"], self._readiness)
        if contract.platform == "vertex" and contract.inference:
            router.add(contract.inference, ["POST"], self._predict)
        elif contract.inference:
            router.add(contract.inference, ["POST"], self._invoke)
        return router

    # ASGI entry point ---------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 0

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        request = Request(scope, receive)
        try:
            key = self._key
            if key is not None and request.path not in self._open and not key.allows(request):
                raise unauthorized()
            await self.router.resolve(request.method, request.path)(request, tracked)
        except HTTPError as exc:
            if not status:
                await exc.answer(tracked)
        except BadRequest as exc:  # raised by translate.py while reading the client's body
            if not status:
                await HTTPError(400, str(exc), "invalid_request").answer(tracked)
        except ClientDisconnected:
            status = 499  # nginx's "client closed request"
        except RecursionError:  # a structure nested past what Python's stack takes
            if not status:
                await HTTPError(400, "JSON body nested too deeply", "invalid_request").answer(
                    tracked
                )
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            if not status:
                await send_json(tracked, 500, error_payload(500, "adapter error", "internal_error"))
        finally:
            if status >= 500 or self.config.access_log:
                self._access(request, status, started)

    def _access(self, request: Request, status: int, started: float) -> None:
        """One access line; off the hot path unless asked for (or the answer is a 5xx)."""
        elapsed = (time.perf_counter() - started) * 1000
        path = request.path if request.path.isprintable() else repr(request.path)
        level = logging.WARNING if status >= 500 else logging.INFO
        access_log.log(level, "%s %s %d %.1fms", request.method, path, status, elapsed)

    # Health -------------------------------------------------------------------------------

    async def _liveness(self, request: Request, send: Send) -> None:
        await send_json(send, 200, {"status": "alive"})

    async def _readiness(self, request: Request, send: Send) -> None:
        ready, reason = await self.readiness.check()
        payload = {"status": "ready" if ready else "unavailable", "reason": reason}
        await send_json(send, 200 if ready else 503, payload)

    # Inference ----------------------------------------------------------------------------

    async def _passthrough(self, request: Request, send: Send) -> None:
        """Proxy an OpenAI route unchanged (body, query, status and body of the answer)."""
        body = await self._body(request) if request.method == "POST" else b""
        await until_disconnect(
            request.receive,
            self.engine.stream(
                request.method,
                request.path,
                body=body,
                headers=self.engine.headers(request.headers),
                send=send,
                query=request.query,
            ),
            request.scope.get(HANGUP),
        )

    async def _body(self, request: Request) -> bytes:
        state = request.scope.get(HANGUP)
        # A body that came whole with the headers cannot stall: no deadline timer for it.
        timeout = None if state is not None and state.body_complete else self.config.body_timeout
        return await request.body(self.config.max_body_bytes, timeout)

    async def _invoke(self, request: Request, send: Send) -> None:
        """SageMaker /invocations, Azure /score: route an OpenAI body by its shape."""
        raw = await self._body(request)
        await self._forward(request, send, raw, parse_object(raw), None)

    async def _forward(
        self, request: Request, send: Send, raw: bytes, body: dict[str, Any], route: str | None
    ) -> None:
        path = route or engine_route(body)
        if "model" not in body and (model := await self.engine.served_model()):
            raw = json.dumps({**body, "model": model}).encode()
        # The body was parsed as JSON, whatever the client called it (SageMaker passes any
        # ContentType through), so tell the engine what it is.
        headers = [(k, v) for k, v in self.engine.headers(request.headers) if k != b"content-type"]
        headers.append(_JSON)
        work = self.engine.stream("POST", path, body=raw, headers=headers, send=send)
        await until_disconnect(request.receive, work, request.scope.get(HANGUP))

    async def _predict(self, request: Request, send: Send) -> None:
        """Vertex predict: `instances` fan out to the engine concurrently; else rawPredict."""
        raw = await self._body(request)
        body = parse_object(raw)
        batch = vertex_instances(body)
        if batch is None:
            route = request.path if request.path in ENGINE_POST_ROUTES else None
            await self._forward(request, send, raw, body, route)
            return
        instances, parameters = batch
        if len(instances) > self.config.max_instances:
            raise HTTPError(
                413,
                f"{len(instances)} instances in one request; the limit is "
                f"{self.config.max_instances} (MDEPLOY_MAX_INSTANCES): split the batch",
                "too_many_instances",
            )
        bodies = [instance_body(i, x, parameters) for i, x in enumerate(instances)]
        outcome = await until_disconnect(
            request.receive, self._fan_out(request, bodies), request.scope.get(HANGUP)
        )
        if isinstance(outcome, Answer):  # all-or-nothing, as Vertex's predict is
            headers = [(b"content-type", outcome.content_type.encode("latin-1"))]
            start = {"type": "http.response.start", "status": outcome.status, "headers": headers}
            await send(start)
            await send({"type": "http.response.body", "body": outcome.body})
            return
        await send_json(send, 200, predictions(outcome, self.config.deployed_model_id))

    async def _fan_out(self, request: Request, bodies: list[dict[str, Any]]) -> list[Any] | Answer:
        """
        Send every instance, over at most `fanout_connections` engine connections at once.

        Returns the parsed answers in instance order, or the first failing engine answer
        (the rest are then cancelled: the batch has failed anyway). A fixed set of workers
        pulls instances from one iterator, so a 40,000-instance batch holds a few dozen
        coroutines and connections, not 40,000.
        """
        if any("model" not in b for b in bodies) and (model := await self.engine.served_model()):
            bodies = [b if "model" in b else {**b, "model": model} for b in bodies]
        headers = [(k, v) for k, v in self.engine.headers(request.headers) if k != b"content-type"]
        if self._fanout_slots is None:
            self._fanout_slots = asyncio.Semaphore(self.config.fanout_connections)
        slots = self._fanout_slots
        results: list[Any] = [None] * len(bodies)
        todo = iter(enumerate(bodies))
        failed: list[Answer] = []

        async def worker() -> None:
            for i, body in todo:
                if failed:
                    return
                async with slots:
                    answer = await self.engine.call(engine_route(body), body, headers)
                if answer.status >= 400:
                    failed.append(answer)
                    return
                try:
                    results[i] = answer.json()
                except (ValueError, RecursionError):
                    raise HTTPError(
                        502, "the engine answered with invalid JSON", "bad_gateway"
                    ) from None

        workers = [
            asyncio.ensure_future(worker())
            for _ in range(min(len(bodies), self.config.fanout_connections))
        ]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        return failed[0] if failed else results

    # Lifespan -----------------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self._process is not None:
                    self._watcher = asyncio.ensure_future(self._watch(self._process))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _shutdown(self) -> None:
        """After the server drained in-flight requests: stop watching, stop the engine."""
        if self._watcher is not None:
            self._watcher.cancel()
        if self._process is not None and self._process.poll() is None:
            code = await asyncio.to_thread(self._process.stop)
            log.info("engine stopped (exit code %s)", code)
        self.engine.close()

    async def _watch(self, process: EngineProcess, interval: float = 0.2) -> None:
        """Turn an engine exit into readiness off and a non-zero adapter exit."""
        while (code := process.poll()) is None:
            await asyncio.sleep(interval)
        reason = f"engine exited with code {code}"
        log.error("%s; exiting so the platform restarts the container", reason)
        self.readiness.mark_engine_exited(reason)
        self.exit_code = EXIT_ENGINE_DIED
        self.on_fatal(EXIT_ENGINE_DIED)
