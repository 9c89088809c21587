"""The one exception the plugin raises.

It is an :class:`MlflowException`, so MLflow callers see the helper's failure the way
they see any other MLflow error. Messages come from the helper's one-line error report
or describe the process failure; they never contain a header value or helper stdout.
"""

from __future__ import annotations

from mlflow.exceptions import MlflowException


class HelperError(MlflowException):
    """``mlflow-secrets-helper`` could not provide a credential, so no request is sent."""

    def __init__(self, message: str, *, kind: str = "helper-failed", retryable: bool = False):
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable
