"""The operator commands ``info`` (what is configured) and ``doctor`` (does it work).

:func:`run` is what the CLI calls: it checks the arguments and dispatches to
:mod:`.info` or :mod:`.doctor`; :mod:`.routecheck` holds doctor's checks of one route,
:mod:`.probe` the request of ``doctor --dry-run URL`` and :mod:`.report` its check
lines. Both commands return their whole report as text, with the exit status, and print
nothing themselves. Neither
ever shows a secret value or a backend credential: secret *references* (paths, names,
ARNs, vault URLs) are shown, credentials in the environment only as ``set``/``not set``,
and a header only as its name and scheme. The man page describes both reports and the
exit statuses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mlflow_secrets_helper.diagnostics.doctor import doctor
from mlflow_secrets_helper.diagnostics.info import info
from mlflow_secrets_helper.diagnostics.probe import base_path, origin_of, send_request
from mlflow_secrets_helper.diagnostics.routecheck import describe_header
from mlflow_secrets_helper.errors import InvalidInput
from mlflow_secrets_helper.protocol import parse_target
from mlflow_secrets_helper.text import quote

__all__ = ["describe_header", "doctor", "info", "origin_of", "run", "send_request"]


def run(
    action: str,
    *,
    rest: Sequence[str],
    as_json: bool,
    dry_run: str | None,
    timeout: float | None,
    env: Mapping[str, str],
) -> tuple[str, int]:
    """Run ``info`` or ``doctor``; return (stdout text, exit status).

    Usage errors raise :class:`InvalidInput`; everything else is in the report.
    """
    if rest:
        raise InvalidInput(f"unexpected argument {quote(rest[0])}", hints=["see --help"])
    if action == "info":
        if dry_run is not None:
            raise InvalidInput("--dry-run applies to doctor only", hints=["see --help"])
        return info(env, as_json=as_json, timeout=timeout)
    if action == "doctor":
        target = None
        if dry_run is not None:
            target = parse_target(dry_run)
            base_path(dry_run)  # reject a malformed path before any check runs
        return doctor(env, as_json=as_json, timeout=timeout, dry_run=dry_run, target=target)
    raise InvalidInput(f"unknown action {quote(action)}", hints=["see --help"])
