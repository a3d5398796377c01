"""
The Vertex dynamic provider against a fake `aiplatform` module.

The fake keeps an endpoint's deployed models and traffic split the way Vertex does and
checks every call it receives against the installed google-cloud-aiplatform signatures
(`inspect.signature(...).bind`), so an argument name the SDK does not have fails here.
"""

from __future__ import annotations

import base64
import inspect
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import dill
import pytest
from google.api_core.exceptions import NotFound
from google.cloud import aiplatform as sdk
from google.cloud.aiplatform_v1.types import AcceleratorType
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime.rpc import wrap_rpc_secret

from mdeploy.targets.gcp import vertex_model
from mdeploy.targets.gcp.vertex_model import (
    VertexModelDeployment,
    VertexModelDeploymentProvider,
    deploy_kwargs,
    split_without,
    upload_kwargs,
)

ENDPOINT = "projects/my-proj-123/locations/europe-west4/endpoints/7933852668"
IMAGE = "europe-west4-docker.pkg.dev/my-proj-123/repo/vllm@sha256:" + "ab" * 32
SA = "md-m-default@my-proj-123.iam.gserviceaccount.com"


def _bind(function: Any, *args: Any, **kwargs: Any) -> None:
    """Fail like Python would if the real SDK function cannot take these arguments."""
    inspect.signature(function).bind(*args, **kwargs)


@dataclass
class Deployed:
    id: str
    model: str
    model_version_id: str
    display_name: str
    dedicated_resources: Any
    service_account: str


@dataclass
class FakeVertex:
    """One project's models and one endpoint, plus every SDK call made, in order."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    versions: dict[str, list[str]] = field(default_factory=dict)  # model name -> versions
    deployed: list[Deployed] = field(default_factory=list)
    split: dict[str, int] = field(default_factory=dict)
    endpoint_exists: bool = True
    fail_versions: set[str] = field(default_factory=set)
    _ids: int = 100

    def next_id(self) -> str:
        self._ids += 1
        return str(self._ids)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def kwargs(self, name: str) -> list[dict[str, Any]]:
        return [kw for n, kw in self.calls if n == name]

    def module(self) -> Any:
        """A stand-in for `google.cloud.aiplatform` bound to this state."""
        return SimpleNamespace(
            Model=_model_class(self),
            Endpoint=_endpoint_class(self, sdk.Endpoint),
            PrivateEndpoint=_endpoint_class(self, sdk.PrivateEndpoint),
            models=SimpleNamespace(ModelRegistry=_registry_class(self)),
        )


def _model_class(cloud: FakeVertex) -> type:
    class Model:
        def __init__(self, model_name: str, **kwargs: Any) -> None:
            _bind(sdk.Model.__init__, self, model_name, **kwargs)
            cloud.calls.append(("Model", {"model_name": model_name, **kwargs}))
            if model_name not in cloud.versions:
                raise NotFound(f"{model_name} not found")
            self.resource_name = model_name
            self.version_id = kwargs.get("version") or cloud.versions[model_name][-1]

        @classmethod
        def upload(cls, **kwargs: Any) -> Model:
            _bind(sdk.Model.upload, **kwargs)
            cloud.calls.append(("upload", kwargs))
            name = kwargs.get("parent_model") or f"projects/1/locations/r/models/{cloud.next_id()}"
            versions = cloud.versions.setdefault(name, [])
            versions.append(str(len(versions) + 1))
            model = cls.__new__(cls)
            model.resource_name, model.version_id = name, versions[-1]
            return model

        def deploy(self, **kwargs: Any) -> None:
            _bind(sdk.Model.deploy, self, **kwargs)
            cloud.calls.append(("deploy", {**kwargs, "version": self.version_id}))
            if self.version_id in cloud.fail_versions:
                raise RuntimeError("replicas never became healthy")
            new = Deployed(
                id=cloud.next_id(),
                model=self.resource_name,
                model_version_id=self.version_id,
                display_name=kwargs["deployed_model_display_name"],
                dedicated_resources=SimpleNamespace(
                    machine_spec=SimpleNamespace(
                        machine_type=kwargs["machine_type"],
                        accelerator_type=AcceleratorType[kwargs["accelerator_type"]],
                        accelerator_count=kwargs["accelerator_count"],
                    ),
                    min_replica_count=kwargs["min_replica_count"],
                    max_replica_count=kwargs["max_replica_count"],
                ),
                service_account=kwargs["service_account"],
            )
            cloud.deployed.append(new)
            cloud.split = {k: 0 for k in cloud.split} | {new.id: kwargs["traffic_percentage"]}

        def delete(self, **kwargs: Any) -> None:
            _bind(sdk.Model.delete, self, **kwargs)
            cloud.calls.append(("delete", {"model": self.resource_name}))
            if any(d.model == self.resource_name for d in cloud.deployed):
                raise RuntimeError("FailedPrecondition: model is deployed")
            del cloud.versions[self.resource_name]

    return Model


def _endpoint_class(cloud: FakeVertex, real: type) -> type:
    class Endpoint:
        def __init__(self, endpoint_name: str, **kwargs: Any) -> None:
            _bind(real.__init__, self, endpoint_name, **kwargs)
            cloud.calls.append((real.__name__, {"endpoint_name": endpoint_name, **kwargs}))
            if not cloud.endpoint_exists:
                raise NotFound(f"{endpoint_name} not found")
            self.resource_name = endpoint_name

        @property
        def traffic_split(self) -> dict[str, int]:
            return dict(cloud.split)

        def list_models(self) -> list[Deployed]:
            _bind(real.list_models, self)
            return list(cloud.deployed)

        def undeploy(self, **kwargs: Any) -> None:
            _bind(real.undeploy, self, **kwargs)
            cloud.calls.append(("undeploy", kwargs))
            removing, split = kwargs["deployed_model_id"], kwargs.get("traffic_split")
            if split is not None and (sum(split.values()) != 100 or split.get(removing)):
                raise ValueError("invalid traffic split")  # as the SDK checks it
            if split is None and len(cloud.split) > 1 and cloud.split.get(removing) == 100:
                raise ValueError("would leave the remaining traffic at 0%")
            cloud.deployed = [d for d in cloud.deployed if d.id != removing]
            cloud.split = dict(split or {})

    return Endpoint


def _registry_class(cloud: FakeVertex) -> type:
    class ModelRegistry:
        def __init__(self, **kwargs: Any) -> None:
            _bind(sdk.models.ModelRegistry.__init__, self, **kwargs)
            self.model = kwargs["model"]

        def delete_version(self, version: str) -> None:
            _bind(sdk.models.ModelRegistry.delete_version, self, version)
            cloud.calls.append(("delete_version", {"model": self.model, "version": version}))
            cloud.versions[self.model].remove(version)

    return ModelRegistry


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> FakeVertex:
    state = FakeVertex()
    fake = state.module()
    monkeypatch.setattr(vertex_model, "_aiplatform", lambda: fake)
    return state


def props(**changes: Any) -> dict[str, Any]:
    """Inputs as they reach the provider over Pulumi's RPC (numbers arrive as floats)."""
    base: dict[str, Any] = {
        "project": "my-proj-123",
        "region": "europe-west4",
        "endpoint": ENDPOINT,
        "private": False,
        "display_name": "m-default",
        "description": "mdeploy m (default)",
        "image": IMAGE,
        "environment": {"MDEPLOY_ENGINE_ARGS": '["--max-model-len", "8192"]'},
        "port": 8080.0,
        "predict_route": "/predict",
        "health_route": "/health",
        "shared_memory_mb": 4096.0,
        "deployment_timeout_s": 870.0,
        "machine_type": "g2-standard-8",
        "accelerator_type": "NVIDIA_L4",
        "accelerator_count": 1.0,
        "min_replicas": 1.0,
        "max_replicas": 2.0,
        "service_account": SA,
        "labels": {"managed-by": "mdeploy"},
        "__provider": "serialized",
    }
    base.update(changes)
    return base


def test_create_uploads_and_deploys_with_the_sdk_argument_names(cloud: FakeVertex) -> None:
    result = VertexModelDeploymentProvider().create(props())
    assert cloud.names() == ["Endpoint", "upload", "deploy"]
    assert cloud.kwargs("upload")[0] == {
        "display_name": "m-default",
        "description": "mdeploy m (default)",
        "serving_container_image_uri": IMAGE,
        "serving_container_environment_variables": {
            "MDEPLOY_ENGINE_ARGS": '["--max-model-len", "8192"]'
        },
        "serving_container_ports": [8080],
        "serving_container_predict_route": "/predict",
        "serving_container_health_route": "/health",
        "serving_container_shared_memory_size_mb": 4096,
        "serving_container_deployment_timeout": 870,
        "labels": {"managed-by": "mdeploy"},
        "project": "my-proj-123",
        "location": "europe-west4",
        "is_default_version": True,
        "sync": True,
    }
    deploy = cloud.kwargs("deploy")[0]
    assert deploy.pop("endpoint").resource_name == ENDPOINT
    assert deploy == {
        "deployed_model_display_name": "m-default-v1",
        "traffic_percentage": 100,
        "machine_type": "g2-standard-8",
        "accelerator_type": "NVIDIA_L4",
        "accelerator_count": 1,
        "min_replica_count": 1,
        "max_replica_count": 2,
        "service_account": SA,
        "deploy_request_timeout": 870.0 + 1200,
        "sync": True,
        "version": "1",
    }
    model_name = next(iter(cloud.versions))
    assert result.id == model_name
    assert result.outs["model_name"] == model_name
    assert result.outs["model_version_id"] == "1"
    assert result.outs["deployed_model_id"] == cloud.deployed[0].id
    assert cloud.split == {cloud.deployed[0].id: 100}


def test_optional_settings_reach_the_sdk(cloud: FakeVertex) -> None:
    key = "projects/k/locations/europe-west4/keyRings/r/cryptoKeys/c"
    VertexModelDeploymentProvider().create(props(kms_key_name=key, duty_cycle=70.0))
    assert cloud.kwargs("upload")[0]["encryption_spec_key_name"] == key
    assert cloud.kwargs("deploy")[0]["autoscaling_target_accelerator_duty_cycle"] == 70


def test_failed_create_deletes_the_uploaded_model(cloud: FakeVertex) -> None:
    cloud.fail_versions = {"1"}
    with pytest.raises(RuntimeError, match="healthy"):
        VertexModelDeploymentProvider().create(props())
    assert cloud.names()[-1] == "delete"
    assert cloud.versions == {}


def test_update_is_blue_green_on_a_new_model_version(cloud: FakeVertex) -> None:
    provider = VertexModelDeploymentProvider()
    old = provider.create(props()).outs
    cloud.calls.clear()
    new_image = IMAGE.replace("ab" * 32, "cd" * 32)
    outs = provider.update(old["model_name"], old, props(image=new_image)).outs
    assert cloud.names() == ["Endpoint", "upload", "deploy", "undeploy", "delete_version"]
    assert cloud.kwargs("upload")[0]["parent_model"] == old["model_name"]
    assert cloud.kwargs("upload")[0]["serving_container_image_uri"] == new_image
    assert cloud.kwargs("undeploy")[0] == {
        "deployed_model_id": old["deployed_model_id"],
        "traffic_split": {outs["deployed_model_id"]: 100},
    }
    assert cloud.kwargs("delete_version")[0] == {"model": old["model_name"], "version": "1"}
    assert outs["model_name"] == old["model_name"]  # the resource id does not change
    assert outs["model_version_id"] == "2"
    assert [d.id for d in cloud.deployed] == [outs["deployed_model_id"]]
    assert cloud.split == {outs["deployed_model_id"]: 100}


def test_failed_update_keeps_the_old_model_serving(cloud: FakeVertex) -> None:
    provider = VertexModelDeploymentProvider()
    old = provider.create(props()).outs
    cloud.fail_versions = {"2"}
    with pytest.raises(RuntimeError):
        provider.update(old["model_name"], old, props(max_replicas=4.0))
    assert [d.id for d in cloud.deployed] == [old["deployed_model_id"]]
    assert cloud.split == {old["deployed_model_id"]: 100}
    assert cloud.versions[old["model_name"]] == ["1"]


def test_private_endpoint_update_makes_room_then_restores_on_failure(cloud: FakeVertex) -> None:
    provider = VertexModelDeploymentProvider()
    old = provider.create(props(private=True)).outs
    assert cloud.names()[0] == "PrivateEndpoint"
    cloud.calls.clear()
    cloud.fail_versions = {"2"}
    with pytest.raises(RuntimeError):
        provider.update(old["model_name"], old, props(private=True, image=IMAGE + "x"))
    assert cloud.names() == [
        "PrivateEndpoint",
        "upload",
        "undeploy",
        "deploy",
        "Model",
        "deploy",
        "delete_version",
    ]
    assert [kw["version"] for kw in cloud.kwargs("deploy")] == ["2", "1"]
    assert [(d.model_version_id, cloud.split[d.id]) for d in cloud.deployed] == [("1", 100)]
    assert cloud.kwargs("delete_version") == [{"model": old["model_name"], "version": "2"}]


def test_delete_undeploys_then_deletes_and_tolerates_what_is_gone(cloud: FakeVertex) -> None:
    provider = VertexModelDeploymentProvider()
    outs = provider.create(props()).outs
    provider.delete(outs["model_name"], outs)
    assert cloud.deployed == [] and cloud.versions == {}
    assert cloud.kwargs("undeploy")[0] == {
        "deployed_model_id": outs["deployed_model_id"],
        "traffic_split": None,
    }
    cloud.endpoint_exists = False
    provider.delete(outs["model_name"], outs)  # endpoint and model already gone: no error


def test_delete_hands_its_traffic_to_the_models_left(cloud: FakeVertex) -> None:
    provider = VertexModelDeploymentProvider()
    canary = provider.create(props(display_name="canary")).outs
    ours = provider.create(props()).outs  # takes 100 %, canary keeps 0 %
    provider.delete(ours["model_name"], ours)
    assert cloud.kwargs("undeploy")[-1] == {
        "deployed_model_id": ours["deployed_model_id"],
        "traffic_split": {canary["deployed_model_id"]: 100},
    }
    assert cloud.split == {canary["deployed_model_id"]: 100}


def test_read_refreshes_the_live_shape_or_reports_gone(cloud: FakeVertex) -> None:
    provider = VertexModelDeploymentProvider()
    outs = provider.create(props()).outs
    cloud.deployed[0].dedicated_resources.max_replica_count = 5  # changed in the console
    result = provider.read(outs["model_name"], outs)
    assert result.id == outs["model_name"]
    assert result.outs["max_replicas"] == 5
    assert result.outs["accelerator_type"] == "NVIDIA_L4"
    assert result.outs["image"] == IMAGE
    cloud.deployed.clear()
    assert provider.read(outs["model_name"], outs).id == ""
    cloud.endpoint_exists = False
    assert provider.read(outs["model_name"], outs).id == ""


def test_diff_replaces_only_for_identity_inputs() -> None:
    provider = VertexModelDeploymentProvider()
    old = {**props(), "model_name": "m", "model_version_id": "1", "deployed_model_id": "9"}
    same = provider.diff("m", old, props())
    assert same.changes is False and same.replaces == []
    image = provider.diff("m", old, props(image=IMAGE + "0"))
    assert image.changes is True and image.replaces == []
    moved = provider.diff("m", old, props(endpoint=ENDPOINT[:-1] + "9", max_replicas=3.0))
    assert moved.replaces == ["endpoint"]
    assert moved.delete_before_replace is False


def test_check_reports_bad_inputs_before_any_cloud_call() -> None:
    news = props(min_replicas=3.0, max_replicas=2.0, predict_route="predict")
    del news["machine_type"]
    failures = {f.property for f in VertexModelDeploymentProvider().check({}, news).failures}
    assert failures == {"min_replicas", "predict_route", "machine_type"}
    assert VertexModelDeploymentProvider().check({}, props()).failures == []


def test_kwargs_builders_bind_to_the_installed_sdk() -> None:
    full = props(kms_key_name="k", duty_cycle=60.0)
    inspect.signature(sdk.Model.upload).bind(**upload_kwargs(full, parent_model="projects/m"))
    inspect.signature(sdk.Model.deploy).bind(None, **deploy_kwargs(full, object(), "3"))


@pytest.mark.parametrize(
    ("split", "removing", "deployed", "expected"),
    [
        ({"a": 100, "b": 0}, "a", ["a", "b"], {"b": 100}),
        ({"a": 50, "b": 30, "c": 20}, "a", ["a", "b", "c"], {"b": 60, "c": 40}),
        ({"a": 10, "b": 45, "c": 45}, "a", ["a", "b", "c"], {"b": 50, "c": 50}),
        (
            {"a": 1, "b": 33, "c": 33, "d": 33},
            "a",
            ["a", "b", "c", "d"],
            {"b": 34, "c": 33, "d": 33},
        ),
        ({"a": 100}, "a", ["a"], {}),
        ({"a": 100}, "a", ["a", "z"], {"z": 100}),  # deployed but absent from the split
    ],
)
def test_split_without(
    split: dict[str, int], removing: str, deployed: list[str], expected: dict[str, int]
) -> None:
    result = split_without(split, removing, deployed)
    assert result == expected
    assert sum(result.values()) in (0, 100)


def test_provider_survives_pulumis_serialization() -> None:
    restored = dill.loads(base64.b64decode(serialize_provider(VertexModelDeploymentProvider())))
    assert isinstance(restored, VertexModelDeploymentProvider)


def test_secret_wrapped_environment_reaches_the_sdk_as_plain_strings() -> None:
    wrapped = props(environment=wrap_rpc_secret({"A": "1", "B": wrap_rpc_secret("2")}))
    assert upload_kwargs(wrapped)["serving_container_environment_variables"] == {
        "A": "1",
        "B": "2",
    }


def test_resource_refuses_inputs_the_provider_does_not_know() -> None:
    with pytest.raises(ValueError, match="acceleratorType"):
        VertexModelDeployment("model", {"acceleratorType": "NVIDIA_L4"})
