"""Fixtures for planner tests; the factories live in factories.py."""

from __future__ import annotations

import pytest
from plan.factories import make_spec

from mdeploy.spec.models import Deployment


@pytest.fixture
def spec() -> Deployment:
    return make_spec()
