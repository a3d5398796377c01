"""The day-2 contract's shared rules (targets/base.py): one validator, one health shape."""

from __future__ import annotations

import json

import pytest

from mdeploy.errors import CloudError, InputError
from mdeploy.targets.base import (
    EndpointHealth,
    NotFoundError,
    VersionHealth,
    VersionSpec,
    base_version,
    percentages,
    refuse_removal,
    validate_weights,
)


def _health(**traffic: int) -> EndpointHealth:
    return EndpointHealth(state="ready", versions=[VersionHealth(n, p) for n, p in traffic.items()])


def test_weights_fill_every_known_version() -> None:
    assert validate_weights({"a": 100}, ["a", "b"]) == {"a": 100, "b": 0}
    assert validate_weights({"a": 10, "b": 90}) == {"a": 10, "b": 90}  # numbers only


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({}, "no traffic weights"),
        ({"a": 90}, "add up to 90"),
        ({"a": 50, "b": 60}, "add up to 110"),
        ({"a": 100.0}, "whole percentage"),
        ({"a": True}, "whole percentage"),
        ({"a": 101, "b": -1}, "whole percentage"),
        ({"a": 50, "z": 50}, "no version named z"),
    ],
)
def test_bad_weights_are_input_errors(weights: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        validate_weights(weights, ["a", "b"])


def test_relative_weights_become_percentages_that_add_up() -> None:
    assert percentages({"a": 1.0, "b": 2.0}) == {"a": 33, "b": 67}
    assert percentages({"a": 1.0, "b": 1.0, "c": 1.0}) == {"a": 34, "b": 33, "c": 33}
    assert percentages({"a": 0.0, "b": None}) == {"a": 0, "b": 0}
    assert sum(percentages({str(i): i + 0.5 for i in range(7)}).values()) == 100


def test_health_is_one_json_shape_and_refuses_foreign_states() -> None:
    health = _health(v1=90, v2=10)
    doc = json.loads(json.dumps(health.to_json()))
    assert set(doc) == {"state", "url", "region", "versions", "replicas", "detail", "details"}
    assert set(doc["versions"][0]) == {
        "name", "traffic_percent", "image", "model_revision", "replicas", "state"
    }  # fmt: skip
    assert health.traffic == {"v1": 90, "v2": 10}
    with pytest.raises(ValueError, match="InService"):
        EndpointHealth(state="InService")
    unknown = EndpointHealth.unknown("AccessDenied").to_json()
    assert set(unknown) == set(doc) and unknown["state"] == "unknown"


def test_not_found_is_a_cloud_error_naming_the_versions() -> None:
    with pytest.raises(NotFoundError) as err:
        _health(v1=100).version("v9")
    assert isinstance(err.value, CloudError) and "v1" in (err.value.hint or "")


def test_base_version_is_the_busiest_unless_named() -> None:
    health = _health(v1=30, v2=70)
    assert base_version(health, None).name == "v2"
    assert base_version(health, "v1").name == "v1"
    with pytest.raises(NotFoundError):
        base_version(EndpointHealth(state="unknown"), None)


def test_removal_needs_no_traffic_and_another_version() -> None:
    refuse_removal(_health(v1=100, v2=0), "v2")
    with pytest.raises(InputError, match="takes 100%"):
        refuse_removal(_health(v1=0, v2=100), "v2")
    with pytest.raises(InputError, match="only version"):
        refuse_removal(_health(v1=0), "v1")


@pytest.mark.parametrize("name", ["v", "V-2", "-v2", "v2-", "v_2", "x" * 33])
def test_version_names_every_platform_accepts(name: str) -> None:
    with pytest.raises(InputError, match="version name"):
        VersionSpec(name, "img@sha256:ab")


def test_version_spec_checks_image_and_replicas() -> None:
    assert VersionSpec("v-2", "img@sha256:ab").replicas == 1
    with pytest.raises(InputError, match="no image"):
        VersionSpec("v-2", "")
    with pytest.raises(InputError, match="replicas"):
        VersionSpec("v-2", "img", replicas=0)


@pytest.mark.parametrize(
    ("source", "scheme"),
    [
        (None, None),
        ("/models/m", None),
        ("hf://org/m", None),
        ("s3://b/m", None),
        ("gs://b/m", "gs"),
        ("az://c/m", "az"),
        ("oci://b/m", "oci"),  # a scheme no target knows of today is refused all the same
    ],
)
def test_a_source_scheme_a_target_cannot_load_is_named(source, scheme):
    from types import SimpleNamespace

    from mdeploy.targets.base import unloadable_source

    spec = SimpleNamespace(model=SimpleNamespace(source=source))
    assert unloadable_source(spec, ("hf", "s3")) == scheme  # type: ignore[arg-type]
