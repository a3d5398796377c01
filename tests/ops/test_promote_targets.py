"""
The five promotion cases of issue 13 against each target's real ops class over HTTP.

Vertex AI (GcpOps) and Azure ML (AzureOps) run against the REST fakes their own tests use
(tests/targets/test_gcp_ops.py, test_azure_ops.py), started here on 127.0.0.1 with one live
version at 100 %; SageMaker runs against moto over HTTP; Kubernetes against the fake API
server of tests/targets/test_kubernetes_ops.py (Deployments behind one Service, weights by
replica count); the in-memory TrafficOps runs the same cases as the reference.

The smoke failure uses the user-command smoke (it fails when MDEPLOY_PROMOTE_PERCENT is 10),
so it fails the same way on every platform; the success path smoke-tests through each
platform's own invoke.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from ops.fakes import NEW_IMAGE, FakeClock, MemoryOps, ScriptedMetrics, vertex_api
from targets.conftest import make_endpoint_args
from targets.test_aws_ops import (  # noqa: F401  (fixtures, used by name)
    fake_aws_env,
    moto,
    moto_url,
    sagemaker_with_update,
)

from mdeploy.errors import PolicyError
from mdeploy.ops.checks import CommandSmoke, PromptSmoke
from mdeploy.ops.promote import PromotionFailed, Settings, plan_promotion, promote, rollback
from mdeploy.ops.state import StateStore

STACK = "m-default-x"


@dataclass
class Platform:
    name: str
    ops: Any
    live: str  # the version holding 100 % at the start
    fake: Any = None  # the stand-in's state, where a test needs to change it

    def traffic(self) -> dict[str, int]:
        return self.ops.status().traffic


def _serve(handler: Any, attach: Callable[[ThreadingHTTPServer], str]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    url = attach(server)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _memory() -> Iterator[Platform]:
    yield Platform("memory", MemoryOps(), "v-1")


def _gcp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    gcp = pytest.importorskip("targets.test_gcp_ops")
    from mdeploy.targets.gcp.ops import GcpOps

    api = vertex_api()

    def attach(server: ThreadingHTTPServer) -> str:
        api.url = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv(gcp.API_URL_ENV, api.url)
        return api.url

    for _ in _serve(gcp._handler(api), attach):
        ops = GcpOps(gcp.ENDPOINT, credentials=gcp.StubCredentials(), poll_interval_s=0.01)
        yield Platform("gcp", ops, "m-default-v1")


def _azure() -> Iterator[Platform]:
    az = pytest.importorskip("targets.test_azure_ops")
    from mdeploy.targets.azure.ops import AzureOps, EndpointRef

    fake = az.FakeAzure()
    fake.op_polls = 1  # operations finish at the first poll
    fake.deployments = fake.deployments[:1]
    fake.endpoint["properties"]["traffic"] = {"v-1": 100}
    fake.endpoint["properties"]["mirrorTraffic"] = {}

    def attach(server: ThreadingHTTPServer) -> str:
        server.fake = fake  # type: ignore[attr-defined]
        fake.url = f"http://127.0.0.1:{server.server_address[1]}"
        fake.endpoint["properties"]["scoringUri"] = f"{fake.url}/score"
        return fake.url

    class Handler(az._Handler):
        """The ARM fake, keeping the read-only scoringUri across an endpoint PUT as ARM does
        (the base fake replaces every property with the PUT's)."""

        def _put_endpoint(self, fake: Any, body: dict[str, Any]) -> None:
            uri = fake.endpoint["properties"].get("scoringUri")
            super()._put_endpoint(fake, body)
            fake.endpoint["properties"].setdefault("scoringUri", uri)

    for url in _serve(Handler, attach):
        ops = AzureOps(
            EndpointRef(az.SUB, az.RG, az.WS, az.EP),
            credential=az.StubCredential(), arm_url=url, timeout_s=5, poll_interval_s=0.01,
        )  # fmt: skip
        yield Platform("azure", ops, "v-1")


def _aws(request: pytest.FixtureRequest) -> Iterator[Platform]:
    """SageMaker: moto over HTTP, behind the proxy that plays UpdateEndpoint (moto lacks it)."""
    aws = pytest.importorskip("targets.test_aws_ops")
    from mdeploy.targets.aws.ops import AwsOps

    url = request.getfixturevalue("moto")
    request.getfixturevalue("sagemaker_with_update")
    sm = aws.boto3.client("sagemaker", region_name=aws.REGION)
    sm.create_model(
        ModelName="promo-model",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/mdeploy-exec",
        PrimaryContainer={"Image": aws.IMAGE, "Environment": {"MDEPLOY_MODEL_REVISION": "r1"}},
    )
    sm.create_endpoint_config(
        EndpointConfigName="promo-config",
        ProductionVariants=[{"VariantName": "v-1", "ModelName": "promo-model",
                             "InstanceType": "ml.g4dn.2xlarge", "InitialInstanceCount": 1,
                             "InitialVariantWeight": 1.0}],
    )  # fmt: skip
    sm.create_endpoint(EndpointName="promo", EndpointConfigName="promo-config")
    reply = {"choices": [{"message": {"role": "assistant", "content": "ready"}}]}
    result = {"Body": json.dumps(reply), "ContentType": "application/json",
              "InvokedProductionVariant": "v-1", "CustomAttributes": ""}  # fmt: skip
    urllib.request.urlopen(
        urllib.request.Request(
            f"{url}/moto-api/static/sagemaker/endpoint-results",
            data=json.dumps({"region": aws.REGION, "results": [result]}).encode(),
            method="POST",
        )
    ).read()
    yield Platform("aws", AwsOps("promo", aws.REGION), "v-1")


def _kubernetes(tmp_path: Path) -> Iterator[Platform]:
    """
    Deployments behind one Service: the fake API server of tests/targets/test_kubernetes_ops.py,
    which here also answers the adapter's /ready and chat routes (the endpoint URL). Ten
    replicas, so 10/50/100 % are exact; coarser splits are tested in test_promote.py.
    """
    k8s = pytest.importorskip("targets.test_kubernetes_ops")
    from mdeploy.targets.kubernetes.ops import KubernetesTrafficOps

    class Handler(k8s._Handler):
        def _handle(self) -> None:
            if self.path == "/ready":
                return self._send(200, {"status": "ready"})
            if self.path == "/v1/chat/completions":
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                return self._send(200, {"choices": [{"message": {"content": "ready"}}]})
            super()._handle()
            name = self.path.rsplit("/", 1)[-1]
            if self.command == "PATCH" and name in api.unready:  # pods that never get ready
                api.deployments[name]["status"] = {"readyReplicas": 0}

        do_GET = do_POST = do_PATCH = do_DELETE = _handle

    api = k8s.FakeApi()
    api.deployments = {k8s.NAME: k8s._deployment(10)}
    api.unready = set()  # Deployments whose pods never become ready
    kubeconfig = tmp_path / "kubeconfig"

    def attach(server: ThreadingHTTPServer) -> str:
        server.api = api  # type: ignore[attr-defined]
        url = f"http://127.0.0.1:{server.server_address[1]}"
        kubeconfig.write_text(json.dumps(_kubeconfig(url, k8s.TOKEN)))
        return url

    for url in _serve(Handler, attach):
        outputs = {"endpoint_name": k8s.NAME, "endpoint_url": url, "namespace": k8s.NS,
                   "service_name": k8s.NAME}  # fmt: skip
        ops = KubernetesTrafficOps(outputs, context="cw", kubeconfig=[kubeconfig])
        yield Platform("kubernetes", ops, k8s.NAME, fake=api)


def _kubeconfig(server: str, token: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "cw",
        "contexts": [{"name": "cw", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": token}}],
    }


@pytest.fixture(params=["memory", "gcp", "azure", "aws", "kubernetes"])
def platform(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Any]:
    makers = {
        "memory": _memory,
        "gcp": lambda: _gcp(monkeypatch),
        "azure": _azure,
        "aws": lambda: _aws(request),
        "kubernetes": lambda: _kubernetes(tmp_path),
    }
    yield from makers[request.param]()


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "promotions")


def _plan(settings: Settings | None = None) -> Any:
    args = make_endpoint_args(image=NEW_IMAGE, model_revision="r2", model_version="2")
    return plan_promotion(STACK, "x", args, settings or Settings(bake_s=30), version="v-2")


def _smoke() -> PromptSmoke:
    return PromptSmoke("mistralai/Mistral-7B-Instruct-v0.3", "Reply with one word: ready.")


def test_success_then_rollback_restores_the_previous_version(
    platform: Platform, store: StateStore
) -> None:
    report = promote(platform.ops, _plan(), store, clock=FakeClock(), smoke=_smoke())
    assert report["result"] == "promoted" and report["removed"] == [platform.live]
    assert platform.traffic() == {"v-2": 100}
    back = rollback(platform.ops, STACK, "x", store)
    assert back["result"] == "rolled-back" and back["removed"] == ["v-2"]
    assert platform.traffic() == {platform.live: 100}
    restored = platform.ops.status().version(platform.live)
    assert restored.model_revision == "r1"  # as it was before the promotion, not r2
    assert store.load(STACK)["current"]["model_revision"] == "r1"
    assert rollback(platform.ops, STACK, "x", store)["result"] == "unchanged"


def test_a_smoke_failure_at_10_percent_rolls_back(platform: Platform, store: StateStore) -> None:
    smoke = CommandSmoke('test "$MDEPLOY_PROMOTE_PERCENT" -gt 10')
    with pytest.raises(PromotionFailed) as err:
        promote(platform.ops, _plan(), store, clock=FakeClock(), smoke=smoke)
    report = err.value.report
    assert report["result"] == "rolled-back" and [s["to_percent"] for s in report["steps"]] == [10]
    assert platform.traffic() == {platform.live: 100}


def test_a_metrics_breach_at_50_percent_rolls_back(platform: Platform, store: StateStore) -> None:
    metrics = ScriptedMetrics(platform.ops, {50: (200, 30, 400)})
    settings = Settings(bake_s=30, max_error_rate=0.05)
    with pytest.raises(PromotionFailed) as err:
        promote(platform.ops, _plan(settings), store, clock=FakeClock(), metrics=metrics)
    assert [s["ok"] for s in err.value.report["steps"]] == [True, False]
    assert platform.traffic() == {platform.live: 100}


def test_an_interrupted_promotion_resumes(platform: Platform, store: StateStore) -> None:
    clock = FakeClock()
    clock.on_sleep = lambda n: (_ for _ in ()).throw(KeyboardInterrupt) if n == 2 else None
    with pytest.raises(KeyboardInterrupt):
        promote(platform.ops, _plan(), store, clock=clock)
    assert platform.traffic() == {platform.live: 50, "v-2": 50}
    clock.on_sleep = None
    report = promote(platform.ops, _plan(), store, clock=clock)
    assert report["result"] == "promoted" and report["resumed_after_step"] == 1
    assert [s["to_percent"] for s in report["steps"]] == [50, 100]
    assert platform.traffic() == {"v-2": 100}


def test_a_concurrent_promotion_is_refused(platform: Platform, store: StateStore) -> None:
    with store.lock(STACK, "promote"), pytest.raises(PolicyError, match="refusing"):
        promote(platform.ops, _plan(), store, clock=FakeClock())
    assert platform.traffic() == {platform.live: 100}


def test_kubernetes_steps_report_the_split_two_replicas_allow(
    tmp_path: Path, store: StateStore
) -> None:
    """Two replicas: 10 % is 50 % (each version keeps one), said in the step; 100 % is exact."""
    for platform in _kubernetes(tmp_path):
        k8s = pytest.importorskip("targets.test_kubernetes_ops")
        live = platform.ops.outputs["endpoint_name"]
        platform.ops.set_traffic({live: 100})  # the fake starts at ten replicas
        _scale(platform, 2)
        report = promote(platform.ops, _plan(), store, clock=FakeClock())
        first = report["steps"][0]
        assert first["weights"] == {live: 90, "v-2": 10}
        assert first["achieved"] == {live: 50, "v-2": 50} and first["split"] == "coarse"
        assert "replica-proportional gave 50 %" in first["note"]
        assert report["steps"][-1]["achieved"] == {live: 0, "v-2": 100}
        assert platform.traffic() == {"v-2": 100} and k8s.NAME in report["removed"]


def _scale(platform: Platform, replicas: int) -> None:
    name = platform.ops.outputs["endpoint_name"]
    platform.ops._api("PATCH", platform.ops._path(name), {"spec": {"replicas": replicas}},
                      "application/merge-patch+json")  # fmt: skip


def test_a_cloudwatch_breach_at_50_percent_rolls_back_on_sagemaker(
    request: pytest.FixtureRequest, store: StateStore
) -> None:
    """The SageMaker case with the platform's own metrics: 5xx of v-2 in the 50 % window."""
    import datetime as dt

    from mdeploy.ops.checks import PlatformMetrics
    from mdeploy.targets.aws import metrics as cloudwatch

    platform = next(_aws(request))
    clock = FakeClock()  # bakes move it by 120 s: step 1 reads [t0, t0+120], step 2 the next
    at = lambda s: dt.datetime.fromtimestamp(clock.t + s, dt.UTC)  # noqa: E731
    cw = pytest.importorskip("boto3").client("cloudwatch", region_name=platform.ops.region)

    def put(metric: str, value: float, when: dt.datetime) -> None:
        dims = [{"Name": "EndpointName", "Value": "promo"}, {"Name": "VariantName", "Value": "v-2"}]
        cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
            {"MetricName": metric, "Timestamp": when, "StatisticValues": {
                "SampleCount": value, "Sum": value, "Minimum": 0, "Maximum": 1}, "Dimensions": dims}
        ])  # fmt: skip

    put("Invocations", 100, at(60))
    put("Invocation5XXErrors", 0, at(60))
    put("Invocations", 100, at(180))
    put("Invocation5XXErrors", 30, at(180))
    source = PlatformMetrics(cloudwatch, platform.ops, now=lambda: at(0))
    settings = Settings(bake_s=120, max_error_rate=0.05)
    with pytest.raises(PromotionFailed) as err:
        promote(platform.ops, _plan(settings), store, clock=clock, metrics=source)
    steps = err.value.report["steps"]
    assert [s["ok"] for s in steps] == [True, False]
    assert "100 requests" in steps[0]["checks"][-1]["detail"]
    assert "error rate 0.3000 > 0.05" in steps[1]["checks"][-1]["detail"]
    assert platform.traffic() == {"v-1": 100}


def test_kubernetes_with_an_hpa_rolls_back_before_any_traffic_moves(
    tmp_path: Path, store: StateStore
) -> None:
    """An HPA owns the replicas: the first step is refused, v-2 (0 replicas) is removed."""
    for platform in _kubernetes(tmp_path):
        live = platform.ops.outputs["endpoint_name"]
        api = platform.fake
        api.hpas.append({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": live}}})
        with pytest.raises(PromotionFailed) as err:
            promote(platform.ops, _plan(), store, clock=FakeClock())
        report = err.value.report
        assert report["result"] == "rolled-back" and "HorizontalPodAutoscaler" in report["error"]
        assert report["removed"] == ["v-2"] and platform.traffic() == {live: 100}
        assert store.load(STACK)["promotion"]["phase"] == "rolled-back"


def test_kubernetes_pods_not_ready_after_the_bake_roll_back(
    tmp_path: Path, store: StateStore
) -> None:
    """The Service sends only to ready pods: v-2's 1 replica at 0/1 ready fails step 1."""
    for platform in _kubernetes(tmp_path):
        live = platform.ops.outputs["endpoint_name"]
        platform.fake.unready.add(f"{live}-v-2")
        with pytest.raises(PromotionFailed) as err:
            promote(platform.ops, _plan(), store, clock=FakeClock())
        (step,) = err.value.report["steps"]
        assert step["checks"][0] == {
            "name": "health", "ok": False, "detail": "version v-2 is 0/1 ready after the bake"
        }  # fmt: skip
        assert platform.traffic() == {live: 100} and err.value.report["removed"] == ["v-2"]
