"""
The published JSON Schema of spec v1, generated from the pydantic models.

Editors (yaml-language-server: `# yaml-language-server: $schema=<file>`) and CI linters
use it; `mdeploy schema > mdeploy.schema.json` writes it. The models stay the single
source of truth: field descriptions come from their `Field(description=...)`.
"""

from __future__ import annotations

from typing import Any

from mdeploy.spec.models import API_VERSION, Deployment

__all__ = ["SCHEMA_DIALECT", "SCHEMA_ID", "schema"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = f"urn:mdeploy:schema:{API_VERSION.replace('/', ':')}:Deployment"


def schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of a spec file, keys as written in YAML."""
    body = Deployment.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        "title": "mdeploy Deployment",
        "description": f"mdeploy spec {API_VERSION}: one model deployment, placed on any cloud.",
        **{k: v for k, v in body.items() if k not in ("title", "description")},
    }
