"""A real OpenID Provider (node's ``oidc-provider``) over TLS and an auth gateway in front
of a real MLflow server, on 127.0.0.1 (pytest plugin over :mod:`devservers.oidc` and
:mod:`devservers.gateway`).

Fixtures:

``oidc_provider`` (session)
    :class:`OidcProvider`, started on first use. Tests register their own clients with
    :meth:`OidcProvider.add_client` (random ids, so tests never share counts) and read
    :meth:`OidcProvider.token_requests` / :meth:`OidcProvider.stats` for their own client.
``oidc_client`` (function)
    a fresh ``client_secret_basic`` client allowed the ``mlflow`` scope, one-hour tokens.
``auth_gateway`` (session)
    :class:`AuthGateway` in front of ``mlflow_basic_server``: takes ``Authorization:
    Bearer <token>`` checked by introspection at ``oidc_provider``, forwards as the MLflow
    admin. Its counts are cumulative: compare before and after.
``own_gateway`` (function)
    the same, for one test: its counts are that test's alone.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devservers.gateway import AuthGateway, Introspection, basic_auth
from devservers.oidc import OAuthClient, OidcProvider
from devservers.process import StartError
from tests.support.mlflow_server import ADMIN, MlflowServer

__all__ = ["AuthGateway", "Introspection", "OAuthClient", "OidcProvider"]


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    provider = OidcProvider(tmp_path_factory.mktemp("oidc"))
    try:
        provider.start()
    except StartError as exc:
        provider.stop()
        pytest.fail(f"{exc}:\n{exc.tail()}", pytrace=False)
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def oidc_client(oidc_provider: OidcProvider) -> Iterator[OAuthClient]:
    client = oidc_provider.add_client(token_lifetime=3600)
    yield client
    oidc_provider.remove_client(client.client_id)


def gateway_for(provider: OidcProvider, server: MlflowServer) -> AuthGateway:
    """A gateway in front of ``server`` taking tokens that introspect as active at
    ``provider``, and forwarding as the MLflow admin."""
    return AuthGateway(
        server.url, Introspection(provider), upstream_headers={"Authorization": basic_auth(*ADMIN)}
    )


@pytest.fixture(scope="session")
def auth_gateway(
    oidc_provider: OidcProvider, mlflow_basic_server: MlflowServer
) -> Iterator[AuthGateway]:
    yield from _serving(gateway_for(oidc_provider, mlflow_basic_server))


@pytest.fixture
def own_gateway(
    oidc_provider: OidcProvider, mlflow_basic_server: MlflowServer
) -> Iterator[AuthGateway]:
    """Like ``auth_gateway``, but the test's own: its counts start at zero."""
    yield from _serving(gateway_for(oidc_provider, mlflow_basic_server))


def _serving(gateway: AuthGateway) -> Iterator[AuthGateway]:
    try:
        yield gateway
    finally:
        gateway.stop()
