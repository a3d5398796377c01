"""
Conformance tests: what each target would send, checked against the cloud's own machine-readable
authorities (botocore service models for AWS). Helpers live beside this file (`_aws.py`); the
graphs come from the real components under the recording mock engine, never from our fakes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def no_hf_token(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Synth supplies a placeholder for unset env: secrets; make sure none leaks in."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield
