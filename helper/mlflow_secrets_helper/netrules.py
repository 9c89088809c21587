"""The network rules every part of the helper shares: is a host loopback, would a proxy
from the environment carry a request, and may a backend be reached over plain http.

"Would a proxy be used" is never decided here by reading variables: it is asked of the
HTTP library that sends the request, with that library's own functions (requests'
``get_environ_proxies``/``select_proxy``, the code MLflow sends through; urllib's
``getproxies``/``proxy_bypass`` when requests is not installed). The rules are in the
PROXIES and ENVIRONMENT sections of the man page, ``man/mlflow-secrets-helper.1``.

A stdlib leaf on the cache-hit path: nothing is imported at module level; the HTTP
libraries are imported only when a plain-http request to a loopback host is decided.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from mlflow_secrets_helper.errors import ConfigError
from mlflow_secrets_helper.text import display_url


def is_loopback_host(host: str) -> bool:
    """``localhost`` (any case, one trailing dot allowed), 127.0.0.0/8 or ``::1``."""
    name = host.lower().strip("[]")
    if name.endswith("."):
        name = name[:-1]
    if name == "localhost":
        return True
    if ":" not in name:  # IPv4 in plain dotted-decimal form only, as the input parser
        parts = name.split(".")
        return (
            len(parts) == 4
            and parts[0] == "127"
            and all(p.isdigit() and p.isascii() and int(p) <= 255 for p in parts)
        )
    import ipaddress  # only IPv6 hosts get here

    try:
        return ipaddress.IPv6Address(name).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    """Whether an absolute ``scheme://host[:port]/...`` URL names a loopback host. Anything
    it cannot read is not loopback (so TLS is required and proxies apply: the safe side)."""
    _, sep, rest = url.partition("://")
    if not sep:
        return False
    end = len(rest)
    for stop in "/?#":
        found = rest.find(stop)
        if 0 <= found < end:
            end = found
    authority = rest[:end]
    if "@" in authority:
        return False  # a URL with user info is refused elsewhere; it is never "loopback"
    if authority.startswith("["):
        host, bracket, _ = authority[1:].partition("]")
        return bool(bracket) and is_loopback_host(host)
    host = authority.rpartition(":")[0] if authority.count(":") == 1 else authority
    return bool(host) and ":" not in host and is_loopback_host(host)


def require_tls_unless_loopback(url: str, variable: str) -> None:
    """The one rule for every backend address: https, or plain http to a loopback host.

    Raises :class:`ConfigError` (exit 5) naming ``variable`` otherwise.
    """
    if url[:7].lower() != "http://" or is_loopback_url(url):
        return
    raise ConfigError(
        f"{variable} {display_url(url)[:200]} is plain http; only a loopback address may skip TLS",
        hints=["use https:// (a local agent or emulator on 127.0.0.1 may use http://)"],
    )


def no_proxies() -> dict[str, None]:
    """Per-request ``proxies`` for requests (and the SDKs built on it) that send directly:
    requests fills missing keys from the environment, then drops the None ones."""
    return {"http": None, "https": None, "all": None}


def proxy_for(url: str, env: Mapping[str, str]) -> str | None:
    """The proxy setting (``http_proxy`` or ``all_proxy``, any case) that would carry a
    request to ``url`` under ``env``, or None when it would go direct.

    Asked of requests (MLflow's HTTP library) when it is installed, else of urllib, with
    the environment variable lookup, ``no_proxy`` handling and scheme selection of the
    library itself. Without requests, an ``all_proxy`` counts too (requests would use it).
    """
    if not _any_proxy_configured(env):
        return None  # nothing to ask: no library uses a proxy that is not configured
    saved = None if env is os.environ else dict(os.environ)
    if saved is not None:  # the libraries read os.environ: let ``env`` stand in for it
        os.environ.clear()
        os.environ.update(env)
    try:
        return _ask(url)
    finally:
        if saved is not None:
            os.environ.clear()
            os.environ.update(saved)


def _any_proxy_configured(env: Mapping[str, str]) -> bool:
    """Whether any proxy could apply: on Linux and the BSDs the HTTP libraries take proxies
    from ``<scheme>_proxy`` variables only (any case, any non-empty value), so with none
    set the answer is "direct" without importing a library (plain http to loopback is the
    cache-hit path of a local MLflow server). macOS and Windows also have system proxy
    settings: there the library is always asked."""
    import sys

    if sys.platform.startswith(("darwin", "win")):
        return True
    return any(
        value and name.lower().endswith("_proxy") and name.lower() != "no_proxy"
        for name, value in env.items()
    )


def _ask(url: str) -> str | None:
    try:
        import requests.utils
    except ImportError:
        return _urllib_proxy(url)
    proxies = requests.utils.get_environ_proxies(url)
    if not requests.utils.select_proxy(url, proxies):
        return None
    scheme = url.partition(":")[0].lower()
    return f"{scheme}_proxy" if proxies.get(scheme) else "all_proxy"


def _urllib_proxy(url: str) -> str | None:
    import urllib.parse
    import urllib.request

    proxies = urllib.request.getproxies()
    parts = urllib.parse.urlsplit(url)
    for key in (parts.scheme, "all"):
        if proxies.get(key) and not urllib.request.proxy_bypass(parts.netloc):
            return f"{key}_proxy"
    return None
