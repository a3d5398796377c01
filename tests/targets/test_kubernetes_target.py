"""The Kubernetes target's light side: kubeconfig checks, registry, limits, day-2 probes."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mdeploy.targets import get_target
from mdeploy.targets.base import EndpointHealth, Ops, TrafficOps
from mdeploy.targets.kubernetes.ops import KubernetesOps
from mdeploy.targets.kubernetes.rules import check_context
from mdeploy.targets.kubernetes.target import TARGET, repository_of

KUBECONFIG = """\
apiVersion: v1
kind: Config
current-context: {current}
contexts: [{{name: cw-dev, context: {{cluster: c}}}}, {{name: cw-prod, context: {{cluster: c}}}}]
"""


def test_coreweave_maps_to_this_target():
    assert get_target("coreweave") is TARGET
    assert TARGET.name == "kubernetes"
    assert "kubernetes" in TARGET.pulumi_plugins


def test_credentials_need_a_kubeconfig(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    ok, reason = TARGET.check_credentials()
    assert not ok and "no kubeconfig" in reason
    assert "KUBECONFIG" in TARGET.credentials_hint


def test_current_context_or_named_context(tmp_path, monkeypatch):
    path = tmp_path / "config"
    path.write_text(KUBECONFIG.format(current="cw-dev"))
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'absent'}:{path}")
    assert TARGET.check_credentials() == (True, "kube context 'cw-dev'")
    assert check_context("cw-prod")[0]
    ok, reason = check_context("gke-other")
    assert not ok and "gke-other" in reason


def test_kubeconfig_without_current_context(tmp_path, monkeypatch):
    path = tmp_path / "config"
    path.write_text(KUBECONFIG.format(current='""'))
    monkeypatch.setenv("KUBECONFIG", str(path))
    ok, reason = check_context(None)
    assert not ok and "current-context" in reason


def test_registry_repository(endpoint_args_coreweave):
    assert TARGET.registry_repository(endpoint_args_coreweave, {}) == (
        "registry.example.com/mdeploy/vllm"
    )
    configured = {"mdeploy:registry": "r.local:5000/ml/vllm"}
    assert TARGET.registry_repository(endpoint_args_coreweave, configured) == "r.local:5000/ml/vllm"
    assert repository_of("localhost:5000/a/b:v1") == "localhost:5000/a/b"
    assert repository_of("busybox") == "busybox"


def test_stack_config_only_names_a_context(endpoint_args_coreweave):
    import dataclasses

    assert TARGET.stack_config(endpoint_args_coreweave) == {}
    extra = {**endpoint_args_coreweave.extra, "kube_context": "cw-prod"}
    args = dataclasses.replace(endpoint_args_coreweave, extra=extra)
    assert TARGET.stack_config(args) == {"kubernetes:context": "cw-prod"}


def test_cloud_secret_managers_are_unsupported():
    from mdeploy.spec.models import Deployment

    spec = Deployment.model_validate({
        "apiVersion": "mdeploy/v1", "kind": "Deployment",
        "metadata": {"name": "m"}, "model": {"id": "x/y"},
        "serving": {"secrets": {"A": "gcp-sm:tok", "B": "k8s:s/k", "C": "env:C"}},
    })  # fmt: skip
    assert list(TARGET.unsupported(spec)) == ["serving.secrets.A"]


@pytest.mark.parametrize(
    ("source", "refused"),
    [
        ("az://account/container/model", True),  # the entrypoint stops on it: a crash loop
        ("hf://x/y", False),
        ("s3://bucket/model", False),
        ("gs://bucket/model", False),
        (None, False),  # the engine downloads model.id
    ],
)
def test_weights_the_image_cannot_fetch_are_unsupported(source, refused):
    from mdeploy.spec.models import Deployment

    model = {"id": "x/y", **({"source": source} if source else {})}
    spec = Deployment.model_validate({
        "apiVersion": "mdeploy/v1", "kind": "Deployment", "metadata": {"name": "m"},
        "model": model,
    })  # fmt: skip
    reasons = TARGET.unsupported(spec)
    assert ("model.source" in reasons) is refused
    if refused:
        assert "hf://" in reasons["model.source"]


class _Handler(BaseHTTPRequestHandler):
    ready = True

    def do_GET(self) -> None:
        code = 200 if (self.path == "/ready" and _Handler.ready) else 503
        self.send_response(code)
        self.end_headers()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        authorized = self.headers.get("Authorization") == "Bearer k3y"
        self.send_response(200 if authorized else 401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        if authorized:
            reply = {"model": body["model"], "choices": [{"message": {"content": "ok"}}]}
            self.wfile.write(json.dumps(reply).encode())

    def log_message(self, *args: object) -> None:
        del args  # Unused: keep test output quiet.


@pytest.fixture
def adapter():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_status_probes_readiness(adapter):
    _Handler.ready = True
    outputs = {"endpoint_url": adapter, "endpoint_name": "m", "image": "r/m@sha256:ab"}
    health = KubernetesOps(outputs).status()
    assert isinstance(health, EndpointHealth) and health.state == "ready"
    assert health.traffic == {"m": 100} and health.versions[0].image == "r/m@sha256:ab"
    assert health.to_json()["details"]["http_status"] == 200
    _Handler.ready = False
    loading = KubernetesOps({"endpoint_url": adapter}).status()
    assert loading.state == "loading" and loading.versions == []


def test_status_of_unreachable_and_cluster_internal_urls():
    gone = KubernetesOps({"endpoint_url": "http://127.0.0.1:9"}, timeout_s=1).status()
    assert gone.state == "unreachable"
    internal = KubernetesOps(
        {"endpoint_url": "http://m.mdeploy.svc.cluster.local", "namespace": "mdeploy",
         "service_name": "m"}
    ).status()  # fmt: skip
    assert internal.state == "unknown"
    assert "kubectl -n mdeploy port-forward svc/m" in (internal.detail or "")
    assert internal.to_json()["detail"] == internal.detail


def test_the_target_returns_ops_with_traffic(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    ops = TARGET.ops({"endpoint_url": "http://m.ns.svc.cluster.local", "endpoint_name": "m"})
    assert isinstance(ops, Ops) and isinstance(ops, TrafficOps)  # promote drives it
    health = ops.status()  # no kubeconfig: the outputs' one version, and why
    assert health.traffic == {"m": 100} and "stack outputs" in health.details["versions_from"]


def test_invoke_sends_the_api_key(adapter):
    from mdeploy.errors import CloudError, InputError

    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    ops = KubernetesOps({"endpoint_url": adapter, "endpoint_name": "m", "api_key": "k3y"})
    assert json.loads(ops.invoke(body))["model"] == "m"
    chunks = ops.invoke(body, stream=True)
    assert not isinstance(chunks, bytes)  # an iterator: chunks are handed on as they arrive
    assert json.loads(b"".join(chunks))["model"] == "m"
    wrong = KubernetesOps({"endpoint_url": adapter, "api_key": "wrong"})
    with pytest.raises(CloudError, match="HTTP 401"):
        wrong.invoke(body)
    internal = KubernetesOps({"endpoint_url": "http://m.ns.svc.cluster.local"})
    with pytest.raises(InputError):
        internal.invoke(body)
