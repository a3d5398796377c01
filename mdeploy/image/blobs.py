"""
Read a registry's blobs and check each one's sha256, streaming (bounded memory).

skopeo can read a manifest but not a single blob, so the blob check speaks the Distribution
API directly (GET /v2/<name>/blobs/<digest>, https://distribution.github.io/distribution/spec/api/)
with the login the tools got: the same temporary auth file (Basic, or the Bearer token
exchange of WWW-Authenticate, which ECR, ACR, Artifact Registry and Docker Hub use). A
redirect to another host (ECR and Artifact Registry serve blobs from object storage) drops the
Authorization header: presigned URLs refuse a second credential. Nothing is kept in memory
but one chunk; credentials never reach a message.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from mdeploy.errors import CloudError, PrerequisiteError
from mdeploy.image.refs import ImageRef

__all__ = ["BlobReader", "unreachable"]

CHUNK = 1 << 20
TIMEOUT_S = 60.0
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
_UNREACHABLE = (
    "connection refused",
    "no such host",
    "dial tcp",
    "i/o timeout",
    "network is unreachable",
    "no route to host",
    "timed out",
    "name or service not known",
    "temporary failure in name resolution",
)


def unreachable(host: str, detail: str) -> PrerequisiteError:
    """The registry could not be reached at all (exit 3), as opposed to a wrong answer."""
    return PrerequisiteError(
        f"registry {host} is unreachable: {detail}",
        hint="check the network, proxy and registry address (and --insecure for a plain-HTTP "
        "registry), then retry",
    )


def is_unreachable(text: str) -> bool:
    """Whether a tool's error text says the registry was never reached."""
    low = text.lower()
    return any(marker in low for marker in _UNREACHABLE)


class _DropAuthOnRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != req.host:
            new.remove_header("Authorization")
        return new


class BlobReader:
    """Streams blobs of one repository, logging in the way the registry asks."""

    def __init__(self, ref: ImageRef, *, insecure: bool, authfile: Path | None) -> None:
        self.ref = ref
        self.host = ref.host or ""
        self.schemes = ("https", "http") if insecure else ("https",)
        self._basic = _basic_auth(self.host, authfile)
        self._token: str | None = None
        context = ssl.create_default_context()
        if insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        self._opener = urllib.request.build_opener(
            _DropAuthOnRedirect(), urllib.request.HTTPSHandler(context=context)
        )

    def sha256(self, digest: str) -> str | None:
        """sha256 of the blob's bytes as served, or None when the registry lacks the blob."""
        path = f"/v2/{self.ref.repository}/blobs/{digest}"
        with self._open(path) as reply:
            if reply is None:
                return None
            hasher = hashlib.sha256()
            for chunk in iter(lambda: reply.read(CHUNK), b""):
                hasher.update(chunk)
        return "sha256:" + hasher.hexdigest()

    def _open(self, path: str) -> Any:
        errors = []
        for scheme in self.schemes:
            url = f"{scheme}://{self.host}{path}"
            try:
                return self._get(url)
            except (urllib.error.URLError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
                if isinstance(exc, urllib.error.HTTPError):
                    raise
                errors.append(str(getattr(exc, "reason", exc)))
        raise unreachable(self.host, "; ".join(errors))

    def _get(self, url: str) -> Any:
        try:
            return self._opener.open(self._request(url), timeout=TIMEOUT_S)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return _Missing()
            if exc.code != 401 or self._token is not None:
                raise CloudError(f"registry {self.host} answered {exc.code} for {url}") from None
            self._login(exc.headers.get("WWW-Authenticate", ""))
            return self._get(url)

    def _request(self, url: str) -> urllib.request.Request:
        request = urllib.request.Request(url)
        if self._token:
            request.add_header("Authorization", f"Bearer {self._token}")
        elif self._basic:
            request.add_header("Authorization", f"Basic {self._basic}")
        return request

    def _login(self, challenge: str) -> None:
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":  # Basic was already sent when we had a login
            what = "refused the login" if self._basic else "needs a login and none was found"
            raise CloudError(f"registry {self.host} {what}")
        fields = dict(_CHALLENGE.findall(params))
        realm = fields.pop("realm", "")
        if scheme.lower() != "bearer" or not realm:
            raise CloudError(f"registry {self.host} asked for an unknown login: {scheme}")
        url = f"{realm}?{urllib.parse.urlencode(fields)}"
        request = urllib.request.Request(url)
        if self._basic:
            request.add_header("Authorization", f"Basic {self._basic}")
        try:
            with self._opener.open(request, timeout=TIMEOUT_S) as reply:
                doc = json.loads(reply.read(1 << 20))
        except (urllib.error.URLError, ValueError) as exc:
            raise CloudError(f"registry {self.host}: the token exchange failed ({exc})") from None
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not token:
            raise CloudError(f"registry {self.host}: the token exchange returned no token")
        self._token = str(token)


class _Missing:
    """A 404: the context manager that yields None."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _basic_auth(host: str, authfile: Path | None) -> str | None:
    """The base64 `user:password` for `host` from the auth file (ours, else the user's)."""
    data: dict[str, Any] = {}
    if authfile is not None:
        data = json.loads(authfile.read_text())
    else:
        from mdeploy.targets.registry import default_auth_file, read_auth_file

        found = default_auth_file()
        data = read_auth_file(found) if found else {}
    auths = data.get("auths") if isinstance(data.get("auths"), dict) else {}
    entry = auths.get(host) or auths.get(f"https://{host}") or {}
    auth = entry.get("auth") if isinstance(entry, dict) else None
    if isinstance(auth, str) and auth:
        return auth
    user, password = entry.get("username"), entry.get("password")
    if isinstance(user, str) and isinstance(password, str):
        return base64.b64encode(f"{user}:{password}".encode()).decode()
    return None
