"""Azure stand-ins for the tests: fixtures over :mod:`devservers.azure` (a Key Vault
emulator over TLS, the managed-identity and Entra ID token endpoints, an egress guard).

The real ``DefaultAzureCredential`` and ``SecretClient`` talk to these over real HTTP(S),
steered only by the standard environment variables. ``azure_cloud`` (function) gives each
test a fresh :class:`AzureCloud` and fails the test if anything tried to leave loopback;
:meth:`AzureCloud.apply` steers the SDK inside the test process. See
:mod:`devservers.keyvault` for the emulator's fidelity limits.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from devservers import azure
from devservers.azure import AzurePKI

__all__ = ["AzureCloud", "AzurePKI", "azure_cloud", "azure_pki"]


class AzureCloud(azure.AzureCloud):
    """:class:`devservers.azure.AzureCloud` that can also steer this test process."""

    def apply(self, monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
        """Steer the SDK inside this process: scrub Azure/proxy/trust variables, set ours, and
        refuse (and record) any name resolution that is not loopback."""
        for name in self.scrubbed(list(os.environ)):
            monkeypatch.delenv(name)
        for name, value in self.env(**extra).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(socket, "getaddrinfo", self.loopback_only(socket.getaddrinfo))


@pytest.fixture(scope="session")
def azure_pki(tmp_path_factory: pytest.TempPathFactory) -> AzurePKI:
    return AzurePKI(tmp_path_factory.mktemp("azure-pki"))


@pytest.fixture
def azure_cloud(azure_pki: AzurePKI) -> Iterator[AzureCloud]:
    """Fresh Azure stand-ins for one test. The test fails if anything tried to leave loopback."""
    cloud = AzureCloud(azure_pki)
    try:
        yield cloud
    finally:
        cloud.stop()
    attempts = cloud.egress_attempts()
    if attempts:
        pytest.fail("traffic tried to leave the loopback stand-ins: " + ", ".join(attempts))
