"""The end-to-end tier: the server fixtures (thin pytest wrappers over ``devservers/``).

They are registered when this tier is collected rather than listed in the root
conftest's ``pytest_plugins``, so a run of the unit tier never loads them (or the SDKs
and servers behind them).
"""

from __future__ import annotations

import pytest

SERVER_FIXTURES = (
    "tests.support.moto_server",
    "tests.support.faultproxy",
    "tests.support.openbao",
    "tests.support.keyvault",
    "tests.support.mlflow_server",
    "tests.support.oidc",
)


def pytest_configure(config: pytest.Config) -> None:
    for name in SERVER_FIXTURES:
        config.pluginmanager.import_plugin(name)
