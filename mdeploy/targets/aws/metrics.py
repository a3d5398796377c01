"""
A promotion's metrics on SageMaker: CloudWatch, per production variant (= mdeploy version).

`promote` (through mdeploy.ops.checks.PlatformMetrics, which finds this module by the
target's name) marks the start of each step's bake and reads, at its end, three metrics of
the new version's variant from the `AWS/SageMaker` namespace with the dimensions EndpointName and
VariantName, through GetMetricStatistics:

- `Invocations`, statistic Sum: the requests the variant answered;
- `Invocation5XXErrors`, statistic Sum: SageMaker sends 1 per 5xx reply, else 0;
- `ModelLatency`, extended statistic p95, in microseconds (reported here in ms).

Sources (read 2026-12-06): the metric names, namespace and dimensions as in aws-cdk-lib 2.213.0
aws-sagemaker/lib/sagemaker-canned-metrics.generated.js; units and "1 per 5xx, else 0" in
https://docs.aws.amazon.com/sagemaker/latest/dg/async-inference-monitor.html ("the same as
the metrics published for real-time endpoints"); GetMetricStatistics' Statistics,
ExtendedStatistics (pNN.NN) and Period (a multiple of 60) in botocore's cloudwatch
2010-08-01 service model, which botocore validates every call against.

What only an account shows: CloudWatch publishes SageMaker metrics per minute and a minute or
more late, so a bake shorter than a few minutes reads an empty window ("0 requests", error
rate "not measured", never 0). Over a window of several periods the p95 reported is the
largest per-period p95, an upper bound rather than the window's own p95.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

__all__ = ["DESCRIPTION", "NAMESPACE", "PERIOD_S", "read_window"]

NAME = "cloudwatch"
NAMESPACE = "AWS/SageMaker"
INVOCATIONS = "Invocations"
ERRORS_5XX = "Invocation5XXErrors"
LATENCY = "ModelLatency"  # microseconds
P95 = "p95"
PERIOD_S = 60  # SageMaker publishes one-minute metrics; GetMetricStatistics periods are x60
DESCRIPTION = f"{NAMESPACE} {INVOCATIONS}, {ERRORS_5XX} and {LATENCY} {P95} per variant"


def read_window(ops: Any, version: str, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    """
    The variant `version`'s requests, 5xx errors and p95 latency (ms) over [start, end].

    `ops` is the endpoint's AwsOps (its CloudWatch client and error mapping). Errors is None
    when CloudWatch has no 5xx datapoint (not measured, never 0); p95 the largest per period.
    """
    end = max(end, start + dt.timedelta(seconds=PERIOD_S))
    period = PERIOD_S * math.ceil((end - start).total_seconds() / PERIOD_S)
    window = (ops, version, start, end, period)
    requests = _points(*window, INVOCATIONS, Statistics=["Sum"])
    errors = _points(*window, ERRORS_5XX, Statistics=["Sum"])
    latency = _points(*window, LATENCY, ExtendedStatistics=[P95])
    p95s = [p["ExtendedStatistics"][P95] for p in latency if P95 in p.get("ExtendedStatistics", {})]
    return {
        "requests": float(sum(p.get("Sum", 0.0) for p in requests)),
        "errors": float(sum(p.get("Sum", 0.0) for p in errors)) if errors else None,
        "p95_ms": max(p95s) / 1000.0 if p95s else None,
        "source": f"{NAME} {NAMESPACE} {ops.endpoint_name}/{version} ({len(requests)} periods)",
    }


def _points(
    ops: Any, version: str, start: dt.datetime, end: dt.datetime, period: int, metric: str,
    **stats: Any,
) -> list[dict[str, Any]]:  # fmt: skip
    reply = ops._call(
        "cloudwatch",
        "get_metric_statistics",
        Namespace=NAMESPACE,
        MetricName=metric,
        Dimensions=[
            {"Name": "EndpointName", "Value": ops.endpoint_name},
            {"Name": "VariantName", "Value": version},
        ],
        StartTime=start,
        EndTime=end,
        Period=period,
        **stats,
    )
    return list(reply.get("Datapoints") or [])
