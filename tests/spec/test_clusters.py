"""`placement.<key>`: the user's own cluster, one key per target declaring `pool_placement`.

The keys come from the target folders (mdeploy/target_names.py), so spec/ names no cloud;
today the only one is `placement.kubernetes`, and the spec format is unchanged.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mdeploy.spec import schema
from mdeploy.spec.models import ClusterPlacement, Placement

POOL = {"name": "big", "gpu": "H100", "gpu_count": 8, "country": "DE"}


def test_the_cluster_keys_come_from_the_targets() -> None:
    assert Placement.cluster_keys() == ("kubernetes",)
    assert list(Placement.model_fields)[-1] == "kubernetes"  # after the common fields


def test_clusters_lists_only_the_declared_ones() -> None:
    assert Placement().clusters() == {}
    placement = Placement.model_validate({"kubernetes": {"namespace": "ml", "pools": [POOL]}})
    clusters = placement.clusters()
    assert list(clusters) == ["kubernetes"] and isinstance(clusters["kubernetes"], ClusterPlacement)
    assert (
        clusters["kubernetes"].namespace == "ml" and clusters["kubernetes"].pools[0].gpu_count == 8
    )


@pytest.mark.parametrize("cluster", [None, {"namespace": "ml"}, {"pools": []}])
def test_a_cluster_in_clouds_needs_pools(cluster: dict | None) -> None:
    data: dict = {"clouds": ["aws", "kubernetes"]}
    if cluster is not None:
        data["kubernetes"] = cluster
    with pytest.raises(
        ValidationError, match=r"cloud 'kubernetes' needs placement\.kubernetes\.pools"
    ):
        Placement.model_validate(data)


def test_a_cluster_not_in_clouds_may_go_without_pools() -> None:
    placement = Placement.model_validate({"clouds": ["aws"], "kubernetes": {"namespace": "ml"}})
    assert placement.clusters()["kubernetes"].pools == []


def test_default_clouds_leave_the_pool_placement_out() -> None:
    assert Placement().clouds == ["aws", "azure", "gcp", "coreweave"]


def test_unknown_keys_stay_errors_under_a_cluster() -> None:
    with pytest.raises(ValidationError, match="extra"):
        Placement.model_validate({"kubernetes": {"pools": [POOL], "nodes": 3}})
    with pytest.raises(ValidationError, match="extra"):
        Placement.model_validate({"cluster": {"pools": [POOL]}})


def test_the_schema_names_the_generic_models_under_the_same_key() -> None:
    defs = schema()["$defs"]
    assert {"ClusterPlacement", "ClusterPool"} <= set(defs)
    assert not any(name.startswith("Kubernetes") for name in defs)
    field = defs["Placement"]["properties"]["kubernetes"]
    assert field["description"] == "Cluster settings for coreweave/kubernetes."
    assert {"$ref": "#/$defs/ClusterPlacement"} in field["anyOf"]
    assert defs["Placement"]["additionalProperties"] is False
