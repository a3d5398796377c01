"""
The spec layer: spec v1 models, a safe YAML loader with file:line errors, environment
overlays, prod guardrails and the JSON Schema. Imports nothing else from mdeploy except
`mdeploy.errors`.
"""

from mdeploy.spec.guardrails import check_guardrails, guardrail_issues, spec_hash
from mdeploy.spec.loader import PROD_ENV, LoadedSpec, list_environments, load_spec
from mdeploy.spec.models import API_VERSION, Deployment
from mdeploy.spec.schema import schema

__all__ = [
    "API_VERSION",
    "PROD_ENV",
    "Deployment",
    "LoadedSpec",
    "check_guardrails",
    "guardrail_issues",
    "list_environments",
    "load_spec",
    "schema",
    "spec_hash",
]
