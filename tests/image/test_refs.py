"""Image reference parsing: skopeo transports, plain references, digests, the prod rule."""

from __future__ import annotations

import pytest

from mdeploy.errors import InputError, PolicyError
from mdeploy.image.refs import check_digest, parse_ref, require_pinned

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "name", "tag", "digest"),
    [
        ("127.0.0.1:5000/team/vllm:1", "127.0.0.1:5000/team/vllm", "1", None),
        ("docker://127.0.0.1:5000/vllm:1", "127.0.0.1:5000/vllm", "1", None),
        (f"ghcr.io/acme/vllm@{DIGEST}", "ghcr.io/acme/vllm", None, DIGEST),
        ("vllm/vllm-openai:v0.14.0", "docker.io/vllm/vllm-openai", "v0.14.0", None),
        ("ubuntu", "docker.io/library/ubuntu", None, None),
        ("localhost/mdeploy-vllm:0.1.0", "localhost/mdeploy-vllm", "0.1.0", None),
    ],
)
def test_plain_and_docker_references(
    text: str, name: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_ref(text)
    assert (ref.transport, ref.name, ref.tag, ref.digest) == ("docker", name, tag, digest)
    assert str(ref).startswith("docker://")
    assert parse_ref(str(ref)) == ref  # the printed form parses back to the same reference


def test_registry_parts_and_pinned_form() -> None:
    ref = parse_ref("123456789012.dkr.ecr.eu-west-3.amazonaws.com/mdeploy/vllm:1")
    assert ref.host == "123456789012.dkr.ecr.eu-west-3.amazonaws.com"
    assert ref.repository == "mdeploy/vllm"
    assert ref.pinned is None
    pinned = ref.with_digest(DIGEST)
    assert pinned.tag is None  # skopeo refuses tag and digest together
    assert pinned.pinned == f"123456789012.dkr.ecr.eu-west-3.amazonaws.com/mdeploy/vllm@{DIGEST}"


@pytest.mark.parametrize(
    ("text", "transport"),
    [
        ("oci:/tmp/layout:v1", "oci"),
        ("containers-storage:localhost/base:1", "containers-storage"),
        ("dir:/tmp/x", "dir"),
        ("oci-archive:/tmp/a.tar", "oci-archive"),
    ],
)
def test_local_transports_keep_their_text(text: str, transport: str) -> None:
    ref = parse_ref(text)
    assert ref.transport == transport
    assert not ref.is_registry and ref.host is None and ref.pinned is None
    assert str(ref) == text
    assert ref.with_digest(DIGEST) == ref


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ftp://x/y",
        "Host.example/UPPER:1",
        "example.com/x:bad tag",
        f"example.com/x@{DIGEST[:-1]}",
    ],
)
def test_malformed_references_are_input_errors(text: str) -> None:
    with pytest.raises(InputError):
        parse_ref(text)


def test_check_digest() -> None:
    assert check_digest(DIGEST) == DIGEST
    for bad in ("sha256:ABC", "md5:" + "0" * 32, DIGEST.upper()):
        with pytest.raises(InputError):
            check_digest(bad)


def test_require_pinned_names_every_mutable_reference() -> None:
    refs = [
        parse_ref(f"r.example/a@{DIGEST}"),
        parse_ref("r.example/b:latest"),
        parse_ref("oci:/l:x"),
    ]
    with pytest.raises(PolicyError) as info:
        require_pinned(refs, why="prod")
    assert "r.example/b:latest" in info.value.message and "oci:/l:x" in info.value.message
    assert "r.example/a" not in info.value.message
    require_pinned(refs[:1], why="prod")  # digest only: accepted
