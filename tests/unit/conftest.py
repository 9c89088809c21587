"""The fast tier: pure tests that need only the core dependencies.

A run of ``tests/unit`` alone must never load an SDK: a session check fails the run if
one was imported (by the helper or by a test). ``scripts/test`` also runs this tier in a
venv where no SDK and no MLflow is installed at all. (Where MLflow is installed, the
plugin's error type takes MLflow's exception as its base, and ``info`` looks up whether
``azure.keyvault.secrets`` exists, which imports the empty ``azure`` namespace packages:
neither is a provider SDK being used.)
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HEAVY = ("hvac", "boto3", "botocore", "azure.identity", "azure.core", "msal")
UNIT = Path(__file__).parent


@pytest.fixture(scope="session", autouse=True)
def _no_sdk_loaded(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not all(Path(str(item.path)).is_relative_to(UNIT) for item in request.session.items):
        return  # other tiers in the same run may load SDKs themselves
    loaded = sorted(n for n in sys.modules if any(n == h or n.startswith(h + ".") for h in HEAVY))
    assert not loaded, f"the fast tier loaded {', '.join(loaded[:5])}"
