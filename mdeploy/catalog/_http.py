"""
The one way the catalog talks to the network: GET a JSON document with a timeout.

Used only by `catalog refresh`. Every failure becomes a CloudError (exit 1) whose message
names the host and whose hint says the bundled catalog keeps working offline. No credentials
are sent: the price APIs read here are public.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from mdeploy.errors import CloudError

__all__ = ["OFFLINE_HINT", "get_json"]

OFFLINE_HINT = (
    "the bundled catalog still works offline (`mdeploy plan` and `mdeploy catalog offers` "
    "need no network); retry `mdeploy catalog refresh` when the price API is reachable"
)
_USER_AGENT = "mdeploy-catalog-refresh"


def _host(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc or url


def get_json(url: str, *, timeout: float) -> Any:
    """Fetch `url` and decode its JSON body; CloudError on any network, HTTP or JSON failure."""
    host = _host(url)
    request = urllib.request.Request(
        url, headers={"Accept": "application/json", "User-Agent": _USER_AGENT}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise CloudError(
            f"{host} answered HTTP {exc.code} for {urlsplit(url).path}", hint=OFFLINE_HINT
        ) from None
    except urllib.error.URLError as exc:
        raise CloudError(f"cannot reach {host}: {exc.reason}", hint=OFFLINE_HINT) from None
    except (TimeoutError, OSError) as exc:
        raise CloudError(f"cannot reach {host}: {exc}", hint=OFFLINE_HINT) from None
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CloudError(f"{host} returned a body that is not JSON: {exc}") from None
