"""Wildcard allowlist entries that span a public suffix are refused (issue 15, point 5).

The Public Suffix List is the one the ``publicsuffixlist`` package ships: both its ICANN
section (``com``, ``co.uk``) and its private section (``github.io``: every subdomain has
another owner). A top-level label the list does not know (``internal``) is not a suffix.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlflow_secrets_helper.errors import ConfigError
from mlflow_secrets_helper.policy import ALLOWED_HOSTS_ENV, HostPattern, HostPolicy


@pytest.mark.parametrize(
    "text",
    [
        "*.com",
        "**.com",
        "*.COM",
        "*.com.",
        "*.com:443",
        "mlflow-*.com",
        "*.co.uk",
        "**.co.uk",
        "*.uk",
        "*.github.io",
        "**.github.io",
        "*.kawasaki.jp",  # a wildcard rule of the list: *.kawasaki.jp
        "*.xn--p1ai",  # .рф, written in the list in Unicode
        "*.compute.amazonaws.com",
    ],
)
def test_a_wildcard_over_a_public_suffix_is_refused(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        HostPattern.parse(text)
    assert "is a public suffix" in caught.value.message
    assert "\n" not in caught.value.message


@pytest.mark.parametrize(
    "text",
    [
        "*.example.com",
        "**.example.com",
        "mlflow-*.example.com",
        "*.example.co.uk",
        "*.team.github.io",
        "*.city.kawasaki.jp",  # an exception rule of the list: !city.kawasaki.jp
        "*.corp.internal",
        "*.internal",  # not in the list
        "mlflow-*",
        "com",  # literal hosts name one host: not a wildcard
        "co.uk:443",
    ],
)
def test_near_misses_are_accepted(text: str) -> None:
    HostPattern.parse(text)


def test_the_allowlist_fails_to_load_with_a_public_suffix() -> None:
    with pytest.raises(ConfigError) as caught:
        HostPolicy.from_spec("mlflow.example.com, *.co.uk")
    assert caught.value.message.startswith(f"{ALLOWED_HOSTS_ENV}: invalid host pattern '*.co.uk'")


def test_literal_entries_do_not_load_the_list() -> None:
    code = (
        "import sys\n"
        "from mlflow_secrets_helper.policy import HostPolicy\n"
        "HostPolicy.from_spec('mlflow.example.com,127.0.0.1:5000')\n"
        "print('publicsuffixlist' in sys.modules)\n"
        "HostPolicy.from_spec('*.example.com')\n"
        "print('publicsuffixlist' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
