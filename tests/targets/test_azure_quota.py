"""
The Azure ML quota check against an HTTP fake of the two ARM routes it reads (vmSizes and
usages under Microsoft.MachineLearningServices/locations/{loc}) on 127.0.0.1. Reply shapes
follow the REST spec's own examples (2024-10-01 VirtualMachineSize/list and Usage/list).
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.core.credentials import AccessToken
from httpfakes import JsonHandler

from mdeploy.errors import CloudError, PrerequisiteError
from mdeploy.targets.azure.arm import ARM_SCOPE, ARM_URL_ENV
from mdeploy.targets.azure.quota import needed_vcpus, quota_problem, subscription_id
from mdeploy.targets.azure.target import TARGET
from mdeploy.targets.base import EndpointArgs

SUB = "00000000-0000-0000-0000-00000000abcd"
TOKEN = "arm-token-quota"
BASE = f"/subscriptions/{SUB}/providers/Microsoft.MachineLearningServices/locations"


class StubCredential:
    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        assert scopes == (ARM_SCOPE,)
        return AccessToken(TOKEN, 2_000_000_000)


def _size(name: str, family: str, vcpus: int, mir: bool = True) -> dict[str, Any]:
    types = ["AmlCompute", "ComputeInstance"] + (["MIR"] if mir else [])
    return {"name": name, "family": family, "vCPUs": vcpus, "supportedComputeTypes": types}


def _usage(family_id: str, name: str, used: int, limit: int, kind: str) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{SUB}/usages/{family_id}"
        if family_id
        else f"/subscriptions/{SUB}/usages",
        "type": f"Microsoft.MachineLearningServices/{kind}/usages",
        "currentValue": used,
        "limit": limit,
        "name": {"value": name, "localizedValue": name},
        "unit": "Count",
    }


class FakeArm:
    def __init__(self) -> None:
        self.sizes = [
            _size("Standard_NC24ads_A100_v4", "standardNCADSA100v4Family", 24),
            _size("Standard_NC48ads_A100_v4", "standardNCADSA100v4Family", 48),
            _size("Standard_DS3_v2", "standardDSv2Family", 4),
            _size("Standard_NV6", "standardNVFamily", 6, mir=False),
        ]
        self.usages = [
            _usage("", "Total Cluster Dedicated Regional vCPUs", 24, 200, "dedicatedCores"),
            _usage(
                "Standard_NCADSA100v4_Family_Cluster_Dedicated_vCPUs",
                "Standard NCADSA100v4 Family Cluster Dedicated vCPUs", 24, 96, "vmFamily",
            ),
            _usage(
                "Standard_DSv2_Family_Cluster_Dedicated_vCPUs",
                "Standard DSv2 Family Cluster Dedicated vCPUs", 0, 24, "vmFamily",
            ),
        ]  # fmt: skip
        self.seen: list[str] = []
        self.status = 200
        fake = self

        class Handler(JsonHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                fake.seen.append(url.path)
                if parse_qs(url.query).get("api-version") != ["2024-10-01"]:
                    return self._send(400, {"error": {"code": "NoApiVersion", "message": "x"}})
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._send(401, {"error": {"code": "Unauthorized", "message": "x"}})
                if fake.status != 200:
                    return self._send(fake.status, {"error": {"code": "Denied", "message": "no"}})
                if url.path == f"{BASE}/francecentral/vmSizes":
                    return self._send(200, {"value": fake.sizes})
                if url.path == f"{BASE}/francecentral/usages":
                    # Two pages, as ARM pages long lists with nextLink.
                    if "page=2" in url.query:
                        return self._send(200, {"value": fake.usages[1:]})
                    next_link = f"{fake.url}{url.path}?api-version=2024-10-01&page=2"
                    return self._send(200, {"value": fake.usages[:1], "nextLink": next_link})
                return self._send(404, {"error": {"code": "NotFound", "message": "x"}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def arm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeArm]:
    fake = FakeArm()
    threading.Thread(target=fake.httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv(ARM_URL_ENV, fake.url)
    yield fake
    fake.httpd.shutdown()
    fake.httpd.server_close()


def _check(args: EndpointArgs, **changes: Any):
    return quota_problem(dataclasses.replace(args, **changes), SUB, credential=StubCredential())


def test_the_upgrade_reserve_follows_the_documented_formula() -> None:
    assert needed_vcpus("Standard_DS3_v2", 10, 4) == 48  # the docs' own example
    assert needed_vcpus("Standard_DS3_v2", 1, 4) == 8  # ceil(1.2) = 2 instances
    assert needed_vcpus("standard_nc24ads_a100_v4", 3, 24) == 72  # exempt SKU: no reserve


def test_enough_family_quota_is_no_problem(arm: FakeArm, endpoint_args_azure) -> None:
    # NC A100 v4: 96 - 24 = 72 vCPUs free; 3 × 24 (exempt from the reserve) fits exactly.
    assert _check(endpoint_args_azure, replicas_min=3) is None
    assert arm.seen[0].endswith("/vmSizes") and arm.seen.count(f"{BASE}/francecentral/usages") == 2


def test_over_the_family_quota_names_it_and_the_portal(arm: FakeArm, endpoint_args_azure) -> None:
    problem = _check(endpoint_args_azure, instance_type="Standard_NC48ads_A100_v4", replicas_min=2)
    assert problem is not None
    assert (problem.needed, problem.available) == (96, 72)
    assert "standardNCADSA100v4Family" in problem.quota_name
    assert "francecentral" in problem.quota_name
    assert "ml.azure.com/quota" in problem.request_hint


def test_the_regional_total_applies_too(arm: FakeArm, endpoint_args_azure) -> None:
    arm.usages[0]["currentValue"] = 190  # 10 regional vCPUs left, family has room
    problem = _check(endpoint_args_azure)
    assert problem is not None and "Total Cluster Dedicated Regional vCPUs" in problem.quota_name


def test_the_reserve_counts_for_sizes_that_are_not_exempt(
    arm: FakeArm, endpoint_args_azure
) -> None:
    # DSv2: 24 free; 5 instances × 4 vCPUs = 20 would fit, but ceil(6) × 4 = 24 fits exactly,
    # and 6 instances need ceil(7.2) = 8 × 4 = 32.
    assert _check(endpoint_args_azure, instance_type="Standard_DS3_v2", replicas_min=5) is None
    problem = _check(endpoint_args_azure, instance_type="Standard_DS3_v2", replicas_min=6)
    assert problem is not None and (problem.needed, problem.available) == (32, 24)


@pytest.mark.parametrize("size", ["Standard_NV6", "Standard_XYZ"])
def test_a_size_managed_endpoints_do_not_offer_is_refused(
    arm: FakeArm, endpoint_args_azure, size: str
) -> None:
    problem = _check(endpoint_args_azure, instance_type=size)
    assert problem is not None and problem.available == 0
    assert "managed online endpoints" in problem.quota_name


def test_a_refused_read_is_a_cloud_error(arm: FakeArm, endpoint_args_azure) -> None:
    arm.status = 403
    with pytest.raises(CloudError, match="HTTP 403"):
        _check(endpoint_args_azure)


def test_subscription_from_env_or_az_profile(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AZURE_SUBSCRIPTION_ID", "ARM_SUBSCRIPTION_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(tmp_path))
    with pytest.raises(CloudError, match="subscription is unknown"):
        subscription_id()
    profile = {"subscriptions": [{"id": "other"}, {"id": SUB, "isDefault": True}]}
    (tmp_path / "azureProfile.json").write_text("\ufeff" + json.dumps(profile), "utf-8")
    assert subscription_id() == SUB
    monkeypatch.setenv("ARM_SUBSCRIPTION_ID", "from-env")
    assert subscription_id() == "from-env"


def test_target_hook_reads_the_subscription(
    arm: FakeArm, endpoint_args_azure, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUB)
    monkeypatch.setattr("mdeploy.targets.azure.arm.default_credential", lambda: StubCredential())
    problem = TARGET.quota_problem(dataclasses.replace(endpoint_args_azure, replicas_min=4))
    assert problem is not None and problem.needed == 96


def test_missing_credentials_are_a_prerequisite_error(arm: FakeArm, endpoint_args_azure) -> None:
    from azure.core.exceptions import ClientAuthenticationError

    class NoLogin:
        def get_token(self, *_: Any, **__: Any) -> AccessToken:
            raise ClientAuthenticationError(message="no account signed in\ndetail")

    with pytest.raises(PrerequisiteError, match="no account signed in"):
        quota_problem(endpoint_args_azure, SUB, credential=NoLogin())
    assert arm.seen == []
