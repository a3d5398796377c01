"""
Replication by digest with real skopeo between two real registries on 127.0.0.1.

The source is a two-platform OCI index made by hand and pushed to registry A; every check
reads the registries back independently of the code under test.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from image.helpers import INDEX, Registry, free_port, make_oci_image, need, push_oci
from typer.testing import CliRunner

from mdeploy.cli.app import app
from mdeploy.errors import (
    EXIT_CLOUD,
    EXIT_INPUT,
    EXIT_POLICY,
    EXIT_PREREQUISITE,
    CloudError,
    PolicyError,
)
from mdeploy.image import replicate, verify_image

pytestmark = pytest.mark.tools

# The module, not the function of the same name that mdeploy.image re-exports.
replicate_mod = importlib.import_module("mdeploy.image.replicate")

SPEC = """\
apiVersion: mdeploy/v1
kind: Deployment
metadata: {name: tiny-model}
model:
  id: acme/tiny-model
  revision: 0123456789abcdef0123456789abcdef01234567
environments:
  prod: {serving: {replicas: {min: 1, max: 1}}}
"""


@pytest.fixture(autouse=True)
def _tools(clean_auth_env: Path) -> None:
    need("skopeo", "docker-registry")


def raw_manifest(ref: str) -> bytes:
    """The manifest bytes a registry serves for `ref`, read with skopeo directly."""
    out = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return out.stdout


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    return path


def test_copy_keeps_the_digest_of_the_index_and_every_platform(
    registries: tuple[Registry, Registry], source_image: tuple[str, str]
) -> None:
    src, digest = source_image
    _, b = registries
    by_tag, by_digest = f"{b.repo()}:v1", f"{b.repo()}@{digest}"

    result = replicate(src, [by_tag, by_digest], insecure=True)

    assert result.digest == digest
    assert [c.verified for c in result.copies] == [True, True]
    assert all(c.digest == digest for c in result.copies)
    assert result.copies[0].pinned == f"{by_tag.rsplit(':', 1)[0]}@{digest}"
    for ref in (by_tag, by_digest):
        assert sha(raw_manifest(ref)) == digest  # what registry B really serves
    children = [m["digest"] for m in json.loads(raw_manifest(by_tag))["manifests"]]
    assert len(children) == 2
    repo_b = by_tag.rsplit(":", 1)[0]
    for child in children:  # --all: every platform manifest arrived unchanged
        assert sha(raw_manifest(f"{repo_b}@{child}")) == child


def test_plain_reference_means_docker_transport(
    registries: tuple[Registry, Registry], source_image: tuple[str, str]
) -> None:
    src, digest = source_image
    assert "://" not in src
    result = replicate(src, [f"{registries[1].repo()}:v1"], insecure=True)
    assert result.source == f"docker://{src}"
    assert result.copies[0].ref.startswith("docker://127.0.0.1:")
    assert result.digest == digest


def test_oci_layout_source_and_destination(
    registries: tuple[Registry, Registry], tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    digest = make_oci_image(layout, "t1", {"a.txt": b"from an oci layout\n"})
    out = tmp_path / "out"
    result = replicate(
        f"oci:{layout}:t1", [f"{registries[1].repo()}:t1", f"oci:{out}:copy"], insecure=True
    )
    assert result.digest == digest
    assert all(c.verified for c in result.copies)
    assert result.copies[1].pinned is None  # no registry, nothing to deploy from


def test_tampered_copy_is_detected_by_verify(
    registries: tuple[Registry, Registry], source_image: tuple[str, str], tmp_path: Path
) -> None:
    src, digest = source_image
    target = f"{registries[1].repo()}:v1"
    replicate(src, [target], insecure=True)
    runner = CliRunner()
    ok = runner.invoke(app, ["image", "verify", target, "--digest", digest, "--insecure"])
    assert ok.exit_code == 0, ok.output

    other = tmp_path / "other"
    forged = make_oci_image(other, "v1", {"hello.txt": b"not what was shipped\n"})
    push_oci(other, "v1", target)  # someone re-pushes the tag
    assert sha(raw_manifest(target)) == forged != digest

    bad = runner.invoke(
        app, ["image", "verify", target, "--digest", digest, "--insecure", "--json"]
    )
    assert bad.exit_code == EXIT_CLOUD
    doc = json.loads(bad.stdout)
    assert doc == {
        "ref": f"docker://{target}",
        "expected": digest,
        "digest": forged,
        "media_type": INDEX,
        "blobs_checked": 0,
        "verified": False,
    }
    assert target in bad.stderr and "Traceback" not in bad.output


def test_missing_platform_manifest_is_a_mismatch(
    registries: tuple[Registry, Registry], source_image: tuple[str, str]
) -> None:
    src, digest = source_image
    b = registries[1]
    repo = b.repo()
    replicate(src, [f"{repo}:v1"], insecure=True)
    child = json.loads(raw_manifest(f"{repo}:v1"))["manifests"][1]["digest"]
    name = repo.split("/", 1)[1]
    request = urllib.request.Request(
        f"http://{b.host}/v2/{name}/manifests/{child}", method="DELETE"
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 202

    with pytest.raises(CloudError, match="platform manifest") as info:
        verify_image(f"{repo}:v1", digest, insecure=True)
    assert repo in info.value.message


def test_destination_pinned_to_another_digest_is_refused(
    registries: tuple[Registry, Registry], source_image: tuple[str, str]
) -> None:
    src, _ = source_image
    wrong = "sha256:" + "0" * 64
    result = CliRunner().invoke(
        app, ["image", "replicate", src, "--to", f"{registries[1].repo()}@{wrong}", "--insecure"]
    )
    assert result.exit_code == EXIT_INPUT
    assert wrong in result.stderr


def test_prod_spec_refuses_a_mutable_tag(
    registries: tuple[Registry, Registry], source_image: tuple[str, str], tmp_path: Path
) -> None:
    src, _ = source_image
    target = f"{registries[1].repo()}:latest"
    args = [
        "image",
        "replicate",
        src,
        "--to",
        target,
        "--insecure",
        "--spec",
        str(spec_file(tmp_path)),
    ]

    refused = CliRunner().invoke(app, [*args, "--env", "prod"])

    assert refused.exit_code == EXIT_POLICY
    assert "mutable" in refused.stderr and target in refused.stderr
    with pytest.raises(subprocess.CalledProcessError):  # refused before anything was copied
        raw_manifest(target)
    allowed = CliRunner().invoke(app, args)  # same spec, no prod overlay: tags are fine
    assert allowed.exit_code == 0, allowed.output


def test_prod_spec_accepts_a_digest_destination(
    registries: tuple[Registry, Registry], source_image: tuple[str, str], tmp_path: Path
) -> None:
    src, digest = source_image
    target = f"{registries[1].repo()}@{digest}"
    args = ["image", "replicate", src, "--to", target, "--insecure", "--json"]
    result = CliRunner().invoke(app, [*args, "--spec", str(spec_file(tmp_path)), "--env", "prod"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["copies"][0]["verified"] is True
    with pytest.raises(PolicyError):
        replicate(src, [f"{registries[1].repo()}:v1"], insecure=True, strict=True)


def test_cli_json_contract_in_a_subprocess(
    registries: tuple[Registry, Registry], source_image: tuple[str, str]
) -> None:
    src, digest = source_image
    target = f"{registries[1].repo()}:v1"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from mdeploy.cli.app import main; main()",
            "image",
            "replicate",
            src,
            "--to",
            target,
            "--insecure",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert {"source", "digest", "media_type", "copies"} <= doc.keys()
    assert doc["digest"] == digest
    assert doc["media_type"] == INDEX  # the hand-made source is an OCI index, kept as is
    assert doc["copies"] == [
        {
            "ref": f"docker://{target}",
            "digest": digest,
            "media_type": INDEX,
            "verified": True,
            "pinned": f"{target.rsplit(':', 1)[0]}@{digest}",
        }
    ]


def test_bad_digest_flag_is_an_input_error() -> None:
    result = CliRunner().invoke(
        app, ["image", "verify", "127.0.0.1:1/x:1", "--digest", "sha256:abc"]
    )
    assert result.exit_code == EXIT_INPUT
    assert "sha256" in result.stderr


def test_login_goes_through_a_private_auth_file(
    auth_registry: tuple[Registry, str, str],
    source_image: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry, user, password = auth_registry
    src, digest = source_image
    target = f"{registry.repo()}:v1"
    with pytest.raises(CloudError) as denied:  # no login: the registry refuses
        replicate(src, [target], insecure=True)
    assert target.split("/")[0] in denied.value.message

    seen: list[tuple[list[str], int | None]] = []
    real_run = replicate_mod.run_tool

    def spy(argv: list[str], **kwargs: object) -> bytes:
        authfile = next((a for i, a in enumerate(argv) if argv[i - 1].endswith("authfile")), None)
        mode = stat.S_IMODE(os.stat(authfile).st_mode) if authfile else None
        seen.append((list(argv), mode))
        return real_run(argv, **kwargs)

    monkeypatch.setattr(replicate_mod, "run_tool", spy)
    monkeypatch.setenv("MDEPLOY_REGISTRY_USER", user)
    monkeypatch.setenv("MDEPLOY_REGISTRY_PASSWORD", password)
    monkeypatch.setenv("MDEPLOY_REGISTRY_HOST", registry.host)

    result = replicate(src, [target], insecure=True)

    assert result.copies[0].verified and result.digest == digest
    assert seen and all(mode == 0o600 for _, mode in seen)
    assert not any(password in " ".join(argv) for argv, _ in seen)
    used = {a for argv, _ in seen for i, a in enumerate(argv) if argv[i - 1].endswith("authfile")}
    assert used and not any(Path(p).exists() for p in used)  # deleted afterwards


def _blob_path(registry: Registry, digest: str) -> Path:
    """Where Distribution's filesystem storage keeps a blob's bytes."""
    hexd = digest.removeprefix("sha256:")
    return registry.root / "data/docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"


def test_verify_hashes_every_blob_and_reports_a_corrupted_layer(
    registries: tuple[Registry, Registry], tmp_path: Path
) -> None:
    b = registries[1]
    layout = tmp_path / "layout"
    digest = make_oci_image(layout, "v1", {"weights.txt": b"the layer to corrupt\n"})
    target = f"{b.repo()}:v1"
    push_oci(layout, "v1", target)
    runner = CliRunner()
    ok = runner.invoke(app, ["image", "verify", target, "--digest", digest, "--insecure", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["blobs_checked"] == 4  # 2 platforms x (config + layer)

    child = json.loads(raw_manifest(target))["manifests"][1]["digest"]
    layer = json.loads(raw_manifest(f"{target.rsplit(':', 1)[0]}@{child}"))["layers"][0]
    blob = _blob_path(b, layer["digest"])
    blob.write_bytes(b"x" * len(blob.read_bytes()))  # same size, other bytes, on disk
    assert sha(raw_manifest(target)) == digest  # the manifests are untouched

    bad = runner.invoke(app, ["image", "verify", target, "--digest", digest, "--insecure"])
    assert bad.exit_code == EXIT_CLOUD, bad.output
    assert layer["digest"] in bad.stderr and "corrupted" in bad.stderr
    assert "Traceback" not in bad.output


def test_unreachable_registry_is_exit_3_not_a_mismatch() -> None:
    target = f"127.0.0.1:{free_port()}/nothing:v1"  # nothing listens there
    result = CliRunner().invoke(
        app, ["image", "verify", target, "--digest", "sha256:" + "0" * 64, "--insecure"]
    )
    assert result.exit_code == EXIT_PREREQUISITE, result.output
    assert "unreachable" in result.stderr and "Traceback" not in result.output
