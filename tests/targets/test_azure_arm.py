"""
The shared ARM client (mdeploy/targets/azure/arm.py) on its own: error mapping by status,
paging bounded by MAX_PAGES, and long-running operation polling with and without an
Azure-AsyncOperation URL. The HTTP paths are exercised through AzureOps and the quota check
against stand-ins (test_azure_ops.py, test_azure_quota.py); here `call` is replaced.
"""

from __future__ import annotations

import io
import urllib.error
from typing import Any

import pytest

from mdeploy.errors import CloudError
from mdeploy.targets.azure import arm
from mdeploy.targets.base import NotFoundError


def _http_error(code: int, body: bytes) -> urllib.error.HTTPError:
    return urllib.error.HTTPError("https://arm.test/x", code, "status", {}, io.BytesIO(body))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "kind"),
    [(404, NotFoundError), (409, arm.ConflictError), (403, CloudError), (500, CloudError)],
)
def test_arm_errors_map_to_the_error_their_status_means(code: int, kind: type) -> None:
    body = b'{"error": {"code": "Nope", "message": "said ARM"}}'
    err = arm.arm_error(_http_error(code, body), "GET", "endpoint e")
    assert type(err) is kind
    assert (
        err.message == f"Azure Resource Manager GET (endpoint e) failed: HTTP {code} Nope: said ARM"
    )


def test_an_unreadable_error_body_still_names_the_status() -> None:
    err = arm.arm_error(_http_error(502, b"<html>"), "PUT", "traffic")
    assert err.message == "Azure Resource Manager PUT (traffic) failed: HTTP 502"


class _Scripted(arm.ArmClient):
    """An ArmClient whose calls answer from a script instead of the network."""

    def __init__(self, answer: Any) -> None:
        super().__init__("2024-04-01", credential=object(), base_url="https://arm.test")
        self.answer = answer
        self.calls: list[str] = []

    def call(self, method: str, path: str, *, body: Any = None, what: str) -> dict[str, Any]:
        self.calls.append(path)
        return self.answer(path)


def test_list_follows_next_link_and_stops_at_max_pages() -> None:
    client = _Scripted(lambda path: {"value": [{"n": path}, "junk"], "nextLink": path + "+"})
    items = client.list("/things", what="things")
    assert len(client.calls) == arm.MAX_PAGES  # a server that always pages cannot loop forever
    assert client.calls[0] == "https://arm.test/things?api-version=2024-04-01"
    assert len(items) == arm.MAX_PAGES and all(isinstance(i, dict) for i in items)


def test_wait_polls_the_async_operation_until_it_succeeds() -> None:
    states = iter(["InProgress", "InProgress", "Succeeded"])
    client = _Scripted(lambda path: {"status": next(states)})
    client.wait(
        "https://arm.test/op", "Updating", what="endpoint e",
        current_state=lambda: pytest.fail("the operation URL decides"),
        poll_interval_s=0, timeout_s=60,
    )  # fmt: skip
    assert client.calls == ["https://arm.test/op"] * 3


def test_wait_without_an_operation_url_rereads_the_resource_and_reports_failure() -> None:
    states = iter(["Updating", "Failed"])
    client = _Scripted(lambda path: pytest.fail("no operation URL to poll"))
    with pytest.raises(CloudError, match="update of endpoint e ended Failed"):
        client.wait(
            None, "Creating", what="endpoint e", current_state=lambda: next(states),
            poll_interval_s=0, timeout_s=60,
        )  # fmt: skip


def test_wait_gives_up_after_its_timeout() -> None:
    client = _Scripted(lambda path: {"status": "InProgress"})
    with pytest.raises(CloudError, match="endpoint e still InProgress after"):
        client.wait(
            "https://arm.test/op", None, what="endpoint e", current_state=lambda: None,
            poll_interval_s=0, timeout_s=-1,
        )  # fmt: skip
