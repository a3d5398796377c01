"""
Shared fixtures of the image tests: real Distribution registries and a moto server on
127.0.0.1, an isolated containers storage, and a two-platform source image in registry A.

Every service a fixture starts listens on 127.0.0.1 only and is stopped at teardown. Tests
that need a system tool skip only when it is absent (tests/install-tools.sh installs them).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from image.helpers import (
    Registry,
    free_port,
    make_oci_image,
    need,
    push_oci,
    start_registry,
    stop,
    wait_http,
)


@pytest.fixture(scope="session")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Registry]]:
    """Two independent registries, A and B."""
    need("docker-registry")
    base = tmp_path_factory.mktemp("registries")
    a = start_registry(base / "a")
    try:
        b = start_registry(base / "b")
    except Exception:
        stop(a.proc)
        raise
    yield a, b
    stop(a.proc)
    stop(b.proc)


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, str, str]]:
    """A registry that requires a login (htpasswd, bcrypt): (registry, user, password)."""
    need("docker-registry")
    crypt = pytest.importorskip("crypt")  # bcrypt through libxcrypt; gone in Python 3.13
    user, password = "ci-user", f"pw-{uuid.uuid4().hex}"
    base = tmp_path_factory.mktemp("auth-registry")
    htpasswd = base / "htpasswd"
    htpasswd.write_text(
        f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))}\n"
    )
    registry = start_registry(base / "r", htpasswd=htpasswd)
    yield registry, user, password
    stop(registry.proc)


@pytest.fixture(scope="session")
def containers_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private vfs containers storage for buildah and skopeo (CONTAINERS_STORAGE_CONF)."""
    root = tmp_path_factory.mktemp("storage")
    conf = root / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{root / "graph"}"\nrunroot = "{root / "run"}"\n'
    )
    old = os.environ.get("CONTAINERS_STORAGE_CONF")
    os.environ["CONTAINERS_STORAGE_CONF"] = str(conf)
    yield conf
    if old is None:
        os.environ.pop("CONTAINERS_STORAGE_CONF", None)
    else:
        os.environ["CONTAINERS_STORAGE_CONF"] = old


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server (AWS APIs over real HTTP) on 127.0.0.1: its endpoint URL."""
    need("moto_server")
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    proc = subprocess.Popen(
        ["moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/moto-api/", timeout=30)
    except OSError:
        stop(proc)
        raise
    yield f"http://127.0.0.1:{port}"
    stop(proc)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, tmp_path: Path) -> str:
    """Point boto3 at the moto server with throw-away credentials."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    return moto_endpoint


@pytest.fixture
def clean_auth_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No auth file and no MDEPLOY_REGISTRY_* login from the machine running the tests."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "DOCKER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    for name in ("MDEPLOY_REGISTRY_USER", "MDEPLOY_REGISTRY_PASSWORD", "MDEPLOY_REGISTRY_HOST"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture(scope="session")
def source_image(
    registries: tuple[Registry, Registry], tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str]:
    """A two-platform image pushed to registry A: (plain reference with tag, index digest)."""
    need("skopeo")
    layout = tmp_path_factory.mktemp("oci") / "src"
    digest = make_oci_image(layout, "v1", {"hello.txt": b"hello from registry A\n"})
    ref = f"{registries[0].repo('src')}:v1"
    push_oci(layout, "v1", ref)
    return ref, digest
