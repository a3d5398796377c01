"""The Kubernetes / CoreWeave component under Pulumi mocks: what it declares, and how."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from mdeploy.errors import InputError
from mdeploy.targets.kubernetes.component import TYPE_TOKEN, KubernetesEndpoint

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SECRET = "kubernetes:core/v1:Secret"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
NAMESPACE = "kubernetes:core/v1:Namespace"
PROVIDER = "pulumi:providers:kubernetes"
CANARY = "hf_canaryTOKENvalue0123456789abcdefghijkl"


def _deploy(mocks, args, config=None):
    if config:
        mocks.set_config(config)
    component = mocks.run(lambda: KubernetesEndpoint("ep", args))
    return component, mocks.one(DEPLOYMENT).inputs


def _container(deployment_inputs):
    (container,) = deployment_inputs["spec"]["template"]["spec"]["containers"]
    return container


def _env(container):
    return {e["name"]: e for e in container["env"]}


def test_gpu_limits_and_requests_match_gpu_count(pulumi_mocks, endpoint_args_coreweave):
    _, dep = _deploy(pulumi_mocks, endpoint_args_coreweave)
    resources = _container(dep)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "8"
    assert resources["requests"]["nvidia.com/gpu"] == "8"
    assert resources["limits"]["memory"] == resources["requests"]["memory"]


def _terms(dep):
    affinity = dep["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    selector = affinity["requiredDuringSchedulingIgnoredDuringExecution"]
    return [t["matchExpressions"] for t in selector["nodeSelectorTerms"]]


def _in(key, value):
    return {"key": key, "operator": "In", "values": [value]}


def test_node_affinity_on_gpu_class_and_region(pulumi_mocks, endpoint_args_coreweave):
    _, dep = _deploy(pulumi_mocks, endpoint_args_coreweave)
    gpu = _in("gpu.nvidia.com/class", "H100_NVLINK_80GB")
    # Terms are ORed: the GPU class in every term, with the region or the zone label.
    assert _terms(dep) == [
        [gpu, _in("topology.kubernetes.io/region", "US-EAST-04A")],
        [gpu, _in("topology.kubernetes.io/zone", "US-EAST-04A")],
    ]
    pod = dep["spec"]["template"]["spec"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]


def test_a_generic_cluster_pool_is_not_pinned_to_a_region(pulumi_mocks, endpoint_args_coreweave):
    args = dataclasses.replace(endpoint_args_coreweave, region="cluster")
    _, dep = _deploy(pulumi_mocks, args)
    assert _terms(dep) == [[_in("gpu.nvidia.com/class", "H100_NVLINK_80GB")]]


def test_affinity_falls_back_to_instance_type(pulumi_mocks, endpoint_args_coreweave):
    extra = {k: v for k, v in endpoint_args_coreweave.extra.items() if k != "gpu_class"}
    args = dataclasses.replace(endpoint_args_coreweave, extra=extra)
    _, dep = _deploy(pulumi_mocks, args)
    for term in _terms(dep):
        assert term[0] == _in("node.kubernetes.io/instance-type", "gd-8xh100ib-i128")


def test_custom_gpu_class_label(pulumi_mocks, endpoint_args_coreweave):
    extra = {**endpoint_args_coreweave.extra, "gpu_class_label": "example.com/gpu"}
    _, dep = _deploy(pulumi_mocks, dataclasses.replace(endpoint_args_coreweave, extra=extra))
    assert _terms(dep)[0][0]["key"] == "example.com/gpu"


def test_probes_use_adapter_routes_and_startup_budget(pulumi_mocks, endpoint_args_coreweave):
    from mdeploy.serve.contract import DEFAULT_PORT, LIVENESS_ROUTE, READINESS_ROUTE

    _, dep = _deploy(pulumi_mocks, endpoint_args_coreweave)
    c = _container(dep)
    assert c["ports"] == [{"containerPort": DEFAULT_PORT, "name": "http"}]
    assert c["readinessProbe"]["httpGet"]["path"] == READINESS_ROUTE
    assert c["livenessProbe"]["httpGet"]["path"] == LIVENESS_ROUTE
    startup = c["startupProbe"]
    assert startup["httpGet"]["path"] == READINESS_ROUTE
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert (
        endpoint_args_coreweave.startup_timeout_s
        <= budget
        < (endpoint_args_coreweave.startup_timeout_s + startup["periodSeconds"])
    )


def test_security_context_is_restricted(pulumi_mocks, endpoint_args_coreweave):
    _, dep = _deploy(pulumi_mocks, endpoint_args_coreweave)
    pod = dep["spec"]["template"]["spec"]
    c = _container(dep)
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "mistral-7b-chat"
    assert pod["terminationGracePeriodSeconds"] > 0
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert {"/tmp", "/dev/shm", "/cache"} <= set(mounts)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["sizeLimit"]
    hf_home = _env(c)["HF_HOME"]["value"]
    assert hf_home.startswith("/cache")


def _image_env() -> dict[str, str]:
    """The ENV of templates/Dockerfile (one ENV instruction, `\\`-continued KEY=VALUE lines)."""
    text = (Path(__file__).resolve().parents[2] / "templates" / "Dockerfile").read_text()
    joined = text.replace("\\\n", " ")
    (line,) = [ln for ln in joined.splitlines() if ln.startswith("ENV ")]
    return dict(item.split("=", 1) for item in line.split()[1:])


def test_every_path_the_engine_writes_is_on_a_volume(pulumi_mocks, endpoint_args_coreweave):
    """
    The root filesystem is read-only: each location vLLM, Triton, the Hub client and the
    entrypoint write to (the image's /home/mdeploy paths, as the pod overrides them) must be
    on a mounted volume, else the engine dies creating its torch.compile cache.
    """
    _, dep = _deploy(pulumi_mocks, endpoint_args_coreweave)
    c = _container(dep)
    image_env = _image_env()
    env = {**image_env, **{k: v["value"] for k, v in _env(c).items() if "value" in v}}
    mounts = [m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")]
    writable = ("HOME", "XDG_CACHE_HOME", "HF_HOME", "MDEPLOY_WEIGHTS_DIR")
    assert set(writable) <= set(image_env)
    for name in writable:
        path = env[name]
        assert any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts), (name, path)
    # Nothing still points into the image's read-only home.
    assert not [k for k, v in env.items() if v.startswith(image_env["HOME"])]
    # Downloads and compile caches share the volume sized for the weights, not /tmp (1 GiB).
    assert env["XDG_CACHE_HOME"].startswith("/cache/") and env["MDEPLOY_WEIGHTS_DIR"].startswith(
        "/cache/"
    )


def test_no_service_link_variables(pulumi_mocks, endpoint_args_coreweave):
    # A Service named `vllm` would inject VLLM_PORT=tcp://..., which vLLM refuses at start.
    _, dep = _deploy(pulumi_mocks, endpoint_args_coreweave)
    assert dep["spec"]["template"]["spec"]["enableServiceLinks"] is False


def test_namespace_is_pod_security_restricted(pulumi_mocks, endpoint_args_coreweave):
    _deploy(pulumi_mocks, endpoint_args_coreweave)
    labels = pulumi_mocks.one(NAMESPACE).inputs["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_existing_namespace_is_not_created(pulumi_mocks, endpoint_args_coreweave):
    _, dep = _deploy(pulumi_mocks, endpoint_args_coreweave, {"mdeploy:createNamespace": "false"})
    assert pulumi_mocks.by_type(NAMESPACE) == []
    assert dep["metadata"]["namespace"] == "mdeploy"


def test_engine_settings_reach_the_container_as_env(pulumi_mocks, endpoint_args_coreweave):
    _, dep = _deploy(pulumi_mocks, endpoint_args_coreweave)
    env = _env(_container(dep))
    assert json.loads(env["MDEPLOY_ENGINE_ARGS"]["value"]) == list(
        endpoint_args_coreweave.engine_args
    )
    assert env["MDEPLOY_MODEL_ID"]["value"] == endpoint_args_coreweave.model_id
    assert env["MDEPLOY_MODEL_SOURCE"]["value"] == endpoint_args_coreweave.model_source
    assert env["MDEPLOY_MODEL_REVISION"]["value"] == endpoint_args_coreweave.model_revision
    assert env["MDEPLOY_SERVED_MODEL_NAME"]["value"] == endpoint_args_coreweave.served_model_name


def test_no_inline_secret_values(pulumi_mocks, endpoint_args_coreweave, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", CANARY)
    secrets = {"HF_TOKEN": "env:HF_TOKEN", "DB_PASSWORD": "k8s:db-creds/password"}
    args = dataclasses.replace(endpoint_args_coreweave, secrets=secrets)
    _, dep = _deploy(pulumi_mocks, args)
    env = _env(_container(dep))
    for name in ("HF_TOKEN", "DB_PASSWORD", "VLLM_API_KEY"):
        assert "value" not in env[name], name
        assert "secretKeyRef" in env[name]["valueFrom"]
    assert env["DB_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "db-creds",
        "key": "password",
    }
    # The env: value lives only in a Secret, and there as a Pulumi secret.
    assert CANARY not in json.dumps(dep)
    secret = pulumi_mocks.one(SECRET).inputs
    wrapped = secret["stringData"]
    assert wrapped.get("4dabf18193072939515e22adb298388d") == "1b47061264138c4ac30d75fd1eb44270"
    assert set(wrapped["value"]) == {"HF_TOKEN", "VLLM_API_KEY"}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]


def test_api_key_is_generated_once_and_secret(pulumi_mocks, endpoint_args_coreweave):
    component, _ = _deploy(pulumi_mocks, endpoint_args_coreweave)
    assert pulumi_mocks.one("random:index/randomPassword:RandomPassword").name == "api-key"
    assert component.api_key is not None and pulumi_mocks.is_secret(component.api_key)


def test_spec_supplied_api_key_is_used_instead(pulumi_mocks, endpoint_args_coreweave):
    secrets = {"VLLM_API_KEY": "k8s:endpoint-auth/key"}
    _, dep = _deploy(pulumi_mocks, dataclasses.replace(endpoint_args_coreweave, secrets=secrets))
    assert pulumi_mocks.by_type("random:index/randomPassword:RandomPassword") == []
    assert pulumi_mocks.by_type(SECRET) == []
    ref = _env(_container(dep))["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "endpoint-auth", "key": "key"}


def test_cloud_secret_manager_refs_are_refused(pulumi_mocks, endpoint_args_coreweave):
    args = dataclasses.replace(endpoint_args_coreweave, secrets={"HF_TOKEN": "aws-sm:arn:x"})
    with pytest.raises(InputError, match=r"serving\.secrets\.HF_TOKEN"):
        pulumi_mocks.run(lambda: KubernetesEndpoint("ep", args))


def test_image_is_pinned_by_digest(pulumi_mocks, endpoint_args_coreweave):
    component, dep = _deploy(pulumi_mocks, endpoint_args_coreweave)
    assert _container(dep)["image"] == endpoint_args_coreweave.image
    assert pulumi_mocks.resolve(component.image) == endpoint_args_coreweave.image
    assert _container(dep)["image"].endswith("@" + endpoint_args_coreweave.image_digest)


def test_configured_registry_keeps_the_digest(pulumi_mocks, endpoint_args_coreweave):
    repo = "registry.cluster.local:5000/ml/vllm"
    component, dep = _deploy(pulumi_mocks, endpoint_args_coreweave, {"mdeploy:registry": repo})
    assert _container(dep)["image"] == f"{repo}@{endpoint_args_coreweave.image_digest}"
    assert pulumi_mocks.resolve(component.repository_url) == repo


def test_hpa_and_pdb_when_replicas_can_grow(pulumi_mocks, endpoint_args_coreweave):
    _, dep = _deploy(pulumi_mocks, endpoint_args_coreweave)
    hpa = pulumi_mocks.one(HPA).inputs["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 2)
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "mistral-7b-chat",
    }
    assert "replicas" not in dep["spec"]  # the HPA owns the count
    pdb = pulumi_mocks.one(PDB).inputs["spec"]
    assert pdb["maxUnavailable"] == 1
    assert pdb["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]


def test_fixed_replicas_have_no_hpa(pulumi_mocks, endpoint_args_coreweave):
    args = dataclasses.replace(endpoint_args_coreweave, replicas_min=2, replicas_max=2)
    _, dep = _deploy(pulumi_mocks, args)
    assert pulumi_mocks.by_type(HPA) == []
    assert dep["spec"]["replicas"] == 2


def test_network_policy_admits_only_the_service_port(pulumi_mocks, endpoint_args_coreweave):
    _deploy(pulumi_mocks, endpoint_args_coreweave, {"mdeploy:allowedNamespaces": "gateway, ci"})
    spec = pulumi_mocks.one(NETPOL).inputs["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"port": 8080, "protocol": "TCP"}]
    values = rule["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"]
    assert values == ["gateway", "ci"]


def test_ingress_only_with_a_host(pulumi_mocks, endpoint_args_coreweave):
    config = {"mdeploy:ingressHost": "llm.example.com", "mdeploy:ingressTlsSecret": "llm-tls"}
    component, _ = _deploy(pulumi_mocks, endpoint_args_coreweave, config)
    ingress = pulumi_mocks.one(INGRESS).inputs
    assert ingress["spec"]["rules"][0]["host"] == "llm.example.com"
    assert ingress["spec"]["tls"] == [{"hosts": ["llm.example.com"], "secretName": "llm-tls"}]
    assert pulumi_mocks.resolve(component.endpoint_url) == "https://llm.example.com"


def test_no_ingress_by_default(pulumi_mocks, endpoint_args_coreweave):
    component, _ = _deploy(pulumi_mocks, endpoint_args_coreweave)
    assert pulumi_mocks.by_type(INGRESS) == []
    url = pulumi_mocks.resolve(component.endpoint_url)
    assert url == "http://mistral-7b-chat.mdeploy.svc.cluster.local"


def test_iam_auth_needs_an_auth_service(pulumi_mocks, endpoint_args_coreweave):
    args = dataclasses.replace(endpoint_args_coreweave, auth="iam")
    with pytest.raises(InputError, match=r"serving\.auth") as err:
        pulumi_mocks.run(lambda: KubernetesEndpoint("ep", args))
    assert "mdeploy:ingressAuthUrl" in (err.value.hint or "")


def test_iam_auth_without_an_ingress_is_refused(pulumi_mocks, endpoint_args_coreweave):
    # The auth URL is enforced by the Ingress only: with no host there is no Ingress, and the
    # endpoint would run with no authentication at all.
    args = dataclasses.replace(endpoint_args_coreweave, auth="iam")
    pulumi_mocks.set_config({"mdeploy:ingressAuthUrl": "https://auth.example.com/check"})
    with pytest.raises(InputError, match=r"serving\.auth") as err:
        pulumi_mocks.run(lambda: KubernetesEndpoint("ep", args))
    assert "mdeploy:ingressHost" in (err.value.hint or "")


def test_iam_auth_with_host_and_auth_url_is_accepted(pulumi_mocks, endpoint_args_coreweave):
    args = dataclasses.replace(endpoint_args_coreweave, auth="iam")
    config = {
        "mdeploy:ingressHost": "llm.example.com",
        "mdeploy:ingressAuthUrl": "https://auth.example.com/check",
    }
    _deploy(pulumi_mocks, args, config)
    notes = pulumi_mocks.one(INGRESS).inputs["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/auth-url"] == "https://auth.example.com/check"


def test_outputs_and_parenting(pulumi_mocks, endpoint_args_coreweave):
    component, _ = _deploy(pulumi_mocks, endpoint_args_coreweave)
    urn = pulumi_mocks.resolve(component.urn)
    top = pulumi_mocks.one(TYPE_TOKEN)
    assert top.urn == urn
    children = [r for r in pulumi_mocks.resources if r.type != TYPE_TOKEN]
    assert len(children) >= 8
    assert all(r.parent == urn for r in children), [r.name for r in children if r.parent != urn]
    assert pulumi_mocks.resolve(component.endpoint_name) == "mistral-7b-chat"
    assert pulumi_mocks.resolve(component.repository_url) == "registry.example.com/mdeploy/vllm"
    assert component.repository is None  # no registry resource: nothing for phase 1 to create


def test_kube_context_gets_an_explicit_provider(pulumi_mocks, endpoint_args_coreweave):
    extra = {**endpoint_args_coreweave.extra, "kube_context": "cw-prod"}
    _deploy(pulumi_mocks, dataclasses.replace(endpoint_args_coreweave, extra=extra))
    provider = pulumi_mocks.one(PROVIDER)
    assert provider.inputs["context"] == "cw-prod"
    deployment = pulumi_mocks.one(DEPLOYMENT)
    assert deployment.provider and deployment.provider.startswith(provider.urn)
