"""
A replica larger than a node renders a LeaderWorkerSet (issue 14 item 2).

Authorities: the LeaderWorkerSet v1 CRD's OpenAPI schema, vendored from kubernetes-sigs/lws
v0.10.0 (tests/conformance/schemas/README.md), checked with jsonschema; the Kubernetes schemas
of kubernetes-validate (strict) for the leader and worker pods; checkov on those pods, which
it cannot find inside a custom resource.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from mdeploy.deploy.synth import synth, synth_args
from mdeploy.errors import InputError
from mdeploy.spec import load_spec
from mdeploy.targets.kubernetes import lws
from mdeploy.targets.kubernetes.manifests import manifests

SCHEMA = Path(__file__).resolve().parents[1] / "conformance/schemas/leaderworkerset_v0.10.0.json"
SPEC = """\
apiVersion: mdeploy/v1
kind: Deployment
metadata: {name: llama-405b}
model: {id: meta-llama/Llama-3.1-405B-Instruct, max_context: 8192}
serving: {max_concurrency: 8, image: "registry.example.com/mdeploy/vllm@sha256:DIGEST"}
placement: {clouds: [coreweave], gpus: [H100]}
"""
# checkov checks that fail by design on these pods, each with the reason.
ALLOWED = {
    "CKV_K8S_35": "secrets as env vars from secretKeyRef (the image's contract; as the Deployment)",
    "CKV_K8S_8": "workers: a headless vLLM rank serves no HTTP to probe; the leader is probed "
    "and RecreateGroupOnPodRestart restarts the group when any rank exits",
    "CKV_K8S_9": "workers: as CKV_K8S_8 (readiness)",
}


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("lws") / "spec.yaml"
    path.write_text(SPEC.replace("DIGEST", "ab" * 32))
    return synth(load_spec(path), "coreweave")


@pytest.fixture(scope="module")
def objects(result) -> list[dict[str, Any]]:
    return manifests(result.to_json())


def _one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def _templates(obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    lwt = obj["spec"]["leaderWorkerTemplate"]
    return lwt["leaderTemplate"], lwt["workerTemplate"]


def _engine_args(pod: dict[str, Any]) -> list[str]:
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    return json.loads(env["MDEPLOY_ENGINE_ARGS"])


def _flag(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_two_node_plan_renders_a_leader_worker_set_not_a_deployment(objects):
    kinds = [o["kind"] for o in objects]
    assert "LeaderWorkerSet" in kinds and "Deployment" not in kinds
    obj = _one(objects, "LeaderWorkerSet")
    assert obj["apiVersion"] == "leaderworkerset.x-k8s.io/v1"
    lwt = obj["spec"]["leaderWorkerTemplate"]
    assert lwt["size"] == 2 and lwt["restartPolicy"] == "RecreateGroupOnPodRestart"


def test_leader_serves_with_rank_zero_and_workers_are_headless(objects):
    leader, worker = _templates(_one(objects, "LeaderWorkerSet"))
    args = _engine_args(leader)
    assert _flag(args, "--tensor-parallel-size") == "8"
    assert _flag(args, "--pipeline-parallel-size") == "2" and _flag(args, "--nnodes") == "2"
    assert _flag(args, "--node-rank") == "0" and "--headless" not in args
    assert _flag(args, "--master-addr") == "$(LWS_LEADER_ADDRESS)"
    (lead,) = leader["spec"]["containers"]
    assert "command" not in lead and lead["startupProbe"]["failureThreshold"] > 3
    (work,) = worker["spec"]["containers"]
    cmd = work["command"]
    assert cmd[:3] == ["vllm", "serve", "meta-llama/Llama-3.1-405B-Instruct"]
    assert _flag(cmd, "--node-rank") == "$(LWS_WORKER_INDEX)" and "--headless" in cmd
    assert _flag(cmd, "--pipeline-parallel-size") == "2"
    assert "readinessProbe" not in work and "ports" not in work


def test_service_reaches_the_leaders_only_and_rdma_is_requested(objects):
    selector = _one(objects, "Service")["spec"]["selector"]
    assert selector["leaderworkerset.sigs.k8s.io/worker-index"] == "0"
    for pod in _templates(_one(objects, "LeaderWorkerSet")):
        (c,) = pod["spec"]["containers"]
        assert c["resources"]["limits"]["rdma/ib"] == "1"  # the InfiniBand H100 class
        assert c["resources"]["limits"]["nvidia.com/gpu"] == "8"


def test_group_pods_may_reach_each_other(objects):
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    group = [p for p in policies if p["metadata"]["name"].endswith("-group")]
    assert len(group) == 1
    (rule,) = group[0]["spec"]["ingress"]
    assert "ports" not in rule and rule["from"][0]["podSelector"]["matchLabels"]


def _validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text())["openAPIV3Schema"]
    return jsonschema.Draft7Validator(schema)


def test_leader_worker_set_conforms_to_the_vendored_crd_schema(objects):
    errors = [e.message for e in _validator().iter_errors(_one(objects, "LeaderWorkerSet"))]
    assert errors == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o["spec"]["leaderWorkerTemplate"].update(size="two"),
        lambda o: o["spec"]["leaderWorkerTemplate"].update(restartPolicy="Always"),
        lambda o: o["spec"]["leaderWorkerTemplate"].pop("workerTemplate"),
    ],
    ids=["size-not-int", "restart-policy", "no-worker-template"],
)
def test_the_schema_check_catches_a_broken_object(objects, mutate):
    obj = json.loads(json.dumps(_one(objects, "LeaderWorkerSet")))
    mutate(obj)
    assert list(_validator().iter_errors(obj))


def _pods(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    leader, worker = _templates(_one(objects, "LeaderWorkerSet"))
    return [
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": f"lws-{role}", "namespace": "mdeploy",
                      "labels": pod["metadata"]["labels"]},
         "spec": pod["spec"]}
        for role, pod in (("leader", leader), ("worker", worker))
    ]  # fmt: skip


def test_leader_and_worker_pods_conform_to_the_kubernetes_schema(objects):
    import kubernetes_validate

    for pod in _pods(objects):
        kubernetes_validate.validate(pod, "1.30.0", strict=True)


def test_checkov_on_the_group_pods_finds_nothing_beyond_the_allow_list(objects, tmp_path):
    from deploy.test_manifests import _checkov

    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]  # what CKV2_K8S_6 looks for
    for i, obj in enumerate([*_pods(objects), *policies]):
        (tmp_path / f"{i:02d}-{obj['metadata']['name']}.yaml").write_text(yaml.safe_dump(obj))
    proc = subprocess.run(
        [_checkov(), "-d", str(tmp_path), "--framework", "kubernetes", "-o", "json", "--quiet",
         "--skip-download"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    reports = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [c for r in reports for c in r["results"]["failed_checks"]]
    assert sum(r["summary"]["passed"] for r in reports) >= 40, "checkov scanned the pods"
    unexpected = {
        (c["check_id"], c["file_path"])
        for c in failed
        if c["check_id"] not in ALLOWED
        or (c["check_id"] in ("CKV_K8S_8", "CKV_K8S_9") and "leader" in c["file_path"])
    }
    assert not unexpected, unexpected


def test_hpa_scales_the_leader_worker_set(result):
    args = dataclasses.replace(result.resolved.args, replicas_min=1, replicas_max=3)
    objects = manifests(synth_args("kubernetes", args).to_json())
    ref = _one(objects, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"]) == ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet")
    assert "replicas" not in _one(objects, "LeaderWorkerSet")["spec"]


def test_bucket_sources_are_refused_for_multi_node(result):
    args = dataclasses.replace(result.resolved.args, model_source="s3://bucket/llama")
    with pytest.raises(InputError, match="multi-node replicas"):
        lws.lws_spec(args, _settings(), "img@sha256:" + "0" * 64, "sa", [])


def test_single_node_endpoints_keep_their_deployment(result):
    args = dataclasses.replace(
        result.resolved.args, extra={**result.resolved.args.extra, "nodes": "1"}
    )
    kinds = [o["kind"] for o in manifests(synth_args("kubernetes", args).to_json())]
    assert "Deployment" in kinds and "LeaderWorkerSet" not in kinds


def test_crd_problem():
    assert lws.crd_problem({"other.example.com"}) is not None
    assert lws.crd_problem({lws.CRD_NAME}) is None and lws.crd_problem(None) is None


@pytest.fixture
def api_server(tmp_path: Path):
    """A stand-in API server on 127.0.0.1 that serves (or not) the LeaderWorkerSet API."""
    served = {"lws": False}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path == "/apis/leaderworkerset.x-k8s.io/v1" and served["lws"]
            body = b'{"kind": "APIResourceList"}' if ok else b'{"message": "not found"}'
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    config = tmp_path / "kubeconfig"
    config.write_text(KUBECONFIG.replace("SERVER", f"http://127.0.0.1:{httpd.server_address[1]}"))
    yield config, served
    httpd.shutdown()
    thread.join(timeout=5)


KUBECONFIG = """\
apiVersion: v1
kind: Config
current-context: cw
contexts: [{name: cw, context: {cluster: c, user: u}}]
clusters: [{name: c, cluster: {server: "SERVER"}}]
users: [{name: u, user: {token: not-a-real-token}}]
"""


def test_crd_check_reads_api_discovery(api_server):
    config, served = api_server
    problem = lws.crd_check(None, [config])
    assert problem is not None and "not installed" in problem[0]
    assert "kubectl apply" in problem[1] and lws.LWS_VERSION in problem[1]
    served["lws"] = True
    assert lws.crd_check(None, [config]) is None


def test_up_stops_with_exit_3_when_the_cluster_lacks_leader_worker_set(
    api_server, result, monkeypatch
):
    from mdeploy.deploy.prereqs import check_placement
    from mdeploy.errors import PrerequisiteError
    from mdeploy.targets import get_target

    config, _ = api_server
    monkeypatch.setenv("KUBECONFIG", str(config))
    args = dataclasses.replace(result.resolved.args, region="cluster")  # no node-region check
    with pytest.raises(PrerequisiteError, match="LeaderWorkerSet") as caught:
        check_placement(get_target("kubernetes"), args)
    assert caught.value.exit_code == 3
    single = dataclasses.replace(args, extra={**args.extra, "nodes": "1"})
    check_placement(get_target("kubernetes"), single)  # a Deployment needs no add-on


def _settings():
    from mdeploy.targets.kubernetes.settings import KubernetesSettings

    return KubernetesSettings.from_stack({})


def test_a_fractional_replica_pod_asks_for_its_gpus_only(tmp_path: Path):
    path = tmp_path / "spec.yaml"
    path.write_text(
        SPEC.replace("meta-llama/Llama-3.1-405B-Instruct", "mistralai/Mistral-7B-Instruct-v0.3")
        .replace("gpus: [H100]", "gpus: [L40S]")
        .replace("DIGEST", "ab" * 32)
    )
    result = synth(load_spec(path), "coreweave")
    assert result.resolved.candidate.node_gpu_count == 8
    (deployment,) = [o for o in manifests(result.to_json()) if o["kind"] == "Deployment"]
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    gpus = str(result.resolved.candidate.gpu_count)
    assert gpus in ("1", "2") and c["resources"]["limits"]["nvidia.com/gpu"] == gpus
    assert _flag(_engine_args(deployment["spec"]["template"]), "--tensor-parallel-size") == gpus
