"""``doctor``: does it work? Checks run in order, one :class:`~.report.Check` each.

The configuration loads; the host policy; for each route, the checks of
:mod:`.routecheck` (settings, SDK, a real read, the OAuth exchange, the secret format and
the header, shown as ``Authorization: Bearer <redacted>``); the cache directory,
where its key is kept and a probe entry written, read back and erased. With
``--dry-run URL`` it then resolves a header for the URL as ``get`` does (policy,
cache, provider) and hands it to :mod:`.probe` for one request.

The exit status is the code of the first failure (0 when nothing failed); the table of
codes is in the man page (mlflow-secrets-helper(1), section ``doctor``). Neither a
secret value nor a backend credential is ever part of a check.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mlflow_secrets_helper import config as config_module
from mlflow_secrets_helper import providers, typos
from mlflow_secrets_helper.cache import Cache, CacheIdentity, CacheStatus, open_user_cache
from mlflow_secrets_helper.config import Config
from mlflow_secrets_helper.diagnostics.info import policy_warnings
from mlflow_secrets_helper.diagnostics.probe import base_path, send_request, truthy
from mlflow_secrets_helper.diagnostics.report import Check, Status, exit_status, render
from mlflow_secrets_helper.diagnostics.routecheck import check_route, describe_header, unexpected
from mlflow_secrets_helper.errors import HelperError
from mlflow_secrets_helper.protocol import Target
from mlflow_secrets_helper.resolve import Resolver
from mlflow_secrets_helper.secret import (
    Bearer,
    Secret,
)

#: the identity of doctor's cache probe; no real target can have it (``.invalid`` is reserved)
PROBE_IDENTITY = CacheIdentity(
    scheme="https",
    host="doctor-probe.invalid",
    port=443,
    provider="doctor",
    secret_ref="cache-probe",  # noqa: S106 - a reference, not a password
    version="",
    header_name="X-Doctor-Probe",
    auth_mode="bearer",
)


@dataclass
class _Doctor:
    env: Mapping[str, str]
    checks: list[Check] = field(default_factory=list)

    def add(self, status: Status, message: str, *hints: str, exit_code: int = 0) -> None:
        if status == "FAIL" and not exit_code:
            exit_code = 1
        self.checks.append(Check(status, message, tuple(hints), exit_code))

    def extend(self, checks: Sequence[Check]) -> None:
        self.checks.extend(checks)


def doctor(
    env: Mapping[str, str],
    *,
    as_json: bool = False,
    timeout: float | None = None,
    dry_run: str | None = None,
    target: Target | None = None,
) -> tuple[str, int]:
    """Run every check; return the report (text or JSON) and the exit status."""
    report = _Doctor(env)
    _check_variables(report)
    config = _check_config(report, timeout)
    if config is not None:
        _check_policy(report, config)
        _check_routes(report, config)
        cache = _check_cache(report, config)
        if dry_run is not None and target is not None and cache is not None:
            _check_dry_run(report, config, cache, dry_run, target)
    return render(report.checks, as_json=as_json), exit_status(report.checks)


def _check_variables(report: _Doctor) -> None:
    """A misspelt variable does nothing, silently: a typo'd allowlist is no allowlist."""
    known = config_module.known_variables()
    for name in typos.unknown_variables(report.env, known):
        match = typos.closest(name, known)
        report.add(
            "warn",
            f"environment: {name} is not a variable the helper reads, so it has no effect",
            f"did you mean {match}?" if match else f"remove {name}",
        )


def _check_config(report: _Doctor, timeout: float | None) -> Config | None:
    try:
        config = config_module.load(report.env, timeout=timeout)
    except HelperError as exc:
        report.extend([Check.failed("configuration", exc)])
        return None
    where = (
        f"config file {config.config_file}"
        if config.config_file
        else "environment (no config file loaded)"
    )
    count = len(config.routes)
    report.add("ok", f"configuration: loads from {where}; {count} route{'s' * (count != 1)}")
    for name in config.skipped:
        variable = providers.spec(name).secret_variable()
        report.add(
            "warn",
            f"configuration: {name} is enabled but {variable} is not set; it is skipped",
            f"set {variable}, or stop enabling {name}",
        )
    if not config.routes:
        report.add(
            "FAIL",
            "configuration: no provider is enabled or configured, so no host gets a header",
            "set MLFLOW_SECRETS_AUTH_ENABLE and the provider's secret variables, "
            "or add [[routes]] to the config file",
            exit_code=1,
        )
    return config


def _check_policy(report: _Doctor, config: Config) -> None:
    policy = config.policy
    if policy.development_mode:
        report.add(
            "warn",
            f"host policy: {policy.source} is not set (development mode: "
            "every https host gets a header)",
            f"set {policy.source} to the MLflow servers you use, e.g. mlflow.company.com",
        )
    else:
        patterns = ", ".join(pattern.text for pattern in policy.patterns)
        report.add("ok", f"host policy: allowlist {patterns}")
    for warning in policy_warnings(config, report.env):
        if not policy.development_mode:
            report.add("warn", f"host policy: {warning}")


def _check_routes(report: _Doctor, config: Config) -> None:
    for number, route in enumerate(config.routes, 1):
        later_same_hosts = any(other.hosts == route.hosts for other in config.routes[number:])
        report.extend(check_route(route, number, config, report.env, fallback=later_same_hosts))


def _check_cache(report: _Doctor, config: Config) -> Cache | None:
    seen: list[str] = []
    cache = open_user_cache(config.cache_dir, report.env, seen.append)
    status = cache.status()
    if not status.enabled:
        reason = next(iter(seen or status.warnings), "the cache cannot be used")
        report.add(
            "FAIL",
            f"cache: {reason}",
            "fix the ownership or mode named above, or set MLFLOW_SECRETS_CACHE_DIR "
            "to a private directory",
            exit_code=5,
        )
        return cache
    report.add("ok", f"cache: {status.directory} is private to this user")
    report.extend(_key_checks(status))
    report.extend(probe_cache(cache, seen))
    return cache


def _key_checks(status: CacheStatus) -> list[Check]:
    if status.key_location == "runtime-dir":
        return [Check("ok", f"cache: key kept apart from the entries, in {status.key_path}")]
    notes = status.warnings or (f"the cache key is in {status.key_path}, beside the entries",)
    return [
        Check(
            "warn",
            f"cache: {note}",
            ("set XDG_RUNTIME_DIR to a private tmpfs directory (mode 0700) to keep it apart",),
        )
        for note in notes
    ]


def probe_cache(cache: Cache, seen: list[str]) -> list[Check]:
    """Write, read back and erase an entry under :data:`PROBE_IDENTITY`."""
    probe = Bearer(Secret("doctor-probe-" + os.urandom(12).hex()))
    before = len(seen)
    written = cache.put(PROBE_IDENTITY, probe, ttl=60.0, backend_expires_at=None)
    read = cache.get(PROBE_IDENTITY)
    erased = cache.erase(PROBE_IDENTITY)
    if read is None or read.credential_id != written.credential_id:
        problem = seen[before] if len(seen) > before else "the probe entry did not read back"
        return [
            Check(
                "FAIL",
                f"cache: cannot write and read an entry: {problem}",
                ("check free space and permissions of the cache directory",),
                5,
            )
        ]
    status = cache.status()
    total = status.hits + status.misses
    rate = f"{100 * status.hits / total:.1f}%" if total else "n/a"
    result = "wrote, read and erased" if erased else "wrote and read (erase failed)"
    entries = f"{status.entries} entr{'y' if status.entries == 1 else 'ies'}"
    return [
        Check(
            "ok" if erased else "warn",
            f"cache: {result} a probe entry; {entries}, hit rate {rate}",
        )
    ]


def _check_dry_run(report: _Doctor, config: Config, cache: Cache, url: str, target: Target) -> None:
    what = f"dry run {target.origin()}"
    try:
        config.policy.check(target, report.env)
    except HelperError as exc:
        report.extend([Check.failed(f"{what}: host policy", exc)])
        return
    report.add("ok", f"{what}: the host policy allows it")
    notes: list[str] = []
    resolver = Resolver(config, cache, report.env, warn=notes.append)
    try:
        answer = resolver.get(target)
    except HelperError as exc:
        report.extend([Check.failed(f"{what}: resolve", exc)])
        return
    except Exception as exc:  # noqa: BLE001 - an SDK surprise: its type only, never its text
        report.extend([unexpected(f"{what}: resolve", exc)])
        return
    for note in notes:
        report.add("warn", f"{what}: {note}")
    shown = describe_header(answer.header_name, answer.credential)
    report.add("ok", f"{what}: resolved {shown} from {answer.source}")
    if truthy(report.env.get("MLFLOW_TRACKING_INSECURE_TLS")):
        report.add(
            "warn",
            f"{what}: MLFLOW_TRACKING_INSECURE_TLS is set; doctor verifies TLS regardless",
        )
    report.extend(
        [
            send_request(
                target,
                base_path(url),
                answer.header_name,
                answer.header_value(),
                timeout=config.timeout_sec,
                env=report.env,
            )
        ]
    )
