"""
The inference image: its packaged build context, and a real `buildah --isolation chroot` build
of templates/Dockerfile on a small base made by the tests (pinned by digest in registry A).

Every property is read back independently of the code under test: `buildah inspect`, the
mounted root filesystem, and skopeo against the registry the image was pushed to.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import stat
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import replace
from importlib.resources import files
from pathlib import Path

import pytest
from image.helpers import Registry, need
from typer.testing import CliRunner

from mdeploy import __version__
from mdeploy.cli.app import app
from mdeploy.errors import EXIT_POLICY, EXIT_PREREQUISITE
from mdeploy.image import BuildRequest, BuildResult, ImageLabels, build_image, replicate
from mdeploy.image.auth import AuthFile
from mdeploy.image.build import build_argv
from mdeploy.image.context import assemble_context, default_base_image
from mdeploy.image.manifests import DOCKER_V2S2
from mdeploy.image.refs import parse_ref
from mdeploy.spec import load_spec, spec_hash

REPO = Path(__file__).resolve().parents[2]
PINNED = "sha256:1d6866b87630d94f5e0cdae55ab5abb4ce0b03fcb84d9d10612f9d518d19d4fd"
REVISION = "0123456789abcdef0123456789abcdef01234567"
SPEC = f"""\
apiVersion: mdeploy/v1
kind: Deployment
metadata: {{name: tiny-model}}
model:
  id: acme/tiny-model
  revision: {REVISION}
environments:
  prod: {{serving: {{replicas: {{min: 1, max: 1}}}}}}
"""
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def serve_sources() -> dict[str, bytes]:
    """The adapter's Python files as the installed package has them."""
    root = files("mdeploy.serve")
    return {p.name: p.read_bytes() for p in root.iterdir() if p.name.endswith(".py")}


def buildah_json(*args: str) -> dict:
    out = subprocess.run(["buildah", *args], check=True, capture_output=True, timeout=60)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def base(source_image: tuple[str, str]) -> str:
    """The test's base image in registry A, pinned by digest (a two-platform index)."""
    ref, digest = source_image
    return f"{ref.rsplit(':', 1)[0]}@{digest}"


@pytest.fixture(scope="module")
def built(
    registries: tuple[Registry, Registry], base: str, containers_storage: Path
) -> tuple[BuildResult, BuildRequest]:
    need("buildah", "skopeo")
    request = BuildRequest(
        tag="localhost/mdeploy-test:1",
        base=base,
        insecure=True,
        labels=ImageLabels("acme/tiny-model", REVISION, "ab" * 32),
        push=f"{registries[1].repo('built')}:1",
    )
    return build_image(request), request


@pytest.fixture
def rootfs(built: tuple[BuildResult, BuildRequest]) -> Iterator[Path]:
    """The built image's root filesystem, mounted read-only for inspection."""
    result, _ = built
    run = {"check": True, "capture_output": True, "text": True, "timeout": 60}
    container = subprocess.run(
        ["buildah", "from", "--pull=false", result.image_id], **run
    ).stdout.strip()
    try:
        yield Path(subprocess.run(["buildah", "mount", container], **run).stdout.strip())
    finally:
        subprocess.run(["buildah", "umount", container], **run)
        subprocess.run(["buildah", "rm", container], **run)


# --- the context and the Dockerfile, no tool needed ------------------------------------------


def test_default_base_is_the_pinned_vllm_release() -> None:
    base = default_base_image()
    assert base == f"docker.io/vllm/vllm-openai@{PINNED}"
    assert parse_ref(base).digest == PINNED


def test_dockerfile_builds_without_run_steps_or_secrets() -> None:
    text = (REPO / "templates" / "Dockerfile").read_text()
    instructions = [
        line.split()[0]
        for line in text.splitlines()
        if line and not line[0].isspace() and not line.startswith("#")
    ]
    assert "RUN" not in instructions and "ADD" not in instructions
    assert "USER 10001:0" in text
    for label in ("model.id", "model.revision", "spec-hash", "version"):
        assert f"ai.mdeploy.{label}=" in text
    for line in text.splitlines():
        if line.startswith(("ARG", "ENV")) or line.startswith("    "):
            assert "TOKEN" not in line and "PASSWORD" not in line.upper()


def test_context_boot_starts_with_the_standard_library_alone(tmp_path: Path) -> None:
    """entrypoint.sh execs `python3 -m mdeploy.serve.boot`: the context's copy (the real
    mdeploy.serve package init included) runs with no site-packages at all, before any of
    the adapter's dependencies could be missing."""
    context = assemble_context(tmp_path / "ctx", mtime=0)
    proc = subprocess.run(
        [sys.executable, "-S", "-m", "mdeploy.serve.boot", "engine-args", "--model", "acme/m"],
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(context / "app"),
            "MDEPLOY_ENGINE_ARGS": '["--max-model-len", "4096"]',
            "MDEPLOY_MODEL_REVISION": "r1",
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [
        "--model", "acme/m", "--max-model-len", "4096", "--revision", "r1",
    ]  # fmt: skip


def test_context_is_assembled_from_the_installed_package(tmp_path: Path) -> None:
    context = assemble_context(tmp_path / "ctx", mtime=0)
    for name in ("Dockerfile", "entrypoint.sh"):
        assert (context / name).read_bytes() == (REPO / "templates" / name).read_bytes()
    assert stat.S_IMODE((context / "entrypoint.sh").stat().st_mode) == 0o755
    assert not (context / "boot.py").exists()  # it is mdeploy.serve.boot now
    serve = context / "app" / "mdeploy" / "serve"
    assert {p.name: p.read_bytes() for p in serve.glob("*.py")} == serve_sources()
    assert "boot.py" in serve_sources()
    init = (context / "app" / "mdeploy" / "__init__.py").read_text()
    assert "import" not in init  # the image's mdeploy package carries nothing but serve
    assert not list(context.rglob("__pycache__"))
    assert sorted(p.name for p in (context / "app" / "mdeploy").iterdir()) == [
        "__init__.py",
        "serve",
    ]
    assert (context / "home" / "mdeploy" / ".cache" / "huggingface").is_dir()
    assert {p.stat().st_mtime for p in context.rglob("*")} == {0}
    with pytest.raises(FileExistsError):
        assemble_context(context)


def test_build_argv_is_reproducible_and_carries_no_secret(tmp_path: Path) -> None:
    request = BuildRequest(tag="t:1", base="r.example/b@" + PINNED)
    authfile = AuthFile(tmp_path / "auth.json", ("hunter2",))
    argv = build_argv(
        "buildah",
        "/usr/bin/buildah",
        request,
        request.base or "",
        ["--build-arg", "MODEL_ID=x"],
        1700000000,
        tmp_path,
        tmp_path / "iid",
        authfile,
    )
    joined = " ".join(argv)
    assert "--isolation chroot" in joined and "--timestamp 1700000000" in joined
    assert "--identity-label=false" in argv and f"BASE_IMAGE=r.example/b@{PINNED}" in argv
    assert "--authfile" in argv and "hunter2" not in joined
    assert argv[argv.index("--format") + 1] == "oci"  # reproducible locally; v2s2 on push
    docker = build_argv("docker", "docker", request, "b", [], 5, tmp_path, tmp_path / "i", None)
    assert "SOURCE_DATE_EPOCH=5" in docker and "--isolation" not in docker


def test_emit_context_writes_the_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["image", "build", "--emit-context", str(tmp_path / "c"), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"context": str(tmp_path / "c")}
    assert (tmp_path / "c" / "app" / "mdeploy" / "serve" / "__main__.py").is_file()


def test_no_build_tool_is_exit_3_with_an_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    runner = CliRunner()
    result = runner.invoke(app, ["image", "build", "--base", f"r.example/b@{PINNED}"])
    assert result.exit_code == EXIT_PREREQUISITE
    assert "buildah, podman, docker" in result.stderr and "apt-get install buildah" in result.stderr
    asked = runner.invoke(app, ["image", "build", "--tool", "podman"])
    assert asked.exit_code == EXIT_PREREQUISITE and "podman" in asked.stderr
    copy = runner.invoke(app, ["image", "replicate", "r.example/a:1", "--to", "r.example/b:1"])
    assert copy.exit_code == EXIT_PREREQUISITE and "apt-get install skopeo" in copy.stderr
    assert "Traceback" not in result.output + asked.output + copy.output


def test_prod_spec_refuses_a_base_without_digest(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    args = [
        "image",
        "build",
        "--spec",
        str(spec),
        "--env",
        "prod",
        "--base",
        "r.example/vllm:latest",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == EXIT_POLICY
    assert "r.example/vllm:latest" in result.stderr


# --- a real buildah build --------------------------------------------------------------------


@pytest.mark.tools
def test_reported_digest_and_id_match_buildah(built: tuple[BuildResult, BuildRequest]) -> None:
    result, _ = built
    assert result.tool == "buildah"
    doc = buildah_json("inspect", "--type", "image", "localhost/mdeploy-test:1")
    assert doc["FromImageID"] == result.image_id.removeprefix("sha256:")
    assert doc["FromImageDigest"] == result.digest
    assert result.digest and result.digest.startswith("sha256:")


@pytest.mark.tools
def test_image_config_labels_user_and_entrypoint(
    built: tuple[BuildResult, BuildRequest], base: str
) -> None:
    result, _ = built
    config = buildah_json("inspect", "--type", "image", result.image_id)["OCIv1"]
    labels = config["config"]["Labels"]
    assert labels == result.labels
    assert labels["ai.mdeploy.model.id"] == "acme/tiny-model"
    assert labels["ai.mdeploy.model.revision"] == REVISION
    assert labels["ai.mdeploy.spec-hash"] == "ab" * 32
    assert labels["ai.mdeploy.version"] == labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.base.name"] == base
    assert labels["org.opencontainers.image.created"] == "1970-01-01T00:00:00Z"
    assert "io.buildah.version" not in labels  # would tie the digest to the builder version
    assert config["config"]["User"] == "10001:0"
    assert config["config"]["Entrypoint"] == ["/opt/mdeploy/bin/entrypoint.sh"]
    assert not config["config"].get("Cmd")
    assert "8080/tcp" in config["config"]["ExposedPorts"]
    env = dict(item.split("=", 1) for item in config["config"]["Env"])
    assert env["PYTHONPATH"] == "/opt/mdeploy/app"
    assert env["HF_HOME"].startswith(env["HOME"])
    assert not [k for k in env if "TOKEN" in k or "SECRET" in k or "PASSWORD" in k]
    assert config["architecture"] == ARCH  # buildah picked our platform from the index
    assert config["created"].startswith("1970-01-01")


@pytest.mark.tools
def test_image_files_are_the_adapter_and_the_entrypoint(rootfs: Path) -> None:
    app_dir = rootfs / "opt" / "mdeploy" / "app" / "mdeploy"
    serve = {p.name: p.read_bytes() for p in (app_dir / "serve").glob("*.py")}
    assert serve == serve_sources()
    assert sorted(p.name for p in app_dir.iterdir()) == ["__init__.py", "serve"]
    bin_dir = rootfs / "opt" / "mdeploy" / "bin"
    assert sorted(p.name for p in bin_dir.iterdir()) == ["entrypoint.sh"]
    path = bin_dir / "entrypoint.sh"
    assert path.read_bytes() == (REPO / "templates" / "entrypoint.sh").read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o755 and path.stat().st_uid == 0
    home = rootfs / "home" / "mdeploy"
    for path in (home, home / ".cache" / "huggingface", home / "weights"):
        info = path.stat()  # writable by 10001 and by any UID in group 0 (OpenShift)
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (10001, 0, 0o775)
    assert (rootfs / "etc" / "platform").read_text() == f"linux/{ARCH}\n"  # from the base


@pytest.mark.tools
def test_adapter_imports_from_the_image_alone(rootfs: Path) -> None:
    """The image's copy of mdeploy.serve imports without the rest of mdeploy."""
    code = (
        "import importlib, json, pkgutil, sys, mdeploy.serve as s\n"
        "mods = [importlib.import_module('mdeploy.serve.' + m.name).__file__"
        " for m in pkgutil.iter_modules(s.__path__) if m.name != '__main__']\n"
        "other = sorted(k for k in sys.modules if k.startswith('mdeploy.') and"
        " not k.startswith('mdeploy.serve'))\n"
        "print(json.dumps({'mods': mods, 'other': other}))\n"
    )
    # The adapter's own dependencies (uvicorn, httpx) come from site-packages, as they come
    # from the vLLM image; -S keeps the .pth files (and so the editable mdeploy) out.
    paths = [
        str(rootfs / "opt" / "mdeploy" / "app"),
        *sorted(set(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    out = subprocess.run(
        [sys.executable, "-S", "-c", code],
        env=env,
        cwd=rootfs,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["mods"] and all(m.startswith(str(rootfs)) for m in doc["mods"])
    assert doc["other"] == []


@pytest.mark.tools
def test_pushed_digest_is_what_the_registry_serves(built: tuple[BuildResult, BuildRequest]) -> None:
    result, request = built
    assert result.pushed == f"docker://{request.push}"
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{request.push}"],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    assert result.pushed_digest == "sha256:" + hashlib.sha256(raw).hexdigest()


@pytest.mark.tools
def test_pushed_manifest_is_docker_v2_schema_2(
    built: tuple[BuildResult, BuildRequest], registries: tuple[Registry, Registry]
) -> None:
    """SageMaker refuses OCI manifests: the registry must serve Docker v2 schema 2 types."""
    result, request = built
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{request.push}"],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    doc = json.loads(raw)
    assert doc["mediaType"] == DOCKER_V2S2 == result.pushed_media_type
    assert doc["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    assert {layer["mediaType"] for layer in doc["layers"]} == {
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    }
    # The conversion is deterministic: the same image pushed again has the same digest
    # (to the same registry: a registry that already holds a base layer gets its blob reused).
    again = build_image(replace(request, push=f"{registries[1].repo('again')}:1"))
    assert again.pushed_digest == result.pushed_digest


@pytest.mark.tools
def test_same_inputs_give_the_same_image(built: tuple[BuildResult, BuildRequest]) -> None:
    first, request = built
    again = build_image(replace(request, tag="localhost/mdeploy-test:again", push=None))
    assert (again.image_id, again.digest) == (first.image_id, first.digest)
    changed = build_image(
        replace(
            request,
            tag="localhost/mdeploy-test:other",
            push=None,
            labels=ImageLabels("acme/other", REVISION, "cd" * 32),
        )
    )
    assert changed.image_id != first.image_id


@pytest.mark.tools
def test_local_image_replicates_with_the_reported_digest(
    built: tuple[BuildResult, BuildRequest], registries: tuple[Registry, Registry]
) -> None:
    result, request = built
    copy = replicate(
        f"containers-storage:{request.tag}",
        [f"{registries[0].repo('from-local')}:1"],
        insecure=True,
    )
    assert copy.digest == result.digest and copy.copies[0].verified


@pytest.mark.tools
def test_cli_build_fills_labels_from_the_spec(
    base: str, containers_storage: Path, tmp_path: Path
) -> None:
    need("buildah")
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    args = [
        "image",
        "build",
        "--spec",
        str(spec),
        "--env",
        "prod",
        "--base",
        base,
        "--tag",
        "localhost/mdeploy-test:spec",
        "--insecure",
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    labels = doc["labels"]
    assert labels["ai.mdeploy.model.id"] == "acme/tiny-model"
    assert labels["ai.mdeploy.model.revision"] == REVISION
    assert labels["ai.mdeploy.spec-hash"] == spec_hash(load_spec(spec, env="prod"))
    assert doc["tool"] == "buildah" and doc["pushed"] is None
    assert (
        doc["digest"]
        == buildah_json("inspect", "--type", "image", doc["image_id"])["FromImageDigest"]
    )
