"""Real MLflow tracking servers that demand authentication, on 127.0.0.1 (pytest plugin
over :class:`devservers.mlflow.MlflowServer`).

Fixtures (session scope, started on first use, stopped at session end):

``mlflow_basic_server``
    ``mlflow server --app-name basic-auth``: MLflow's own basic-auth app. Users are
    created and passwords changed through its REST API (:meth:`MlflowServer.create_user`,
    :meth:`MlflowServer.set_password`).
``mlflow_bearer_server``
    the same app behind a bearer-token gate, tokens mapped to MLflow users
    (:meth:`MlflowServer.set_tokens`).

``HELPER_TEST_SERVER_PYTHON`` names the interpreter that runs the servers
(default: this one), so a client-only environment (an older MLflow client) can test
against a server from the main environment (``.ci/mlflow-compat.sh``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devservers.mlflow import ADMIN_PASSWORD, ADMIN_TOKEN, ADMIN_USER, MlflowServer
from devservers.process import StartError

__all__ = ["ADMIN", "ADMIN_TOKEN", "SERVER_PYTHON", "MlflowServer"]

ADMIN = (ADMIN_USER, ADMIN_PASSWORD)
SERVER_PYTHON = "HELPER_TEST_SERVER_PYTHON"


def _serve(directory: Path, *, bearer: bool) -> Iterator[MlflowServer]:
    server = MlflowServer(directory, bearer=bearer, python=os.environ.get(SERVER_PYTHON))
    try:
        server.start()
    except StartError as exc:
        server.stop()
        pytest.fail(f"{exc}:\n{exc.tail()}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mlflow_basic_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    yield from _serve(tmp_path_factory.mktemp("mlflow-basic"), bearer=False)


@pytest.fixture(scope="session")
def mlflow_bearer_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    yield from _serve(tmp_path_factory.mktemp("mlflow-bearer"), bearer=True)
