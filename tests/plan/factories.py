"""Hand-built architectures, offers and specs for planner tests (no catalog needed)."""

from __future__ import annotations

from typing import Any

from mdeploy.catalog.models import ModelArchitecture, Offer
from mdeploy.spec.models import Deployment

MISTRAL_7B = ModelArchitecture(
    id="mistralai/Mistral-7B-Instruct-v0.3",
    params_b=7.25,
    layers=32,
    attention_heads=32,
    kv_heads=8,
    head_dim=128,
    hidden_size=4096,
    vocab_size=32768,
)


def make_spec(**overrides: Any) -> Deployment:
    """A valid spec; `overrides` maps top-level sections to dicts merged over the defaults."""
    doc: dict[str, Any] = {
        "apiVersion": "mdeploy/v1",
        "kind": "Deployment",
        "metadata": {"name": "t"},
        "model": {
            "id": MISTRAL_7B.id,
            "max_context": 16384,
            "architecture": {
                "params_b": 7.25,
                "layers": 32,
                "attention_heads": 32,
                "kv_heads": 8,
                "head_dim": 128,
                "hidden_size": 4096,
                "vocab_size": 32768,
            },
        },
        "serving": {"max_concurrency": 8},
        "placement": {"clouds": ["aws", "azure", "gcp", "coreweave"]},
    }
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(doc.get(section), dict):
            doc[section] = {**doc[section], **values}
        else:
            doc[section] = values
    return Deployment.model_validate(doc)


def make_offer(**fields: Any) -> Offer:
    base: dict[str, Any] = {
        "target": "aws",
        "region": "eu-west-3",
        "instance_type": "ml.g6e.xlarge",
        "gpu": "L40S",
        "gpu_count": 1,
        "gpu_memory_gib": 44.99,
        "hourly_usd": 2.5,
        "country": "FR",
        "jurisdiction": "EU",
        "price_source": "test",
        "estimate": False,
        "source": "test",
    }
    base.update(fields)
    return Offer(**base)
