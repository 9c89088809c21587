"""``info`` and ``doctor`` without a backend: argument checks, check lines, and what
``info`` takes from the provider specs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlflow_secrets_helper import diagnostics, providers
from mlflow_secrets_helper.diagnostics.probe import CA_VARIABLES
from mlflow_secrets_helper.diagnostics.report import Check, exit_status, render
from mlflow_secrets_helper.diagnostics.routecheck import valid_for
from mlflow_secrets_helper.errors import InvalidInput
from mlflow_secrets_helper.secret import Basic, Bearer, Secret


def test_run_rejects_unknown_use() -> None:
    with pytest.raises(InvalidInput):
        diagnostics.run("info", rest=["x"], as_json=False, dry_run=None, timeout=None, env={})
    with pytest.raises(InvalidInput):
        diagnostics.run("info", rest=[], as_json=False, dry_run="https://h", timeout=None, env={})
    with pytest.raises(InvalidInput, match="unknown action"):
        diagnostics.run("erase", rest=[], as_json=False, dry_run=None, timeout=None, env={})


def test_describe_header_shows_name_and_scheme_only() -> None:
    bearer = Bearer(Secret("abc.def"))
    basic = Basic(Secret("alice"), Secret("pw"))
    assert (
        diagnostics.describe_header("Authorization", bearer) == "Authorization: Bearer <redacted>"
    )
    assert diagnostics.describe_header("X-Auth", basic) == "X-Auth: Basic <redacted>"


@pytest.mark.parametrize(
    ("left", "shown"),
    [
        (None, ""),
        (-5.0, "; valid for 0 s"),
        (3.6, "; valid for 3 s"),
        (119.9, "; valid for 119 s"),
        (3540.0, "; valid for 59 min"),
        (3 * 86400.0, "; valid for 3 d"),
    ],
)
def test_doctor_says_how_long_a_value_is_used(left: float | None, shown: str) -> None:
    """A read that says until when its value may be used (a token, a lease, an expiry
    date) is reported with the time left; the value itself never is."""
    now = 1_800_000_000.0
    expires_at = None if left is None else now + left
    assert valid_for(expires_at, now) == shown


def test_the_first_failure_sets_the_exit_status() -> None:
    checks = [
        Check("ok", "a"),
        Check("warn", "b", ("look",)),
        Check("FAIL", "c\x1b[31m", ("fix it",), 4),
        Check("FAIL", "d", (), 3),
    ]
    assert exit_status(checks) == 4
    assert exit_status(checks[:2]) == 0
    text = render(checks, as_json=False)
    assert text.splitlines() == [
        "ok   a",
        "warn b",
        "     hint: look",
        "FAIL c\\x1b[31m",
        "     hint: fix it",
        "FAIL d",
    ]
    document = json.loads(render(checks, as_json=True))
    assert (document["v"], document["ok"], document["exit"]) == (1, False, 4)
    assert document["checks"][1] == {"status": "warn", "message": "b", "hints": ["look"]}


def test_info_shows_the_variables_each_spec_names(tmp_path: Path) -> None:
    canary = "cnry" + "0c4f9e21b7d3"
    specs = providers.specs()
    env = {
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "MLFLOW_SECRETS_CACHE_DIR": str(tmp_path / "cache"),
        **{name: canary for spec in specs for name in spec.credential_variables},
        **{name: "https://user:pw@where.example/p?q=1" for name in CA_VARIABLES},
    }
    env.update({name: f"at-{name}" for spec in specs for name in spec.location_variables})

    text, status = diagnostics.run(
        "info", rest=[], as_json=True, dry_run=None, timeout=None, env=env
    )

    assert status == 0, text
    assert canary not in text
    report = json.loads(text)
    assert [row["name"] for row in report["providers"]] == [spec.name for spec in specs]
    assert [row["sdk_module"] for row in report["providers"]] == [s.sdk or None for s in specs]
    # providers on one SDK share its sign-in variables: each is shown once
    credentials = list(dict.fromkeys(name for spec in specs for name in spec.credential_variables))
    assert list(report["credentials"])[: len(credentials)] == credentials
    assert {report["credentials"][name] for name in credentials} == {"set"}
    locations = list(dict.fromkeys(name for spec in specs for name in spec.location_variables))
    assert list(report["locations"]) == [*locations, *CA_VARIABLES]
    assert report["locations"][locations[0]] == f"at-{locations[0]}"
    assert report["locations"][CA_VARIABLES[0]] == "https://where.example/p"


def test_info_names_the_secret_variable_of_a_skipped_provider(tmp_path: Path) -> None:
    first, second, *_ = providers.specs()
    env = {
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "MLFLOW_SECRETS_CACHE_DIR": str(tmp_path / "cache"),
        "MLFLOW_SECRETS_AUTH_ENABLE": f"{first.name},{second.name}",
        second.secret_variable(): "mlflow/prod",
    }
    text, _ = diagnostics.run("info", rest=[], as_json=False, dry_run=None, timeout=None, env=env)
    expected = f"{first.name} is enabled but {first.secret_variable()} is not set; it is skipped"
    assert f"  warning: {expected}\n" in text
