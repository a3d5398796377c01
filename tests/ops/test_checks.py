"""
The checks between steps: the Prometheus reader over real HTTP, judging, health.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mdeploy.errors import CloudError
from mdeploy.ops.checks import (
    MetricsSample,
    PrometheusMetrics,
    health_check,
    histogram_quantile,
    judge_metrics,
    parse_prometheus,
)
from mdeploy.targets.base import EndpointHealth, VersionHealth


def _exposition(ok: int, errors: int, buckets: dict[str, int]) -> str:
    route = 'handler="/v1/chat/completions",method="POST"'
    lines = [
        "# HELP http_requests_total Total number of requests by method, status and handler.",
        "# TYPE http_requests_total counter",
        f'http_requests_total{{{route},status="2xx"}} {ok}',
        f'http_requests_total{{{route},status="5xx"}} {errors}',
        "# TYPE vllm:e2e_request_latency_seconds histogram",
    ]
    for le, count in buckets.items():
        lines.append(f'vllm:e2e_request_latency_seconds_bucket{{le="{le}",model_name="m"}} {count}')
    lines.append('vllm:request_success_total{finished_reason="stop",model_name="m"} 7')
    return "\n".join(lines) + "\n"


@pytest.fixture
def scrapes() -> Iterator[tuple[str, list[str]]]:
    """A /metrics server on 127.0.0.1 answering each GET with the next queued document."""
    queue: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            del args

        def do_GET(self) -> None:
            body = queue.pop(0).encode() if self.path == "/metrics" and queue else b""
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics", queue
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_prometheus_counts_the_window_between_mark_and_read(
    scrapes: tuple[str, list[str]],
) -> None:
    url, queue = scrapes
    queue.append(_exposition(1000, 10, {"0.5": 900, "1.0": 990, "2.5": 1010, "+Inf": 1010}))
    queue.append(_exposition(1090, 20, {"0.5": 900, "1.0": 1000, "2.5": 1110, "+Inf": 1110}))
    source = PrometheusMetrics(url)
    sample = source.read("v-2", source.mark("v-2"))
    assert sample.requests == 100 and sample.errors == 10 and sample.error_rate == 0.1
    # window: 0 in (0, 0.5], 10 in (0.5, 1.0], 90 in (1.0, 2.5]; rank 95 is 85/90 into the last
    assert sample.p95_ms == pytest.approx((1.0 + 1.5 * 85 / 90) * 1000)
    assert judge_metrics(sample, 0.05, None).ok is False


def test_without_http_status_counts_the_error_rate_is_not_measured() -> None:
    text = ['vllm:request_success_total{finished_reason="stop"} 5']
    later = ['vllm:request_success_total{finished_reason="stop"} 9']
    docs = iter(["\n".join(text), "\n".join(later)])
    source = PrometheusMetrics("http://unused", fetch=lambda url: next(docs))
    sample = source.read("v-2", source.mark("v-2"))
    assert (sample.requests, sample.errors, sample.error_rate, sample.p95_ms) == (
        4,
        None,
        None,
        None,
    )
    result = judge_metrics(sample, 0.01, 1000)
    assert result.ok and "error rate not measured" in result.detail and "p95 not" in result.detail


def test_an_unreachable_metrics_url_is_a_cloud_error() -> None:
    with pytest.raises(CloudError, match="could not read"):
        PrometheusMetrics("http://127.0.0.1:9/metrics", timeout_s=1).snapshot()


def test_parse_skips_comments_and_reads_labels_with_escapes() -> None:
    samples = parse_prometheus('# HELP x\nx{a="1",b="q\\"x"} 2.5 1700000000\ny 3\nbad line\n')
    assert samples == [("x", {"a": "1", "b": 'q\\"x'}, 2.5), ("y", {}, 3.0)]


def test_histogram_quantile_matches_prometheus_rules() -> None:
    assert histogram_quantile(0.5, {0.1: 0, 0.2: 10, float("inf"): 10}) == pytest.approx(0.15)
    assert histogram_quantile(0.99, {1.0: 1, float("inf"): 10}) == 1.0  # in +Inf: last bound
    assert histogram_quantile(0.5, {1.0: 0, float("inf"): 0}) is None


def test_judging_passes_within_limits() -> None:
    sample = MetricsSample(200, 1, 800, source="s")
    assert judge_metrics(sample, 0.01, 1000).ok
    assert not judge_metrics(sample, 0.001, 1000).ok


def test_health_fails_when_the_endpoint_is_failed_or_the_version_gone() -> None:
    v = [VersionHealth("v-1", 90), VersionHealth("v-2", 10)]
    assert health_check(EndpointHealth("ready", versions=v), "v-2").ok
    bad = health_check(EndpointHealth("failed", versions=v, detail="OOM"), "v-2")
    assert not bad.ok and "OOM" in bad.detail
    assert not health_check(EndpointHealth("ready", versions=v[:1]), "v-2").ok


@pytest.mark.parametrize(
    ("state", "ok"),
    [("2/2 ready", True), ("0/0 ready", True), ("1/2 ready", False), ("Failed", False),
     ("InService", True), (None, True)],
)  # fmt: skip
def test_a_version_not_ready_or_failed_fails_the_health_check(state: str | None, ok: bool) -> None:
    versions = [VersionHealth("v-1", 50, state="2/2 ready"), VersionHealth("v-2", 50, state=state)]
    result = health_check(EndpointHealth("ready", versions=versions), "v-2")
    assert result.ok is ok and (ok or f"v-2 is {state} after the bake" in result.detail)
