"""
Helpers of the image tests: start and stop a Distribution registry on 127.0.0.1, and make
small OCI images by hand (fixed mtimes and owners, so their digests are stable, no network).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import socket
import socketserver
import subprocess
import tarfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
PLATFORMS = (("linux", "amd64"), ("linux", "arm64"))


def need(*tools: str) -> None:
    """Skip the calling test when a system tool is not installed."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (tests/install-tools.sh installs it)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, *, timeout: float = 15.0) -> None:
    """Wait until `url` answers HTTP at all (any status)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@dataclass
class Registry:
    """A running docker-registry: `host` is 127.0.0.1:PORT."""

    host: str
    root: Path
    proc: subprocess.Popen

    def repo(self, name: str = "img") -> str:
        """A repository no other test uses, e.g. 127.0.0.1:5000/img-1a2b3c4d."""
        return f"{self.host}/{name}-{uuid.uuid4().hex[:8]}"


def start_registry(root: Path, *, htpasswd: Path | None = None) -> Registry:
    """Start Debian's docker-registry (Distribution v2) with its own config on a free port."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    auth = ""
    if htpasswd is not None:
        auth = f"auth:\n  htpasswd:\n    realm: test\n    path: {htpasswd}\n"
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n" + auth
    )
    log = (root / "registry.log").open("wb")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=log)
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/")
    except OSError:
        stop(proc)
        raise
    return Registry(f"127.0.0.1:{port}", root, proc)


# --- hand-made OCI images -----------------------------------------------------------------


def _blob(root: Path, data: bytes, media_type: str) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (blobs / digest).write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def _layer(files: dict[str, bytes]) -> tuple[bytes, bytes]:
    """(uncompressed tar, gzip) with fixed mtimes and owners, so digests are stable."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return raw, gzip.compress(raw, mtime=0)


def make_oci_image(root: Path, tag: str, files: dict[str, bytes]) -> str:
    """
    Write an OCI layout holding a two-platform index (amd64, arm64) under `tag`.

    Returns the index digest, i.e. what `oci:ROOT:TAG` resolves to.
    """
    manifests = []
    for os_name, arch in PLATFORMS:
        raw, gz = _layer({**files, "etc/platform": f"{os_name}/{arch}\n".encode()})
        layer = _blob(root, gz, "application/vnd.oci.image.layer.v1.tar+gzip")
        config = {
            "architecture": arch,
            "os": os_name,
            "config": {"Env": ["PATH=/usr/bin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(raw).hexdigest()}"]},
        }
        cfg = _blob(
            root,
            json.dumps(config, sort_keys=True).encode(),
            "application/vnd.oci.image.config.v1+json",
        )
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST, "config": cfg, "layers": [layer]}
        entry = _blob(root, json.dumps(manifest, sort_keys=True).encode(), MANIFEST)
        manifests.append({**entry, "platform": {"os": os_name, "architecture": arch}})
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests}
    top = _blob(root, json.dumps(index, sort_keys=True).encode(), INDEX)
    top["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    return top["digest"]


def push_oci(root: Path, tag: str, ref: str) -> None:
    """Copy an OCI layout image into a registry reference as is (plain HTTP)."""
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--all",
            "--preserve-digests",
            "--quiet",
            "--dest-tls-verify=false",
            f"oci:{root}:{tag}",
            f"docker://{ref}",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


# --- a fake HTTP service ------------------------------------------------------------------


@dataclass
class Seen:
    """One request a fake service received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


Reply = tuple[int, dict[str, str], bytes]


@dataclass
class FakeService:
    """A loopback HTTP server answering with `answer(request)`; `seen` records requests."""

    url: str
    seen: list[Seen] = field(default_factory=list)


class _QuickServer(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the FQDN, which stalls without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


@contextmanager
def fake_http(answer: Callable[[Seen], Reply]) -> Iterator[FakeService]:
    """Run a ThreadingHTTPServer on 127.0.0.1 for the duration of the block."""
    service = FakeService(url="")

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = Seen(self.command, self.path, dict(self.headers), self.rfile.read(length))
            service.seen.append(request)
            status, headers, body = answer(request)
            self.send_response(status)
            for key, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_DELETE = _handle

        def log_message(self, *args: object) -> None:
            del args  # Unused: keep test output quiet.

    server = _QuickServer(("127.0.0.1", 0), Handler)
    service.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield service
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
