"""
The Vertex serving GPU quota check against an HTTP fake of the Cloud Quotas and Cloud Monitoring
APIs on 127.0.0.1 (the two calls Google's Cloud SDK makes before a Model Garden deploy).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from httpfakes import JsonHandler

from mdeploy.errors import CloudError
from mdeploy.targets.base import EndpointArgs
from mdeploy.targets.gcp import quota as quota_module
from mdeploy.targets.gcp.quota import MONITORING_URL_ENV, QUOTAS_URL_ENV, quota_problem
from mdeploy.targets.gcp.target import GcpTarget

PROJECT = "my-proj-123"
TOKEN = "test-token"
NOW = dt.datetime(2026, 12, 6, 9, 0, tzinfo=dt.timezone.utc)
L4_ID = "CustomModelServingL4GPUsPerProjectPerRegion"


class FakeGoogle:
    """quotaInfos/<id> with per-region limits, and a usage time series per region."""

    def __init__(self, limits: dict[str, int], usage: dict[str, int], status: int = 200) -> None:
        self.limits, self.usage, self.status = limits, usage, status
        self.seen: list[tuple[str, dict[str, list[str]]]] = []
        fake = self

        class Handler(JsonHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                fake.seen.append((url.path, query))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._send(401, {"error": {"message": "no token"}})
                if fake.status != 200:
                    return self._send(fake.status, {"error": {"message": "denied"}})
                quota_path = f"/v1/projects/{PROJECT}/locations/global/services/"
                if url.path.startswith(quota_path + "aiplatform.googleapis.com/quotaInfos/"):
                    return self._send(200, fake.quota_info(url.path.rsplit("/", 1)[1]))
                if url.path == f"/v3/projects/{PROJECT}/timeSeries":
                    return self._send(200, fake.series(query["filter"][0]))
                return self._send(404, {"error": {"message": "not found"}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def quota_info(self, quota_id: str) -> dict[str, Any]:
        infos = [
            {"dimensions": {"region": r}, "details": {"value": str(v)}, "applicableLocations": [r]}
            for r, v in self.limits.items()
        ]
        return {
            "quotaId": quota_id,
            "service": "aiplatform.googleapis.com",
            "dimensionsInfos": infos,
        }

    def series(self, query: str) -> dict[str, Any]:
        for region, used in self.usage.items():
            if f'resource.label.location="{region}"' in query:
                point = {"value": {"int64Value": str(used)}}
                return {"timeSeries": [{"points": [point]}]}
        return {}


@pytest.fixture
def google(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogle]:
    fake = FakeGoogle(limits={"europe-west4": 4, "us-central1": 16}, usage={"europe-west4": 2})
    threading.Thread(target=fake.httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv(QUOTAS_URL_ENV, fake.url)
    monkeypatch.setenv(MONITORING_URL_ENV, fake.url)
    monkeypatch.setattr("mdeploy.targets.gcp.registry._access_token", lambda _c: TOKEN)
    yield fake
    fake.httpd.shutdown()
    fake.httpd.server_close()


def _args(base: EndpointArgs, **changes: Any) -> EndpointArgs:
    return dataclasses.replace(base, **changes)


def test_enough_quota_is_no_problem(google: FakeGoogle, endpoint_args_gcp: EndpointArgs) -> None:
    # 4 L4 in europe-west4, 2 in use: one replica of one L4 fits.
    assert quota_problem(endpoint_args_gcp, PROJECT, now=NOW) is None
    (quota_call, usage_call) = google.seen
    assert quota_call[0].endswith(f"/quotaInfos/{L4_ID}")
    assert usage_call[1]["aggregation.perSeriesAligner"] == ["ALIGN_NEXT_OLDER"]
    assert usage_call[1]["interval.startTime"] == ["2026-12-05T08:00:00Z"]
    assert (
        'quota_metric="aiplatform.googleapis.com/custom_model_serving_nvidia_l4_gpus"'
        in (usage_call[1]["filter"][0])
    )


def test_over_quota_names_the_quota_and_how_to_ask(
    google: FakeGoogle, endpoint_args_gcp: EndpointArgs
) -> None:
    args = _args(endpoint_args_gcp, gpu_count=2, replicas_min=2)  # needs 4, 2 left
    problem = quota_problem(args, PROJECT, now=NOW)
    assert problem is not None
    assert (problem.needed, problem.available) == (4, 2)
    assert L4_ID in problem.quota_name and "europe-west4" in problem.quota_name
    assert "console.cloud.google.com/iam-admin/quotas" in problem.request_hint
    assert "custom_model_serving_nvidia_l4_gpus" in problem.request_hint
    assert "needs 4, 2 available" in problem.message()


def test_a_region_without_quota_counts_as_zero(
    google: FakeGoogle, endpoint_args_gcp: EndpointArgs
) -> None:
    problem = quota_problem(_args(endpoint_args_gcp, region="europe-west9"), PROJECT, now=NOW)
    assert problem is not None and problem.available == 0


def test_accelerators_without_a_known_quota_are_not_checked(
    google: FakeGoogle, endpoint_args_gcp: EndpointArgs
) -> None:
    args = _args(endpoint_args_gcp, extra={"accelerator_type": "NVIDIA_H200_141GB"})
    assert quota_problem(args, PROJECT, now=NOW) is None
    assert google.seen == []


def test_a_denied_quota_read_is_a_cloud_error_not_a_pass(
    google: FakeGoogle, endpoint_args_gcp: EndpointArgs
) -> None:
    google.status = 403
    with pytest.raises(CloudError, match="permission denied") as caught:
        quota_problem(endpoint_args_gcp, PROJECT, now=NOW)
    assert "roles/cloudquotas.viewer" in (caught.value.hint or "")


def test_target_hook_reads_the_project_from_the_environment(
    google: FakeGoogle, endpoint_args_gcp: EndpointArgs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
    args = _args(endpoint_args_gcp, gpu_count=4)
    problem = GcpTarget().quota_problem(args)
    assert problem is not None and problem.needed == 4


def test_every_mapped_accelerator_is_a_vertex_enum_value() -> None:
    from google.cloud.aiplatform_v1.types import AcceleratorType

    assert set(quota_module.QUOTAS) <= set(AcceleratorType.__members__)


def test_an_unknown_project_is_an_unknown_quota(
    google: FakeGoogle, endpoint_args_gcp: EndpointArgs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mdeploy.targets.gcp.target.project_from_env", lambda: None)
    with pytest.raises(CloudError, match="project is unknown"):
        GcpTarget().quota_problem(endpoint_args_gcp)
    assert google.seen == []
