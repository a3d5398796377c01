"""
Manifest media types: what a registry holds under a digest, and what each cloud accepts.

SageMaker's CreateModel refuses OCI manifests and indexes with a 400 "Unsupported manifest
media type application/vnd.oci.image.manifest.v1+json" (aws/amazon-sagemaker-feedback#180,
2025-04-28; mlflow/mlflow#13834, 2024-11-20, for application/vnd.oci.image.index.v1+json),
while ECR, ACR, Artifact Registry and any Distribution registry store Docker v2 schema 2. So
`mdeploy image build` pushes Docker v2 schema 2 (one digest valid everywhere), replication
keeps the manifest bytes (and so the type), and `up` refuses a type its target would refuse.

Pure functions over manifest bytes: no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mdeploy.errors import CloudError

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_LAYER",
    "DOCKER_LIST",
    "DOCKER_V2S1",
    "DOCKER_V2S2",
    "INDEX_TYPES",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "Blob",
    "blobs_of",
    "media_type_of",
]

DOCKER_V2S2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_V2S1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})


@dataclass(frozen=True)
class Blob:
    """One blob a manifest names: its digest, size in bytes and media type."""

    digest: str
    size: int
    media_type: str


def parse_manifest(raw: bytes) -> dict[str, Any]:
    """The manifest as a JSON object, or CloudError when the registry returned something else."""
    try:
        doc = json.loads(raw)
    except ValueError:
        raise CloudError("the registry returned a manifest that is not JSON") from None
    if not isinstance(doc, dict):
        raise CloudError("the registry returned a manifest that is not a JSON object")
    return doc


def media_type_of(raw: bytes) -> str:
    """
    The manifest's media type: its `mediaType` field, else inferred the way registries do
    (OCI made the field optional: `manifests` means an index, `config` a manifest; a
    schemaVersion 1 document is Docker v2 schema 1).
    """
    doc = parse_manifest(raw)
    declared = doc.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    if doc.get("schemaVersion") == 1:
        return DOCKER_V2S1
    if "manifests" in doc:
        return OCI_INDEX
    return OCI_MANIFEST


def blobs_of(raw: bytes) -> list[Blob]:
    """The config and every layer a single-image manifest names ([] for an index)."""
    doc = parse_manifest(raw)
    if media_type_of(raw) in INDEX_TYPES:
        return []
    entries = [doc.get("config"), *(doc.get("layers") or [])]
    out = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
            raise CloudError("the manifest names a blob without a digest")
        size = entry.get("size")
        out.append(Blob(entry["digest"], size if isinstance(size, int) else -1,
                        str(entry.get("mediaType", ""))))  # fmt: skip
    return out
