"""
SageMaker's own metrics for a promotion: CloudWatch per variant (mdeploy/targets/aws/metrics.py)
through the generic PlatformMetrics source.

Sums of Invocations and Invocation5XXErrors run against moto over HTTP (put, then read back
through GetMetricStatistics, filtered by the EndpointName/VariantName dimensions). moto
ignores ExtendedStatistics, so the p95 read is checked with botocore's Stubber, which checks
both the request and the reply against botocore's CloudWatch service model.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from targets.test_aws_ops import (  # noqa: F401  (fixtures, used by name)
    REGION,
    fake_aws_env,
    moto,
    moto_url,
)

from mdeploy.ops.checks import PlatformMetrics, judge_metrics
from mdeploy.targets.aws import metrics as cloudwatch
from mdeploy.targets.aws.ops import AwsOps

boto3 = pytest.importorskip("boto3")
START = dt.datetime(2026, 12, 6, 10, 0, 0, tzinfo=dt.UTC)


def _put(cw: Any, metric: str, variant: str, values: list[float], at: dt.datetime) -> None:
    cw.put_metric_data(
        Namespace="AWS/SageMaker",
        MetricData=[
            {"MetricName": metric, "Timestamp": at, "Value": v,
             "Dimensions": [{"Name": "EndpointName", "Value": "promo"},
                            {"Name": "VariantName", "Value": variant}]}
            for v in values
        ],
    )  # fmt: skip


@pytest.mark.usefixtures("moto")
def test_requests_and_5xx_of_the_new_variant_come_from_cloudwatch() -> None:
    cw = boto3.client("cloudwatch", region_name=REGION)
    at = START + dt.timedelta(seconds=90)
    _put(cw, "Invocations", "v-2", [1.0] * 40, at)
    _put(cw, "Invocation5XXErrors", "v-2", [0.0] * 38 + [1.0, 1.0], at)
    _put(cw, "Invocations", "v-1", [1.0] * 500, at)  # the old variant: not counted
    _put(cw, "Invocations", "v-2", [1.0] * 7, START + dt.timedelta(minutes=10))  # after

    clock = [START + dt.timedelta(seconds=20)]
    source = PlatformMetrics(cloudwatch, AwsOps("promo", REGION), now=lambda: clock[0])
    mark = source.mark("v-2")
    assert mark == START  # the window starts at the whole minute
    clock[0] = START + dt.timedelta(minutes=3)
    sample = source.read("v-2", mark)
    assert (sample.requests, sample.errors, sample.p95_ms) == (40.0, 2.0, None)
    assert "AWS/SageMaker promo/v-2" in sample.source
    verdict = judge_metrics(sample, max_error_rate=0.01, max_p95_ms=None)
    assert not verdict.ok and "error rate 0.0500 > 0.01" in verdict.detail
    assert "p95 not measured" in verdict.detail


@pytest.mark.usefixtures("moto")
def test_an_empty_window_is_zero_requests_and_errors_not_measured() -> None:
    ops = AwsOps("promo", REGION)
    got = cloudwatch.read_window(ops, "v-2", START, START)  # bake 0: one period at least
    assert got["requests"] == 0.0 and got["errors"] is None and got["p95_ms"] is None


@pytest.mark.usefixtures("fake_aws_env")
def test_p95_is_the_largest_period_p95_in_ms() -> None:
    from botocore.stub import Stubber

    ops = AwsOps("promo", REGION)
    client = boto3.client("cloudwatch", region_name=REGION)
    ops._clients["cloudwatch"] = client
    end = START + dt.timedelta(seconds=150)

    def expect(metric: str, reply: list[dict[str, Any]], **stats: Any) -> None:
        params = {
            "Namespace": "AWS/SageMaker", "MetricName": metric,
            "Dimensions": [{"Name": "EndpointName", "Value": "promo"},
                           {"Name": "VariantName", "Value": "v-2"}],
            "StartTime": START, "EndTime": end, "Period": 180, **stats,
        }  # fmt: skip
        stub.add_response("get_metric_statistics", {"Label": metric, "Datapoints": reply}, params)

    with Stubber(client) as stub:
        expect("Invocations", [{"Timestamp": START, "Sum": 120.0, "Unit": "Count"}],
               Statistics=["Sum"])  # fmt: skip
        expect("Invocation5XXErrors", [{"Timestamp": START, "Sum": 0.0, "Unit": "Count"}],
               Statistics=["Sum"])  # fmt: skip
        expect("ModelLatency", [
            {"Timestamp": START, "ExtendedStatistics": {"p95": 850_000.0}, "Unit": "Microseconds"},
            {"Timestamp": START + dt.timedelta(minutes=1),
             "ExtendedStatistics": {"p95": 1_200_000.0}, "Unit": "Microseconds"},
        ], ExtendedStatistics=["p95"])  # fmt: skip
        got = cloudwatch.read_window(ops, "v-2", START, end)
        stub.assert_no_pending_responses()
    assert got["p95_ms"] == 1200.0 and got["errors"] == 0.0 and got["requests"] == 120.0


@pytest.mark.usefixtures("fake_aws_env")
def test_a_refused_read_fails_the_metrics_check_not_the_run() -> None:
    from botocore.stub import Stubber

    from mdeploy.errors import MdeployError

    ops = AwsOps("promo", REGION)
    client = boto3.client("cloudwatch", region_name=REGION)
    ops._clients["cloudwatch"] = client
    with Stubber(client) as stub:
        stub.add_client_error("get_metric_statistics", "AccessDenied", "not allowed", 403)
        source = PlatformMetrics(cloudwatch, ops, now=lambda: START)
        with pytest.raises(MdeployError):  # promote turns this into a failed metrics check
            source.read("v-2", START)
