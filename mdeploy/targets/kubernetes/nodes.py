"""
Where a kube context's nodes are: the region check `up` runs before anything is created.

A placement names a region (a CoreWeave availability zone such as US-EAST-04A, or the region
of a declared pool); the pods are pinned to it by node affinity (podspec.node_affinity). If no
node of the cluster carries that place in its well-known topology labels, the pods would stay
Pending forever, or, worse, a kube context pointing at another cluster would run the model
outside the jurisdiction the plan checked. So `up` lists the nodes first and refuses.

Labels (kubernetes.io/docs/reference/labels-annotations-taints, "topology.kubernetes.io/region"
and "topology.kubernetes.io/zone", read 2026-12-06): set by the kubelet or cloud provider on
each node. CoreWeave documents the same label keys for its Regions and AZs
(docs.coreweave.com/docs/platform/regions/general-access, "Region labels", read 2026-12-06).
A placement matches a node whose region label or zone label equals it, since catalog offers
name CoreWeave AZs and pools name whatever the operator calls the site.

Stdlib only (urllib + ssl): the kube context's kubeconfig gives the server, its CA and the
credentials (bearer token, token file, client certificate, or an exec credential plugin).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mdeploy.targets.kubernetes.rules import merged_kubeconfig

__all__ = [
    "GENERIC_REGION",
    "REGION_LABEL",
    "ZONE_LABEL",
    "ApiError",
    "NodeListError",
    "api_call",
    "cluster_of",
    "labels_hint",
    "list_node_labels",
    "region_problem",
]

GENERIC_REGION = "cluster"  # a pool's default region: "wherever this cluster is", not checked
REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
_TIMEOUT_S = 15
_EXEC_TIMEOUT_S = 60


class NodeListError(Exception):
    """The nodes could not be listed (unreachable, unauthorised, malformed kubeconfig)."""


def labels_hint(context: str | None) -> str:
    """The kubectl line that shows every node's region and zone labels."""
    ctx = f" --context {context}" if context else ""
    return f"kubectl{ctx} get nodes -L {REGION_LABEL},{ZONE_LABEL}"


def region_problem(region: str, labels: list[dict[str, str]]) -> str | None:
    """Why no node can host `region` (None when one can, or the region is generic)."""
    if region == GENERIC_REGION:
        return None
    places = {(n.get(REGION_LABEL), n.get(ZONE_LABEL)) for n in labels}
    if any(region in place for place in places):
        return None
    seen = sorted({p for place in places for p in place if p})
    found = ", ".join(seen) if seen else f"no node carries {REGION_LABEL} or {ZONE_LABEL}"
    return f"no node of the cluster is in {region!r} (topology labels seen: {found})"


def list_node_labels(context: str | None, paths: list[Path]) -> list[dict[str, str]]:
    """The labels of every node, read from the API server of `context` (or the current one)."""
    cluster, user = cluster_of(context, paths)
    body = _get(cluster, user, "/api/v1/nodes")
    try:
        items = json.loads(body)["items"]
        return [dict((item.get("metadata") or {}).get("labels") or {}) for item in items]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise NodeListError("the API server's node list is not a NodeList") from None


def cluster_of(context: str | None, paths: list[Path]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The kubeconfig's cluster and user entries for `context` (or the current context)."""
    config = merged_kubeconfig(paths)
    name = context or config["current-context"]
    if not name:
        raise NodeListError("the kubeconfig sets no current-context")
    ctx = config["contexts"].get(name)
    if ctx is None:
        raise NodeListError(f"kube context {name!r} is not defined")
    cluster = config["clusters"].get(ctx.get("cluster"))
    if not cluster or not cluster.get("server"):
        raise NodeListError(f"kube context {name!r}: its cluster has no server")
    return cluster, config["users"].get(ctx.get("user")) or {}


class ApiError(NodeListError):
    """The API server answered an HTTP error; `status` is its code."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def api_call(
    cluster: dict[str, Any],
    user: dict[str, Any],
    method: str,
    path: str,
    body: Any = None,
    content_type: str = "application/json",
) -> Any:
    """One JSON call to the API server with the kubeconfig's credentials and CA."""
    server = str(cluster["server"]).rstrip("/")
    headers = {"Accept": "application/json"}
    token = _token(user)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = content_type
    request = urllib.request.Request(server + path, data=data, headers=headers, method=method)
    with _tls(cluster, user, server) as context:
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT_S, context=context) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            try:
                reason = json.loads(exc.read() or b"{}").get("message") or exc.reason
            except (ValueError, AttributeError):
                reason = exc.reason
            raise ApiError(f"{method} {path}: HTTP {exc.code} ({reason})", exc.code) from None
        except (urllib.error.URLError, OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", exc)
            raise NodeListError(f"{server} is unreachable ({reason})") from None
    try:
        return json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise NodeListError(f"{method} {path}: the API server sent no JSON") from None


def _get(cluster: dict[str, Any], user: dict[str, Any], path: str) -> bytes:
    server = str(cluster["server"]).rstrip("/")
    headers = {"Accept": "application/json"}
    token = _token(user)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(server + path, headers=headers)
    with _tls(cluster, user, server) as context:
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT_S, context=context) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            why = {401: "unauthorised", 403: "forbidden: the user may not list nodes"}
            detail = why.get(exc.code, exc.reason)
            raise NodeListError(f"{server}: HTTP {exc.code} ({detail})") from None
        except (urllib.error.URLError, OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", exc)
            raise NodeListError(f"{server} is unreachable ({reason})") from None


def _token(user: dict[str, Any]) -> str | None:
    if user.get("token"):
        return str(user["token"])
    if user.get("tokenFile"):
        try:
            return _path(user, user["tokenFile"]).read_text().strip()
        except OSError as exc:
            raise NodeListError(f"tokenFile {user['tokenFile']}: {exc.strerror}") from None
    if user.get("exec"):
        return _exec_token(user["exec"])
    return None


def _exec_token(spec: dict[str, Any]) -> str:
    """Run a client-go exec credential plugin and read status.token from its ExecCredential."""
    command = [str(spec.get("command") or ""), *[str(a) for a in spec.get("args") or []]]
    env = {**os.environ, **{e["name"]: str(e["value"]) for e in spec.get("env") or []}}
    try:
        out = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=_EXEC_TIMEOUT_S, check=True
        ).stdout
        token = json.loads(out)["status"]["token"]
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
        raise NodeListError(f"the kubeconfig's exec plugin {command[0]!r} gave no token") from None
    return str(token)


@contextlib.contextmanager
def _tls(cluster: dict[str, Any], user: dict[str, Any], server: str) -> Iterator[Any]:
    """An SSL context with the cluster's CA and the user's client certificate (https only)."""
    if not server.startswith("https://"):
        yield None
        return
    context = ssl.create_default_context()
    if cluster.get("insecure-skip-tls-verify"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif cluster.get("certificate-authority-data"):
        context.load_verify_locations(cadata=_b64(cluster["certificate-authority-data"]).decode())
    elif cluster.get("certificate-authority"):
        context.load_verify_locations(cafile=str(_path(cluster, cluster["certificate-authority"])))
    with tempfile.TemporaryDirectory() as tmp:
        cert = _pem(user, "client-certificate", Path(tmp) / "cert.pem")
        key = _pem(user, "client-key", Path(tmp) / "key.pem")
        if cert and key:
            context.load_cert_chain(str(cert), str(key))
        yield context


def _pem(user: dict[str, Any], field: str, spill: Path) -> Path | None:
    """A client certificate or key as a file: the path given, or the inline data written out."""
    if user.get(f"{field}-data"):
        spill.touch(mode=0o600)
        spill.write_bytes(_b64(user[f"{field}-data"]))
        return spill
    return _path(user, user[field]) if user.get(field) else None


def _path(entry: dict[str, Any], raw: str) -> Path:
    """kubeconfig paths are relative to the file that names them."""
    path = Path(raw).expanduser()
    return path if path.is_absolute() else Path(entry.get("_base") or ".") / path


def _b64(data: str) -> bytes:
    try:
        return base64.b64decode(data)
    except ValueError:
        raise NodeListError("kubeconfig: malformed base64 certificate data") from None
