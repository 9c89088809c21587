"""The one exception the plugin raises.

Inside MLflow it is an :class:`MlflowException`, so MLflow callers see the helper's
failure the way they see any other MLflow error. The plugin's protocol and memory
modules do not need MLflow (their unit tests run without it); there the base is
:class:`Exception`. Messages come from the helper's one-line error report or describe
the process failure; they never contain a header value or helper stdout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.exceptions import MlflowException as _Base
else:
    try:
        from mlflow.exceptions import MlflowException as _Base
    except ModuleNotFoundError:  # the plugin itself is only ever loaded by MLflow
        _Base = Exception


class HelperError(_Base):
    """``mlflow-secrets-helper`` could not provide a credential, so no request is sent."""

    def __init__(self, message: str, *, kind: str = "helper-failed", retryable: bool = False):
        super().__init__(message)
        self.message = message  # MlflowException sets it too; Exception does not
        self.kind = kind
        self.retryable = retryable
