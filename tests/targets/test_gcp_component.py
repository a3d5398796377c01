"""The Vertex AI component under Pulumi mocks: what it would create, and how it is wired."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pulumi
import pytest
from pulumi.runtime import rpc

from mdeploy.errors import InputError
from mdeploy.serve.contract import (
    VERTEX_DEFAULT_HEALTH_ROUTE,
    VERTEX_DEFAULT_PORT,
    VERTEX_DEFAULT_PREDICT_ROUTE,
)
from mdeploy.targets.base import EndpointArgs
from mdeploy.targets.gcp.component import GcpEndpoint, parse_secret_ref

PROJECT = "my-proj-123"
SECRET_VALUE = "hf_TESTVALUEnotarealtoken0123456789"
AGENT = "serviceAccount:service-1@gcp-sa-aiplatform.iam.gserviceaccount.com"
DYNAMIC = "pulumi-python:dynamic:Resource"
REPOSITORY = "gcp:artifactregistry/repository:Repository"
ENDPOINT = "gcp:vertex/aiEndpoint:AiEndpoint"
SECRET = "gcp:secretmanager/secret:Secret"
SECRET_VERSION = "gcp:secretmanager/secretVersion:SecretVersion"
SECRET_IAM = "gcp:secretmanager/secretIamMember:SecretIamMember"
PROJECT_IAM = "gcp:projects/iAMMember:IAMMember"
BUCKET_IAM = "gcp:storage/bucketIAMMember:BucketIAMMember"
REPO_IAM = "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember"
ACCOUNT = "gcp:serviceaccount/account:Account"


@pytest.fixture
def session(pulumi_mocks: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The shared mock session with a project configured and HF_TOKEN exported."""
    monkeypatch.setenv("HF_TOKEN", SECRET_VALUE)
    pulumi_mocks.set_config({"mdeploy:project": PROJECT})
    # MockMonitor.Invoke iterates the failures list; the shared mocks answer None for it.
    answer = pulumi_mocks.mocks.call
    monkeypatch.setattr(pulumi_mocks.mocks, "call", lambda a: (answer(a)[0], answer(a)[1] or []))
    yield pulumi_mocks


def _deploy(session: Any, args: EndpointArgs) -> GcpEndpoint:
    return session.run(lambda: GcpEndpoint("ep", args))


def _model_inputs(session: Any) -> dict[str, Any]:
    return session.one(DYNAMIC).inputs


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict) and rpc._special_sig_key in value:
        return value["value"]
    return value


def test_image_is_the_same_digest_in_an_artifact_registry_of_the_endpoint_region(
    session: Any, endpoint_args_gcp: EndpointArgs
) -> None:
    comp = _deploy(session, endpoint_args_gcp)
    repo = session.one(REPOSITORY)
    assert repo.inputs["location"] == endpoint_args_gcp.region == "europe-west4"
    assert repo.inputs["format"] == "DOCKER"
    assert repo.inputs["dockerConfig"] == {"immutableTags": True}
    digest = endpoint_args_gcp.image_digest
    expected = f"europe-west4-docker.pkg.dev/{PROJECT}/{repo.inputs['repositoryId']}/vllm"
    assert session.resolve(comp.repository_url) == expected
    assert session.resolve(comp.image) == f"{expected}@{digest}"
    assert _model_inputs(session)["image"] == f"{expected}@{digest}"
    assert session.one(ENDPOINT).inputs["location"] == "europe-west4"
    assert comp.repository is not None


def test_model_deployment_inputs_come_from_the_endpoint_args(
    session: Any, endpoint_args_gcp: EndpointArgs
) -> None:
    _deploy(session, endpoint_args_gcp)
    model = session.one(DYNAMIC)
    inputs = model.inputs
    assert "__provider" in inputs  # the pickled provider travels with the resource
    assert inputs["machine_type"] == "g2-standard-8"
    assert inputs["accelerator_type"] == "NVIDIA_L4"
    assert inputs["accelerator_count"] == endpoint_args_gcp.gpu_count == 1
    assert (inputs["min_replicas"], inputs["max_replicas"]) == (1, 2)
    assert inputs["port"] == VERTEX_DEFAULT_PORT
    assert inputs["predict_route"] == VERTEX_DEFAULT_PREDICT_ROUTE
    assert inputs["health_route"] == VERTEX_DEFAULT_HEALTH_ROUTE
    assert inputs["deployment_timeout_s"] == endpoint_args_gcp.startup_timeout_s
    assert inputs["region"] == "europe-west4"
    assert inputs["project"] == PROJECT
    assert inputs["private"] is False
    endpoint = session.one(ENDPOINT).inputs
    assert inputs["endpoint"] == (
        f"projects/{PROJECT}/locations/europe-west4/endpoints/{endpoint['name']}"
    )
    assert inputs["service_account"] == (
        f"{session.one(ACCOUNT).inputs['accountId']}@{PROJECT}.iam.gserviceaccount.com"
    )


def test_container_env_has_the_engine_settings_and_only_secret_references(
    session: Any, endpoint_args_gcp: EndpointArgs
) -> None:
    _deploy(session, endpoint_args_gcp)
    env = _unwrap(_model_inputs(session)["environment"])
    assert json.loads(env["MDEPLOY_ENGINE_ARGS"]) == list(endpoint_args_gcp.engine_args)
    assert env["MDEPLOY_MODEL_ID"] == endpoint_args_gcp.model_id
    assert env["MDEPLOY_MODEL_REVISION"] == endpoint_args_gcp.model_revision
    assert env["MDEPLOY_SERVED_MODEL_NAME"] == endpoint_args_gcp.served_model_name
    assert env["MDEPLOY_MODEL_SOURCE"] == endpoint_args_gcp.model_source
    assert "HF_TOKEN" not in env
    refs = json.loads(env["MDEPLOY_SECRET_REFS"])
    version = session.one(SECRET_VERSION)
    assert refs == {"HF_TOKEN": f"gcp-sm:{version.name}-id"}  # the version's full name (id)


def test_secret_value_only_in_the_secret_version_and_marked_secret(
    session: Any, endpoint_args_gcp: EndpointArgs
) -> None:
    _deploy(session, endpoint_args_gcp)
    version = session.one(SECRET_VERSION)
    data = version.inputs["secretData"]
    assert isinstance(data, dict) and data[rpc._special_sig_key] == rpc._special_secret_sig
    assert data["value"] == SECRET_VALUE
    for resource in session.resources:
        if resource is version:
            continue
        visible = {k: v for k, v in resource.inputs.items() if k != "__provider"}
        assert SECRET_VALUE not in json.dumps(visible, default=str), resource.name
    secret = session.one(SECRET).inputs
    assert secret["replication"] == {"userManaged": {"replicas": [{"location": "europe-west4"}]}}


def test_runtime_identity_is_least_privilege_and_resource_scoped(
    session: Any, endpoint_args_gcp: EndpointArgs
) -> None:
    args = dataclasses.replace(endpoint_args_gcp, model_source="gs://weights-bucket/mistral")
    _deploy(session, args)
    member = "serviceAccount:" + _model_inputs(session)["service_account"]
    roles = [r.inputs["role"] for r in session.resources if "role" in r.inputs]
    assert not {"roles/owner", "roles/editor", "roles/viewer"} & set(roles)
    assert not any(role.endswith((".admin", ".user")) for role in roles)
    project_roles = {r.inputs["role"] for r in session.by_type(PROJECT_IAM)}
    assert project_roles == {"roles/logging.logWriter", "roles/monitoring.metricWriter"}
    assert all(r.inputs["member"] == member for r in session.by_type(PROJECT_IAM))
    access = session.one(SECRET_IAM).inputs
    secret_id = session.one(SECRET).inputs["secretId"]
    assert access["role"] == "roles/secretmanager.secretAccessor"
    assert access["secretId"] == f"projects/{PROJECT}/secrets/{secret_id}"
    assert access["member"] == member
    bucket = session.one(BUCKET_IAM).inputs
    assert (bucket["bucket"], bucket["role"]) == ("weights-bucket", "roles/storage.objectViewer")
    pull = session.one(REPO_IAM).inputs
    assert (pull["role"], pull["member"]) == ("roles/artifactregistry.reader", AGENT)
    assert pull["repository"] == session.one(REPOSITORY).inputs["repositoryId"]


def test_no_bucket_grant_for_hub_weights(session: Any, endpoint_args_gcp: EndpointArgs) -> None:
    _deploy(session, endpoint_args_gcp)
    assert session.by_type(BUCKET_IAM) == []


def test_every_child_is_parented_and_the_model_waits_for_its_grants(
    session: Any, endpoint_args_gcp: EndpointArgs
) -> None:
    comp = _deploy(session, endpoint_args_gcp)
    urn = session.resolve(comp.urn)
    children = [r for r in session.resources if r.type != "mdeploy:gcp:Endpoint"]
    assert len(children) >= 9
    assert all(r.parent == urn for r in children), [r.name for r in children if r.parent != urn]
    assert all(len(r.name) <= 24 for r in children)  # short local names
    depends = session.one(DYNAMIC).depends_on
    for token in (REPO_IAM, SECRET_IAM, PROJECT_IAM):
        assert {r.urn for r in session.by_type(token)} <= set(depends), token
    pull = session.one(REPO_IAM).depends_on
    assert {session.one(REPOSITORY).urn, session.one(ENDPOINT).urn} <= set(pull)


def test_outputs_are_registered(
    session: Any, endpoint_args_gcp: EndpointArgs, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered: dict[str, Any] = {}
    original = pulumi.ComponentResource.register_outputs

    def spy(self: pulumi.ComponentResource, outputs: dict[str, Any]) -> None:
        if isinstance(self, GcpEndpoint):
            registered.update(outputs)
        original(self, outputs)

    monkeypatch.setattr(pulumi.ComponentResource, "register_outputs", spy)
    comp = _deploy(session, endpoint_args_gcp)
    required = {"endpoint_name", "endpoint_url", "image", "repository_url"}
    assert required <= set(registered)
    for key, value in registered.items():
        assert value is getattr(comp, key), key
    name = session.resolve(comp.endpoint_name)
    assert session.resolve(comp.endpoint_url) == (
        f"https://europe-west4-aiplatform.googleapis.com/v1/{name}:rawPredict"
    )


def test_gcp_labels_on_every_labelled_resource(
    session: Any, endpoint_args_gcp: EndpointArgs
) -> None:
    args = dataclasses.replace(endpoint_args_gcp, labels={"Team": "Platform Eng"})
    _deploy(session, args)
    labelled = [r for r in session.resources if "labels" in r.inputs]
    assert {r.type for r in labelled} >= {REPOSITORY, ENDPOINT, SECRET, DYNAMIC}
    for resource in labelled:
        assert resource.inputs["labels"]["team"] == "platform-eng"
        assert resource.inputs["labels"]["managed-by"] == "mdeploy"


def test_existing_repository_and_service_account_are_used_not_created(
    session: Any, endpoint_args_gcp: EndpointArgs
) -> None:
    email = f"runner@{PROJECT}.iam.gserviceaccount.com"
    session.set_config(
        {"mdeploy:existingRepository": "shared", "mdeploy:serviceAccountEmail": email}
    )
    comp = _deploy(session, endpoint_args_gcp)
    repo = session.one(REPOSITORY)
    assert repo.read  # a `get`, never a creation
    assert session.resolve(comp.image).startswith(
        f"europe-west4-docker.pkg.dev/{PROJECT}/shared/vllm@sha256:"
    )
    assert session.by_type(ACCOUNT) == [] and session.by_type(PROJECT_IAM) == []
    assert session.one(SECRET_IAM).inputs["member"] == f"serviceAccount:{email}"
    assert _model_inputs(session)["service_account"] == email


def test_private_network_endpoint_gets_its_own_id(
    session: Any, endpoint_args_gcp: EndpointArgs
) -> None:
    _deploy(session, endpoint_args_gcp)
    public_id = session.one(ENDPOINT).inputs["name"]
    network = "projects/123456/global/networks/vpc"
    session.set_config({"mdeploy:network": network})
    session.monitor.recorded.clear()
    _deploy(session, endpoint_args_gcp)
    endpoint = session.one(ENDPOINT).inputs
    assert endpoint["network"] == network
    assert endpoint["name"] != public_id
    assert _model_inputs(session)["private"] is True


def test_gcp_secret_manager_reference_is_granted_not_copied(
    session: Any, endpoint_args_gcp: EndpointArgs
) -> None:
    args = dataclasses.replace(
        endpoint_args_gcp, secrets={"HF_TOKEN": "gcp-sm:projects/shared-sec/secrets/hf/versions/4"}
    )
    _deploy(session, args)
    assert session.by_type(SECRET) == [] and session.by_type(SECRET_VERSION) == []
    access = session.one(SECRET_IAM).inputs
    assert (access["secretId"], access["project"]) == (
        "projects/shared-sec/secrets/hf",
        "shared-sec",
    )
    env = _unwrap(_model_inputs(session)["environment"])
    assert json.loads(env["MDEPLOY_SECRET_REFS"]) == {
        "HF_TOKEN": "gcp-sm:projects/shared-sec/secrets/hf/versions/4"
    }


def test_missing_env_secret_is_an_input_error_without_value(
    session: Any, endpoint_args_gcp: EndpointArgs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(InputError, match=r"env:HF_TOKEN is not set"):
        _deploy(session, endpoint_args_gcp)


def test_secret_kinds_vertex_cannot_read_are_refused(
    session: Any, endpoint_args_gcp: EndpointArgs
) -> None:
    args = dataclasses.replace(endpoint_args_gcp, secrets={"K": "aws-sm:arn:aws:secretsmanager:x"})
    with pytest.raises(InputError, match="aws-sm"):
        _deploy(session, args)


def test_parse_secret_ref_forms() -> None:
    assert parse_secret_ref("hf") == (None, "hf", "latest")
    assert parse_secret_ref("projects/p/secrets/hf") == ("p", "hf", "latest")
    assert parse_secret_ref("projects/p/secrets/hf/versions/7") == ("p", "hf", "7")
    with pytest.raises(InputError):
        parse_secret_ref("projects/p/hf")


def test_optional_settings_reach_their_resources(
    session: Any, endpoint_args_gcp: EndpointArgs
) -> None:
    key = "projects/k/locations/europe-west4/keyRings/r/cryptoKeys/c"
    session.set_config(
        {
            "mdeploy:kmsKeyName": key,
            "mdeploy:dedicatedEndpoint": "true",
            "mdeploy:repositoryKeepVersions": "5",
            "mdeploy:acceleratorDutyCycle": "70",
        }
    )
    _deploy(session, endpoint_args_gcp)
    repo = session.one(REPOSITORY).inputs
    assert repo["kmsKeyName"] == key
    assert {p["action"] for p in repo["cleanupPolicies"]} == {"KEEP", "DELETE"}
    keep = next(p for p in repo["cleanupPolicies"] if p["action"] == "KEEP")
    assert keep["mostRecentVersions"]["keepCount"] == 5
    endpoint = session.one(ENDPOINT).inputs
    assert endpoint["encryptionSpec"] == {"kmsKeyName": key}
    assert endpoint["dedicatedEndpointEnabled"] is True
    model = _model_inputs(session)
    assert (model["kms_key_name"], model["duty_cycle"]) == (key, 70)
