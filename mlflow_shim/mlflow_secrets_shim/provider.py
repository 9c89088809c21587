"""The entry point MLflow loads (group ``mlflow.request_auth_provider``).

MLflow instantiates every registered provider when its registry is first imported, so
the constructor does nothing that can fail; the auth object is built on first use.
"""

from __future__ import annotations

import threading

from mlflow.tracking.request_auth.abstract_request_auth_provider import RequestAuthProvider

from mlflow_secrets_shim.auth import HelperAuth

NAME = "mlflow-secrets-helper"

_lock = threading.Lock()


class SecretsHelperAuthProvider(RequestAuthProvider):
    """Selected with ``MLFLOW_TRACKING_AUTH=mlflow-secrets-helper``."""

    def __init__(self) -> None:
        self._auth: HelperAuth | None = None

    def get_name(self) -> str:
        return NAME

    def get_auth(self) -> HelperAuth:
        auth = self._auth
        if auth is None:
            with _lock:
                if self._auth is None:
                    self._auth = HelperAuth()
                auth = self._auth
        return auth
