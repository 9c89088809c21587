"""The request of ``doctor --dry-run URL``: one authenticated
``GET <URL>/api/2.0/mlflow/experiments/search?max_results=1``, judged as one check.

It owns what the request needs besides the header. The URL's path is the tracking
server's base path, as in an MLflow tracking URI. TLS is always verified; the trusted
CAs come from ``MLFLOW_TRACKING_SERVER_CERT_PATH``, ``REQUESTS_CA_BUNDLE``,
``CURL_CA_BUNDLE`` or ``SSL_CERT_FILE`` (the first one set), else the system store.
Over https, proxies come from the process environment, as for MLflow (urllib's default
handler); plain http (allowed only to a loopback host no proxy applies to, as requests
decides for MLflow) is always sent directly. A
redirect to the same origin keeps the header; a redirect to another origin (scheme,
host or port) is not followed, so the header never leaves the origin the policy allowed.
URLs are shown without user info, query or fragment.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from http.client import HTTPException, HTTPMessage
from pathlib import Path
from typing import IO

from mlflow_secrets_helper import __version__
from mlflow_secrets_helper.diagnostics.report import Check
from mlflow_secrets_helper.errors import ConfigError, HelperError, InvalidInput
from mlflow_secrets_helper.protocol import DEFAULT_PORTS, Target
from mlflow_secrets_helper.secret import Secret
from mlflow_secrets_helper.text import display_url, quote
from mlflow_secrets_helper.userfiles import APP_NAME

#: the MLflow API call of ``doctor --dry-run``: cheap, read-only, and behind auth
DRY_RUN_PATH = "/api/2.0/mlflow/experiments/search?max_results=1"

#: where the trusted CAs come from, first set wins (``info`` shows them with their values)
CA_VARIABLES = (
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
)

_TRUE = ("1", "true", "yes", "on")


def base_path(url: str) -> str:
    """The path of a tracking URI, without a trailing slash ('' for none)."""
    if "://" not in url:
        return ""
    try:
        return urllib.parse.urlsplit(url).path.rstrip("/")
    except ValueError:
        raise InvalidInput(f"invalid URL {quote(url)}") from None


def origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an absolute http(s) URL, or None."""
    try:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower().rstrip(".")
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    if scheme not in DEFAULT_PORTS or not host or port is None:
        return None
    return scheme, host, port


def truthy(value: str | None) -> bool:
    """An on/off environment value read leniently, as MLflow reads its TLS switches."""
    return (value or "").strip().lower() in _TRUE


def tls_context(env: Mapping[str, str]) -> ssl.SSLContext:
    """A verifying context trusting the first CA bundle named in the environment."""
    for variable in CA_VARIABLES:
        location = env.get(variable, "").strip()
        if not location:
            continue
        path = Path(location).expanduser()
        try:
            if path.is_dir():
                return ssl.create_default_context(capath=str(path))
            return ssl.create_default_context(cafile=str(path))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{variable} does not name a readable CA bundle ({type(exc).__name__})",
                hints=[f"point {variable} at a PEM file of trusted CA certificates"],
            ) from None
    return ssl.create_default_context()


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects within the origin (re-adding the header); refuses any other."""

    def __init__(self, origin: tuple[str, str, int], header: tuple[str, Secret[str]]) -> None:
        super().__init__()
        self._origin = origin
        self._header = header
        self.refused: str | None = None

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if origin_of(newurl) != self._origin:
            self.refused = display_url(newurl)
            return None  # urllib then raises HTTPError for the 3xx; nothing is sent
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            name, value = self._header
            new.add_unredirected_header(name, value.expose())
        return new


def send_request(
    target: Target,
    base_path: str,
    header_name: str,
    header_value: Secret[str],
    *,
    timeout: float,
    env: Mapping[str, str],
) -> Check:
    """Send one authenticated GET to the MLflow API; the answer as a check line."""
    url = target.origin() + base_path + DRY_RUN_PATH
    what = f"dry run GET {display_url(url)}"
    try:
        context = tls_context(env)
    except HelperError as exc:
        return Check.failed(what, exc)
    redirects = _SameOriginRedirects(
        (target.scheme, target.host, target.port), (header_name, header_value)
    )
    handlers: list[urllib.request.BaseHandler] = [
        urllib.request.HTTPSHandler(context=context),
        redirects,
    ]
    if target.scheme == "http":
        # the policy let plain http through only because no proxy applies: go direct, so
        # a proxy the policy's question (asked of requests) did not foresee still sees nothing
        handlers.append(urllib.request.ProxyHandler({}))
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(url, method="GET")  # noqa: S310 - http(s) only, checked
    request.add_unredirected_header(header_name, header_value.expose())
    request.add_header("Accept", "application/json")
    request.add_header("User-Agent", f"{APP_NAME}/{__version__} doctor")
    try:
        with opener.open(request, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.close()
    except urllib.error.URLError as exc:
        return _connection_failure(what, exc.reason, timeout)
    except (OSError, HTTPException) as exc:
        return _connection_failure(what, exc, timeout)
    return _judge(what, status, redirects.refused, header_name)


def _judge(what: str, status: int, refused: str | None, header_name: str) -> Check:
    if 200 <= status < 300:
        return Check("ok", f"{what}: HTTP {status}, the server accepted the {header_name} header")
    if refused is not None:
        return Check(
            "FAIL",
            f"{what}: HTTP {status} redirects to another origin ({refused}); "
            "not followed, the header was not sent there",
            (
                "use the address the server redirects to as the tracking URI",
                "a redirect to a login page means the server wants another kind of login",
            ),
            1,
        )
    if status in (401, 403):
        return Check(
            "FAIL",
            f"{what}: HTTP {status}, the server rejected the credential",
            (
                "check that the secret holds a valid MLflow token or password for this server",
                f"after fixing the secret: {APP_NAME} cache clear",
            ),
            3,
        )
    if status >= 500:
        return Check("FAIL", f"{what}: HTTP {status} from the server", (), 4)
    if 300 <= status < 400:
        return Check("FAIL", f"{what}: HTTP {status}: too many redirects", (), 1)
    return Check(
        "FAIL",
        f"{what}: HTTP {status}",
        ("is this an MLflow tracking server, and is the URL's path its base path?",),
        1,
    )


def _connection_failure(what: str, reason: object, timeout: float) -> Check:
    if isinstance(reason, ssl.SSLCertVerificationError):
        return Check(
            "FAIL",
            f"{what}: TLS certificate verification failed ({reason.verify_message})",
            (
                "trust the server's CA with MLFLOW_TRACKING_SERVER_CERT_PATH, "
                "REQUESTS_CA_BUNDLE or SSL_CERT_FILE",
            ),
            4,
        )
    if isinstance(reason, TimeoutError):
        return Check(
            "FAIL",
            f"{what}: no answer within {timeout:g} s",
            ("raise --timeout or check the network path",),
            4,
        )
    detail = reason.strerror if isinstance(reason, OSError) and reason.strerror else None
    return Check(
        "FAIL",
        f"{what}: cannot connect ({detail or type(reason).__name__})",
        ("check the URL, the network path and the proxy settings",),
        4,
    )
