"""The fast tier: pure tests that need only the core dependencies.

A run of ``tests/unit`` alone must never load an SDK or MLflow: a session check fails
the run if one of them was imported (by the helper or by a test).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HEAVY = ("hvac", "boto3", "botocore", "azure", "mlflow")
UNIT = Path(__file__).parent


@pytest.fixture(scope="session", autouse=True)
def _no_sdk_loaded(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not all(Path(str(item.path)).is_relative_to(UNIT) for item in request.session.items):
        return  # other tiers in the same run may load SDKs themselves
    loaded = sorted(name for name in sys.modules if name.partition(".")[0] in HEAVY)
    assert not loaded, f"the fast tier loaded {', '.join(loaded[:5])}"
