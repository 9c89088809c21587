"""The ``fault_proxy`` fixture over :mod:`devservers.faultproxy` (whose names it re-exports).

``fault_proxy(upstream_url, **kwargs) -> FaultProxy`` starts a fault-injecting reverse
proxy in front of a real server; every proxy is stopped at teardown. Example::

    proxy = fault_proxy(aws.endpoint)
    proxy.add(aws_error("ThrottlingException"), header=AWS_GET_SECRET_VALUE, times=2)
    ...
    assert proxy.count(header=AWS_GET_SECRET_VALUE) == 3
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devservers.faultproxy import (
    AWS_GET_SECRET_VALUE,
    FORWARD,
    Action,
    FaultProxy,
    LoggedRequest,
    Rule,
    aws_error,
    aws_target,
    closed_port_url,
    delay,
    drop,
    respond,
    truncate,
    vault_error,
)

__all__ = [
    "AWS_GET_SECRET_VALUE",
    "FORWARD",
    "Action",
    "FaultProxy",
    "FaultProxyFactory",
    "LoggedRequest",
    "Rule",
    "aws_error",
    "aws_target",
    "closed_port_url",
    "delay",
    "drop",
    "fault_proxy",
    "respond",
    "truncate",
    "vault_error",
]

FaultProxyFactory = Callable[..., FaultProxy]


@pytest.fixture
def fault_proxy() -> Iterator[FaultProxyFactory]:
    """``fault_proxy(upstream_url, **kwargs) -> FaultProxy``; all are stopped at teardown."""
    started: list[FaultProxy] = []

    def start(upstream: str, **kwargs: Any) -> FaultProxy:
        proxy = FaultProxy(upstream, **kwargs)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()
