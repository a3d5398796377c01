"""
Azure ML's own metrics for a promotion: Azure Monitor per deployment
(mdeploy/targets/azure/metrics.py) through PlatformMetrics, against an HTTP stand-in of the
metrics REST API (api-version 2023-10-01) that answers in the shape of the REST spec's
GetMetric.json example and checks the bearer token and every query parameter.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from httpfakes import JsonHandler

from mdeploy.errors import MdeployError
from mdeploy.ops.checks import PlatformMetrics, judge_metrics
from mdeploy.targets.azure import metrics as azure_metrics

az = pytest.importorskip("targets.test_azure_ops")
START = dt.datetime(2026, 12, 6, 10, 0, 0, tzinfo=dt.UTC)
METRICS_PATH = f"{az.EP_PATH}/providers/Microsoft.Insights/metrics"


def _series(cls: str | None, values: list[float | None]) -> dict[str, Any]:
    meta = [] if cls is None else [
        {"name": {"value": "statuscodeclass", "localizedValue": "statusCodeClass"}, "value": cls}
    ]  # fmt: skip
    data = [
        {"timeStamp": (START + dt.timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
         **({} if v is None else {"average": v})}
        for i, v in enumerate(values)
    ]  # fmt: skip
    return {"metadatavalues": meta, "data": data}


class Monitor:
    """Canned time series per metric name; the queries it was asked."""

    def __init__(self) -> None:
        self.series: dict[str, list[dict[str, Any]]] = {}
        self.queries: list[dict[str, str]] = []
        self.status = 200


class _Handler(JsonHandler):
    server: Any

    def do_GET(self) -> None:
        mon: Monitor = self.server.monitor
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        mon.queries.append(query)
        ok = (
            parts.path == METRICS_PATH
            and self.headers.get("Authorization") == f"Bearer {az.ARM_TOKEN}"
            and query.get("api-version") == "2023-10-01"
        )
        status = mon.status if ok else 404
        name = query.get("metricnames", "")
        body = (
            {
                "timespan": query.get("timespan"),
                "interval": "PT1M",
                "value": [
                    {
                        "name": {"value": name},
                        "unit": "Count",
                        "errorCode": "Success",
                        "timeseries": mon.series.get(name, []),
                    }
                ],
            }
            if status == 200
            else {"error": {"code": "Forbidden", "message": "no metrics reader"}}
        )
        self._send(status, body)


@pytest.fixture
def monitor() -> Iterator[tuple[Monitor, Any]]:
    from mdeploy.targets.azure.ops import AzureOps, EndpointRef

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.monitor = Monitor()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    ops = AzureOps(EndpointRef(az.SUB, az.RG, az.WS, az.EP), credential=az.StubCredential(),
                   arm_url=url, timeout_s=5)  # fmt: skip
    try:
        yield server.monitor, ops  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_requests_5xx_and_p95_of_the_new_deployment(monitor: tuple[Monitor, Any]) -> None:
    mon, ops = monitor
    mon.series[azure_metrics.REQUESTS] = [
        _series("2xx", [30.0, 40.0, None]), _series("5xx", [3.0, 4.0, None])
    ]  # fmt: skip
    mon.series[azure_metrics.LATENCY_P95] = [_series(None, [850.0, 1200.0, None])]
    clock = [START + dt.timedelta(seconds=20)]
    source = PlatformMetrics(azure_metrics, ops, now=lambda: clock[0])
    mark = source.mark("v-2")
    clock[0] = START + dt.timedelta(minutes=3)
    sample = source.read("v-2", mark)
    assert (sample.requests, sample.errors, sample.p95_ms) == (77.0, 7.0, 1200.0)
    assert sample.source == "azure-monitor mistral-7b-chat/v-2 (3 minutes)"
    verdict = judge_metrics(sample, max_error_rate=0.05, max_p95_ms=1000)
    assert not verdict.ok and "error rate 0.0909 > 0.05" in verdict.detail
    assert "p95 1200 ms > 1000 ms" in verdict.detail
    requests, latency = mon.queries
    assert requests == {
        "api-version": "2023-10-01", "metricnames": "RequestsPerMinute",
        "timespan": "2026-12-06T10:00:00Z/2026-12-06T10:03:00Z", "interval": "PT1M",
        "aggregation": "average", "$filter": "deployment eq 'v-2' and statusCodeClass eq '*'",
    }  # fmt: skip
    assert latency["metricnames"] == "RequestLatency_P95"
    assert latency["$filter"] == "deployment eq 'v-2'"


def test_no_split_by_class_means_errors_not_measured(monitor: tuple[Monitor, Any]) -> None:
    mon, ops = monitor
    mon.series[azure_metrics.REQUESTS] = [_series(None, [12.0])]
    got = azure_metrics.read_window(ops, "v-2", START, START)  # bake 0: one minute
    assert got["requests"] == 12.0 and got["errors"] is None and got["p95_ms"] is None


def test_a_refused_read_is_an_error_promote_turns_into_a_failed_check(
    monitor: tuple[Monitor, Any],
) -> None:
    mon, ops = monitor
    mon.status = 403
    with pytest.raises(MdeployError, match="HTTP 403 Forbidden: no metrics reader"):
        PlatformMetrics(azure_metrics, ops, now=lambda: START).read("v-2", START)
