"""The answer's formats: header, token, json and git, for a success and for a failure.

Pure text: :mod:`mlflow_secrets_helper.cli` decides what to print and where. The rules
are the OUTPUT and GIT sections of the man page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlflow_secrets_helper.errors import HelperError, HostNotConfigured, InvalidInput
from mlflow_secrets_helper.text import escape

if TYPE_CHECKING:
    from mlflow_secrets_helper.resolve import Answer


class NeedsAuthtype(HostNotConfigured):
    """A bearer host asked for by a git too old to take a token: served, but not to git."""


def success_output(fmt: str, answer: Answer, *, authtype: bool) -> str:
    cred = answer.credential
    if fmt == "header":
        return f"{answer.header_name}: {answer.header_value().expose()}\n"
    if fmt == "token":
        if cred.mode != "bearer":
            raise InvalidInput(
                "--format token needs a bearer credential, and this host's secret is basic",
                hints=["use --format header or --format git"],
            )
        return cred.token.expose() + "\n"
    if fmt == "json":
        import json

        return (
            json.dumps(
                {
                    "v": 1,
                    "ok": {
                        "header": {
                            "name": answer.header_name,
                            "value": answer.header_value().expose(),
                        },
                        "credential_id": answer.credential_id,
                        "expires_at": _seconds(answer.expires_at),
                        "refresh_after": _seconds(answer.refresh_after),
                        "source": answer.source,
                    },
                },
                separators=(",", ":"),
            )
            + "\n"
        )
    # git
    expiry = _seconds(answer.expires_at)
    if cred.mode == "basic":
        lines = [f"username={cred.username.expose()}", f"password={cred.password.expose()}"]
    elif authtype:
        lines = [
            "capability[]=authtype",
            "authtype=Bearer",
            f"credential={cred.token.expose()}",
            "ephemeral=1",
        ]
    else:
        # Not a failure git should stop on: another helper may still serve the host.
        raise NeedsAuthtype(
            "this host needs a bearer token, which git can only take with the authtype capability",
            hints=["git 2.46 or newer sends capability[]=authtype"],
        )
    if expiry is not None:
        lines.append(f"password_expiry_utc={expiry}")
    return "\n".join(lines) + "\n"


def failure_output(fmt: str, exc: HelperError) -> str:
    if fmt == "json":
        import json

        return (
            json.dumps(
                {
                    "v": 1,
                    "err": {
                        "kind": exc.kind,
                        "message": escape(exc.message),
                        "retryable": exc.retryable,
                    },
                },
                separators=(",", ":"),
            )
            + "\n"
        )
    if fmt == "git" and exc.exit_code != 1:
        return "quit=1\n"  # a host we serve failed: stop git from prompting
    return ""


def _seconds(value: float | None) -> int | None:
    return None if value is None else int(value)
