"""
A promotion's metrics on Azure ML: Azure Monitor platform metrics of the online endpoint,
split by deployment (= mdeploy version).

`promote` (through mdeploy.ops.checks.PlatformMetrics, which finds this module by the
target's name) reads, at the end of each step's bake, two metrics of the endpoint resource
filtered to the new version's deployment, one value per minute (PT1M):

- `RequestsPerMinute` (Count, dimensions deployment, statusCode, statusCodeClass,
  modelStatusCode), split by statusCodeClass: the requests are the sum over the window of
  every class, the errors that of class 5xx;
- `RequestLatency_P95` (Milliseconds, dimension deployment): the largest per-minute value.

Sources (read 2026-12-06): metric names, units, dimensions and time grain in
MicrosoftDocs/azure-monitor-docs@0e7def834f033a08b05108269ad84b420348e12f
articles/azure-monitor/reference/supported-metrics/
microsoft-machinelearningservices-workspaces-onlineendpoints-metrics.md (generated from the
Azure API); the request (GET {resourceUri}/providers/Microsoft.Insights/metrics, api-version
2023-10-01, timespan, interval, metricnames, aggregation, $filter with `eq '*'` to split) and
the reply shape (value[].timeseries[].metadatavalues / data[].timeStamp, average) in
Azure/azure-rest-api-specs specification/monitor/resource-manager/Microsoft.Insights/stable/
2023-10-01/examples/GetMetric.json.

What only an account shows: both metrics' default aggregation is Average, which we read per
minute; that a minute's Average of RequestsPerMinute is that minute's request count (one
sample per minute), the exact spelling of the 5xx class value (compared case-insensitively
here), and how late the values land (a bake of a few minutes at least). A minute with no
value is no requests; no statusCodeClass split means errors "not measured", never 0.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from typing import Any

__all__ = ["DESCRIPTION", "PERIOD_S", "read_window"]

NAME = "azure-monitor"
API_VERSION = "2023-10-01"
REQUESTS = "RequestsPerMinute"
LATENCY_P95 = "RequestLatency_P95"  # milliseconds
PERIOD_S = 60  # PT1M, the metrics' only time grain
DESCRIPTION = f"Azure Monitor {REQUESTS} (by statusCodeClass) and {LATENCY_P95} per deployment"


def read_window(ops: Any, version: str, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    """The deployment `version`'s requests, 5xx and p95 latency (ms) over [start, end]."""
    end = max(end, start + dt.timedelta(seconds=PERIOD_S))
    deployment = f"deployment eq '{version}'"
    requests = _series(ops, REQUESTS, start, end, f"{deployment} and statusCodeClass eq '*'")
    latency = _series(ops, LATENCY_P95, start, end, deployment)
    total = sum(_sum(data) for _, data in requests)
    classes = {cls.lower(): _sum(data) for cls, data in requests if cls is not None}
    p95s = [p["average"] for _, data in latency for p in data if p.get("average") is not None]
    return {
        "requests": float(total),
        "errors": float(classes.get("5xx", 0.0)) if classes else None,
        "p95_ms": float(max(p95s)) if p95s else None,
        "source": f"{NAME} {ops.ref.endpoint}/{version} ({_minutes(requests)} minutes)",
    }


def _series(
    ops: Any, metric: str, start: dt.datetime, end: dt.datetime, where: str
) -> list[tuple[str | None, list[dict[str, Any]]]]:
    """(statusCodeClass or None, data points) per time series of `metric`."""
    query = urllib.parse.urlencode(
        {
            "api-version": API_VERSION,
            "metricnames": metric,
            "timespan": f"{_iso(start)}/{_iso(end)}",
            "interval": "PT1M",
            "aggregation": "average",
            "$filter": where,
        },
        quote_via=urllib.parse.quote,
    )
    url = f"{ops.arm_url}{ops.ref.path}/providers/Microsoft.Insights/metrics?{query}"
    reply = ops._arm("GET", url, what=f"Azure Monitor {metric}")
    out = []
    for item in reply.get("value") or []:
        for series in item.get("timeseries") or []:
            cls = next(
                (
                    str(m.get("value"))
                    for m in series.get("metadatavalues") or []
                    if str((m.get("name") or {}).get("value", "")).lower() == "statuscodeclass"
                ),
                None,
            )
            out.append((cls, list(series.get("data") or [])))
    return out


def _sum(data: list[dict[str, Any]]) -> float:
    return float(sum(p.get("average") or 0.0 for p in data))


def _minutes(series: list[tuple[str | None, list[dict[str, Any]]]]) -> int:
    return len({p.get("timeStamp") for _, data in series for p in data})


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
