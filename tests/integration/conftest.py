"""Integration tests use the shared fixtures in tests/conftest.py (real services)."""

from __future__ import annotations

import pytest

from tests.integration.harness import Harness


@pytest.fixture
def h(harness: Harness) -> Harness:
    """The harness; the demo schema carries the generated tracking (catalogue.generate)."""
    return harness
