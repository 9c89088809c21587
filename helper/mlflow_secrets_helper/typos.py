"""Telling a typo from a setting: environment names and configuration keys we do not know.

A misspelt variable is worse than a missing one: ``MLFLOW_SECRETS_ALLOWED_HOST`` (singular)
leaves the allowlist unset and so turns it off. Every variable that starts with one of the
project's prefixes and is not a name the helper knows gets a warning with the closest
known name. The known names come from the code (:func:`config.known_variables`), never a
list kept here. :mod:`difflib` is imported only when there is something to suggest.
The rule is in the ENVIRONMENT section of the man page.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

#: every variable that starts with this, or with a provider's own prefix, is ours
CORE_PREFIX = "MLFLOW_SECRETS_"
#: ours too, although it has no prefix of its own
SINGLE_NAMES = ("MLFLOW_AUTH_HEADER_NAME",)


def closest(name: str, known: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """The known name most like ``name``, or None when nothing is close."""
    import difflib

    found = difflib.get_close_matches(name, sorted(known), n=1, cutoff=cutoff)
    return found[0] if found else None


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the closest known name, or an empty string."""
    match = closest(name, known)
    return f" (did you mean {match}?)" if match else ""


def unknown_variables(env: Mapping[str, str], known: frozenset[str]) -> list[str]:
    """The project's variables set in ``env`` that the helper does not know, sorted."""
    ours = prefixes()
    return sorted(
        name for name in env if name not in known and (name.startswith(ours) or _near_single(name))
    )


def prefixes() -> tuple[str, ...]:
    """``MLFLOW_SECRETS_``, ``MLFLOW_OIDC_`` and each provider's own prefix, from the specs."""
    from mlflow_secrets_helper import providers
    from mlflow_secrets_helper.config import OIDC_PREFIX

    return (CORE_PREFIX, OIDC_PREFIX, *(f"{spec.env_prefix}_" for spec in providers.specs()))


def _near_single(name: str) -> bool:
    # MLFLOW_AUTH_HEADER_NAME has no prefix of its own: a near miss of it is ours too,
    # but only a near one (MLflow's own MLFLOW_AUTH_CONFIG_PATH is not ours).
    if not name.startswith("MLFLOW_AUTH_"):
        return False
    return closest(name, SINGLE_NAMES, cutoff=0.85) is not None


def warnings(env: Mapping[str, str], known: frozenset[str]) -> list[str]:
    """One line per unknown variable: what it is, what it does (nothing) and the fix."""
    return [
        f"{name} is not a variable the helper reads, so it has no effect"
        + did_you_mean(name, known)
        for name in unknown_variables(env, known)
    ]
