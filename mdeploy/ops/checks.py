"""
What a promotion checks between traffic steps: endpoint health, a smoke test, metrics.

Every check returns a CheckResult (name, ok, detail) for the report; none raises for a
failed check. Time goes through a Clock so that tests bake for zero real seconds.

Metrics: `MetricsSource` is the extension point. `PrometheusMetrics` reads the adapter's
`/metrics` (the engine's metrics, proxied unchanged) twice, at the start and the end of the
bake, and judges the difference. `PlatformMetrics` reads the platform's own metrics over the
bake window through a target's `metrics` module (`read_window`; SageMaker: CloudWatch, in
mdeploy/targets/aws/metrics.py; Azure ML: Azure Monitor, mdeploy/targets/azure/metrics.py).
Cloud Monitoring (Vertex) and the Kubernetes adapter's metrics without --metrics-url are not
implemented: a promotion without a metrics source says "not available: only smoke checks"
and never reports numbers it did not read.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from mdeploy.errors import MdeployError
from mdeploy.targets.base import EndpointHealth, Ops

__all__ = [
    "CheckResult",
    "Clock",
    "CommandSmoke",
    "MetricsSample",
    "MetricsSource",
    "PlatformMetrics",
    "PrometheusMetrics",
    "PromptSmoke",
    "SmokeCheck",
    "SystemClock",
    "health_check",
    "judge_metrics",
    "metrics_unavailable",
    "parse_prometheus",
]

_OUTPUT_TAIL = 400  # characters of a smoke command's output kept in the report


@dataclass(frozen=True)
class CheckResult:
    name: str  # health | smoke | metrics
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Wall-clock time; `sleep` is the bake."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


# ---- health --------------------------------------------------------------------------------

_BAD_STATES = ("failed", "unhealthy", "unreachable")


# A version's own state as Kubernetes reports it (targets/kubernetes/ops.py): "ready/wanted
# ready". The Service routes only to ready pods, so replicas that are not ready after the bake
# mean the split on paper is not the split served (and at 100 % an outage).
_REPLICAS_READY = re.compile(r"^(\d+)/(\d+) ready$")


def health_check(health: EndpointHealth, version: str) -> CheckResult:
    """The endpoint is not failed/unhealthy, `version` is on it and its replicas are ready."""
    found = next((v for v in health.versions if v.name == version), None)
    if found is None:
        return CheckResult("health", False, f"version {version} is no longer on the endpoint")
    if health.state in _BAD_STATES:
        why = f": {health.detail}" if health.detail else ""
        return CheckResult("health", False, f"endpoint is {health.state}{why}")
    state = (found.state or "").strip()
    ready = _REPLICAS_READY.match(state)
    if state.lower() == "failed" or (ready and int(ready.group(1)) < int(ready.group(2))):
        return CheckResult("health", False, f"version {version} is {state} after the bake")
    return CheckResult("health", True, f"endpoint {health.state}, traffic {health.traffic}")


# ---- smoke ---------------------------------------------------------------------------------


class SmokeCheck(Protocol):
    kind: str

    def __call__(self, ops: Ops, *, version: str, percent: int) -> CheckResult: ...

    def describe(self) -> dict[str, Any]: ...


class PromptSmoke:
    """One chat request through the platform's own client (what `mdeploy invoke` sends)."""

    kind = "prompt"

    def __init__(self, model: str, prompt: str, max_tokens: int = 16) -> None:
        self.body = {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
        }

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "prompt": self.body["messages"][0]["content"]}

    def __call__(self, ops: Ops, *, version: str, percent: int) -> CheckResult:
        del version, percent  # the platform routes the request by its weights
        try:
            reply = ops.invoke(self.body)
        except MdeployError as exc:
            return CheckResult("smoke", False, f"invoke failed: {exc.message}")
        raw = reply if isinstance(reply, bytes | str) else b"".join(reply)
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        try:
            doc = json.loads(text)
        except ValueError:
            return CheckResult("smoke", False, f"reply is not JSON: {text[:120]!r}")
        if not isinstance(doc, dict) or "error" in doc:
            return CheckResult("smoke", False, f"error reply: {text[:200]}")
        return CheckResult("smoke", True, f"reply of {len(text)} bytes")


class CommandSmoke:
    """The user's command; exit status 0 passes. It learns the step from its environment."""

    kind = "command"

    def __init__(self, command: str, timeout_s: float = 600.0) -> None:
        self.command = command
        self.timeout_s = timeout_s

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "command": self.command}

    def __call__(self, ops: Ops, *, version: str, percent: int) -> CheckResult:
        del ops
        env = {
            **os.environ,
            "MDEPLOY_PROMOTE_VERSION": version,
            "MDEPLOY_PROMOTE_PERCENT": str(percent),
        }
        try:
            done = subprocess.run(
                ["/bin/sh", "-c", self.command],
                env=env,
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return CheckResult("smoke", False, f"command timed out after {self.timeout_s:g} s")
        except OSError as exc:
            return CheckResult("smoke", False, f"command could not start: {exc}")
        tail = _tail(done.stdout + done.stderr)
        if done.returncode != 0:
            return CheckResult("smoke", False, f"command exited {done.returncode}: {tail}")
        return CheckResult("smoke", True, f"command exited 0{': ' + tail if tail else ''}")


def _tail(text: str) -> str:
    from mdeploy.spec._secrets import redact

    text = " ".join(text.split())
    return redact(text[-_OUTPUT_TAIL:])


# ---- metrics -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricsSample:
    """What a metrics source measured over one bake window; None = not measured."""

    requests: float
    errors: float | None
    p95_ms: float | None
    source: str

    @property
    def error_rate(self) -> float | None:
        if self.errors is None or self.requests <= 0:
            return None
        return self.errors / self.requests


@runtime_checkable
class MetricsSource(Protocol):
    """Where error rate and latency of one version come from.

    `mark(version)` is called when a step's traffic is set, `read(version, mark)` at the end of
    its bake; a source of cumulative counters (Prometheus) returns the difference.
    """

    name: str

    def mark(self, version: str) -> Any: ...

    def read(self, version: str, mark: Any) -> MetricsSample: ...


class PlatformMetrics:
    """
    The platform's own metrics of one version over each bake window, from a target's
    `metrics` module: `NAME`, `DESCRIPTION`, `PERIOD_S` (the window starts at a whole period)
    and `read_window(ops, version, start, end)` → requests, errors, p95_ms, source.
    `ops` is None only to describe the source (the offline dry-run), never to read it.
    """

    def __init__(
        self,
        module: ModuleType,
        ops: Any = None,
        *,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.module = module
        self.ops = ops
        self.now = now
        self.name = str(module.NAME)
        self.url = str(module.DESCRIPTION)

    def mark(self, version: str) -> dt.datetime:
        del version
        period = int(self.module.PERIOD_S)
        now = self.now()
        return now - dt.timedelta(seconds=now.timestamp() % period)

    def read(self, version: str, mark: Any) -> MetricsSample:
        if self.ops is None:
            raise MdeployError("platform metrics were described, not connected to the endpoint")
        got = self.module.read_window(self.ops, version, mark, self.now())
        return MetricsSample(
            requests=float(got["requests"]),
            errors=None if got["errors"] is None else float(got["errors"]),
            p95_ms=None if got["p95_ms"] is None else float(got["p95_ms"]),
            source=str(got["source"]),
        )


def metrics_unavailable(target: str) -> str:
    """The line a promotion shows when no metrics source is configured for `target`."""
    return (
        f"metrics not available on {target}: only smoke checks (pass --metrics-url with the "
        "adapter's /metrics, or add a MetricsSource for the platform's own metrics)"
    )


def judge_metrics(
    sample: MetricsSample, max_error_rate: float | None, max_p95_ms: float | None
) -> CheckResult:
    """Pass unless a measured number breaches its limit; unmeasured numbers are said so."""
    parts, ok = [f"{sample.requests:g} requests ({sample.source})"], True
    rate = sample.error_rate
    if rate is None:
        parts.append("error rate not measured")
    else:
        parts.append(f"error rate {rate:.4f}")
        if max_error_rate is not None and rate > max_error_rate:
            ok = False
            parts[-1] += f" > {max_error_rate:g}"
    if sample.p95_ms is None:
        parts.append("p95 not measured")
    else:
        parts.append(f"p95 {sample.p95_ms:.0f} ms")
        if max_p95_ms is not None and sample.p95_ms > max_p95_ms:
            ok = False
            parts[-1] += f" > {max_p95_ms:g} ms"
    return CheckResult("metrics", ok, ", ".join(parts))


# Metric names. The latency histogram and the success counter are vLLM's own (documented in
# vllm-project/vllm docs/source/design/v1/metrics.md, "v0 Metrics" list, read 2026-12-06);
# the adapter proxies the engine's /metrics unchanged (mdeploy/serve/app.py). HTTP status
# counts come from a `http_requests_total{status=...}` counter when the server exports one
# (prometheus-fastapi-instrumentator's default name); without it the error rate is "not
# measured", never 0.
LATENCY_HISTOGRAM = "vllm:e2e_request_latency_seconds"
SUCCESS_COUNTER = "vllm:request_success_total"
HTTP_COUNTER = "http_requests_total"

_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+\S+)?$"
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    """The samples of a Prometheus text exposition: (name, labels, value). Comments skipped."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        try:
            value = float(match.group("value"))
        except ValueError:
            continue
        labels = dict(_LABEL.findall(match.group("labels") or ""))
        out.append((match.group("name"), labels, value))
    return out


@dataclass(frozen=True)
class _Snapshot:
    http_total: float | None
    http_errors: float | None
    success: float | None
    buckets: dict[float, float]  # le -> cumulative count


class PrometheusMetrics:
    """The adapter's `/metrics` at `url` (one scrape target: the new version's)."""

    name = "prometheus"

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
        fetch: Callable[[str], str] | None = None,
    ) -> None:
        self.url = url
        self.headers = dict(headers or {})
        self.timeout_s = timeout_s
        self._fetch = fetch or self._http_get

    def _http_get(self, url: str) -> str:
        request = urllib.request.Request(url, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
                return reply.read().decode(errors="replace")
        except (urllib.error.URLError, OSError) as exc:
            from mdeploy.errors import CloudError

            raise CloudError(f"metrics: could not read {url}: {exc}") from None

    def snapshot(self) -> _Snapshot:
        samples = parse_prometheus(self._fetch(self.url))
        http = [(lb, v) for n, lb, v in samples if n == HTTP_COUNTER]
        success = [v for n, _, v in samples if n == SUCCESS_COUNTER]
        buckets: dict[float, float] = {}
        for n, lb, v in samples:
            if n == LATENCY_HISTOGRAM + "_bucket" and "le" in lb:
                le = math.inf if lb["le"] in ("+Inf", "Inf") else float(lb["le"])
                buckets[le] = buckets.get(le, 0.0) + v
        return _Snapshot(
            http_total=sum(v for _, v in http) if http else None,
            http_errors=sum(v for lb, v in http if lb.get("status", "").startswith("5"))
            if http
            else None,
            success=sum(success) if success else None,
            buckets=buckets,
        )

    def mark(self, version: str) -> _Snapshot:
        del version
        return self.snapshot()

    def read(self, version: str, mark: Any) -> MetricsSample:
        del version
        start: _Snapshot = mark
        end = self.snapshot()
        errors = requests = None
        if end.http_total is not None and start.http_total is not None:
            requests = end.http_total - start.http_total
            errors = (end.http_errors or 0.0) - (start.http_errors or 0.0)
        elif end.success is not None and start.success is not None:
            requests = end.success - start.success
        delta = {le: c - start.buckets.get(le, 0.0) for le, c in end.buckets.items()}
        p95 = histogram_quantile(0.95, delta)
        if requests is None:
            requests = delta.get(math.inf, 0.0)
        return MetricsSample(
            requests=max(0.0, requests),
            errors=None if errors is None else max(0.0, errors),
            p95_ms=None if p95 is None else p95 * 1000.0,
            source=f"prometheus {self.url}",
        )


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' histogram_quantile: linear inside the bucket; None without observations.

    >>> histogram_quantile(0.5, {0.1: 0, 0.2: 10, float("inf"): 10})
    0.15
    """
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    lower_le, lower_count = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                return lower_le  # beyond the last finite bucket: its upper bound
            if count == lower_count:
                return le
            return lower_le + (le - lower_le) * (rank - lower_count) / (count - lower_count)
        lower_le, lower_count = le, count
    return ordered[-1][0]
