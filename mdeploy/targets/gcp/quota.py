"""
Vertex AI custom-model-serving GPU quota, checked before `up` creates anything.

Vertex counts the GPUs of deployed models per project, region and accelerator type against
"Custom model serving <GPU> GPUs per region" quotas (Vertex AI docs, quotas: "Custom-trained
model serving"). The quota ids and metric names, and the way to read them, are the ones
Google's own Cloud SDK uses before a Model Garden deploy (google-cloud-sdk
googlecloudsdk/command_lib/ai/model_garden_utils.py, `CheckAcceleratorQuota`, read
2026-12-06):

- limit: Cloud Quotas API, `GET cloudquotas.googleapis.com/v1/projects/P/locations/global/
  services/aiplatform.googleapis.com/quotaInfos/<quota id>`, the dimensionsInfo whose
  applicableLocations names the region (`details.value`, absent = 0);
- usage: Cloud Monitoring, the latest `serviceruntime.googleapis.com/quota/allocation/usage`
  point of the `consumer_quota` series for `aiplatform.googleapis.com/<metric>` in the region
  over the last 25 hours (no point = 0).

Accelerators the SDK maps no quota for (H100 Mega, H200, B200, GB200) are not checked: the
deploy itself reports them. Plain HTTPS (httpx) with the ADC token; `MDEPLOY_GCP_QUOTAS_URL`
and `MDEPLOY_GCP_MONITORING_URL` point tests at a fake on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from mdeploy.errors import CloudError, InputError
from mdeploy.targets.base import EndpointArgs, QuotaProblem

__all__ = ["MONITORING_URL_ENV", "QUOTAS", "QUOTAS_URL_ENV", "quota_problem"]

QUOTAS_URL_ENV = "MDEPLOY_GCP_QUOTAS_URL"
MONITORING_URL_ENV = "MDEPLOY_GCP_MONITORING_URL"
SERVICE = "aiplatform.googleapis.com"
# AcceleratorType → (Cloud Quotas quota id, quota metric), as in model_garden_utils.py; its
# names all follow CustomModelServing<X>GPUsPerProjectPerRegion and
# custom_model_serving_nvidia_<y>_gpus.
_GPU_NAMES = {
    "NVIDIA_TESLA_P4": ("P4", "p4"),
    "NVIDIA_TESLA_T4": ("T4", "t4"),
    "NVIDIA_L4": ("L4", "l4"),
    "NVIDIA_TESLA_V100": ("V100", "v100"),
    "NVIDIA_TESLA_P100": ("P100", "p100"),
    "NVIDIA_TESLA_A100": ("A100", "a100"),
    "NVIDIA_A100_80GB": ("A10080GB", "a100_80gb"),
    "NVIDIA_H100_80GB": ("H100", "h100"),
    "NVIDIA_RTX_PRO_6000": ("RTXPRO6000", "rtx_pro_6000"),
}
QUOTAS = {
    accelerator: (
        f"CustomModelServing{quota}GPUsPerProjectPerRegion",
        f"custom_model_serving_nvidia_{metric}_gpus",
    )
    for accelerator, (quota, metric) in _GPU_NAMES.items()
}
_USAGE_FILTER = (
    'metric.type="serviceruntime.googleapis.com/quota/allocation/usage" AND '
    'resource.type="consumer_quota" AND '
    'metric.label.quota_metric="aiplatform.googleapis.com/{metric}" AND '
    'resource.label.project_id="{project}" AND resource.label.location="{region}" AND '
    'resource.label.service="aiplatform.googleapis.com"'
)
_TIMEOUT_S = 30.0


def quota_problem(
    args: EndpointArgs, project: str, *, credentials: Any = None, now: dt.datetime | None = None
) -> QuotaProblem | None:
    """The serving GPU quota `up` would exceed in args.region, or None (also when unmapped)."""
    from mdeploy.targets.gcp.rules import accelerator_type

    accelerator = accelerator_type(args)
    if accelerator not in QUOTAS:
        return None
    quota_id, metric = QUOTAS[accelerator]
    client = _Client(credentials)
    limit = _limit(client, project, args.region, quota_id)
    usage = _usage(client, project, args.region, metric, now or dt.datetime.now(dt.timezone.utc))
    # `up` deploys replicas.min replicas, each with the machine's accelerator count.
    needed = args.gpu_count * args.replicas_min
    if usage + needed <= limit:
        return None
    return QuotaProblem(
        quota_name=f"{quota_id} ({SERVICE}/{metric}, region {args.region})",
        needed=needed,
        available=max(0, limit - usage),
        request_hint=(
            f"https://console.cloud.google.com/iam-admin/quotas?project={project}"
            f"&metric={SERVICE}%2F{metric} (select region {args.region}, Edit quotas); see "
            "https://cloud.google.com/vertex-ai/docs/quotas#requesting_additional_quota"
        ),
    )


def _limit(client: _Client, project: str, region: str, quota_id: str) -> int:
    base = os.environ.get(QUOTAS_URL_ENV, "https://cloudquotas.googleapis.com").rstrip("/")
    url = f"{base}/v1/projects/{project}/locations/global/services/{SERVICE}/quotaInfos/{quota_id}"
    info = client.get(url, {}, "read the serving GPU quota (Cloud Quotas API)")
    for dimension in info.get("dimensionsInfos") or []:
        if region in (dimension.get("applicableLocations") or []):
            return _int((dimension.get("details") or {}).get("value"))
    return 0


def _usage(client: _Client, project: str, region: str, metric: str, now: dt.datetime) -> int:
    base = os.environ.get(MONITORING_URL_ENV, "https://monitoring.googleapis.com").rstrip("/")
    params = {
        "filter": _USAGE_FILTER.format(metric=metric, project=project, region=region),
        "interval.startTime": _rfc3339(now - dt.timedelta(hours=25)),
        "interval.endTime": _rfc3339(now),
        "aggregation.alignmentPeriod": "60s",
        "aggregation.perSeriesAligner": "ALIGN_NEXT_OLDER",
    }
    reply = client.get(
        f"{base}/v3/projects/{project}/timeSeries", params, "read the quota usage (Monitoring)"
    )
    try:
        return _int(reply["timeSeries"][0]["points"][0]["value"]["int64Value"])
    except (KeyError, IndexError, TypeError):
        return 0


class _Client:
    def __init__(self, credentials: Any) -> None:
        self._credentials = credentials

    def get(self, url: str, params: dict[str, str], action: str) -> dict[str, Any]:
        import httpx

        from mdeploy.targets.gcp.ops import _http_error, _transport_error
        from mdeploy.targets.gcp.registry import _access_token

        headers = {"Authorization": f"Bearer {_access_token(self._credentials)}"}
        try:
            reply = httpx.get(url, params=params, headers=headers, timeout=_TIMEOUT_S)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, action) from None
        if reply.status_code == 403:
            raise CloudError(
                f"{action}: permission denied",
                hint="the caller needs cloudquotas.quotas.get and monitoring.timeSeries.list "
                "(roles/cloudquotas.viewer and roles/monitoring.viewer)",
            )
        if reply.status_code >= 400:
            raise _http_error(reply, action)
        try:
            body = reply.json()
        except ValueError:
            raise CloudError(f"{action}: the reply is not JSON") from None
        return body if isinstance(body, dict) else {}


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        raise InputError(f"quota value {value!r} is not a whole number") from None


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
