"""The ``requests`` auth object MLflow attaches to every tracking request.

Per request it looks up the target origin's credential (in memory, else from the
helper) and sets the header. Its response hook keeps that header from following a
redirect to another origin, and on 401 (or a first 403 for a credential) replaces the
credential and re-sends the request once, through the same connection adapter and with
the same timeout, TLS, client certificate and proxy settings.
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from urllib.parse import urljoin

from requests import PreparedRequest, Response
from requests.auth import AuthBase
from requests.cookies import extract_cookies_to_jar
from requests.exceptions import UnrewindableBodyError
from requests.utils import rewind_body

from mlflow_secrets_shim.errors import HelperError
from mlflow_secrets_shim.invocation import Credential, HelperProcess, Refusal
from mlflow_secrets_shim.memo import CredentialMemo
from mlflow_secrets_shim.origin import Origin

_log = logging.getLogger("mlflow_secrets_shim")


class HelperAuth(AuthBase):
    """Adds the helper's header for the request's origin. Safe to share between threads."""

    def __init__(self, memo: CredentialMemo | None = None) -> None:
        self._memo = memo if memo is not None else CredentialMemo(HelperProcess())
        # Every header name this object has set: a rotation may change the name, and a
        # redirect must lose all of them.
        self._names: frozenset[str] = frozenset()
        self._warned: set[Origin] = set()
        self._lock = threading.Lock()

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        try:
            origin = Origin.of(r.url or "")
        except ValueError as exc:
            raise HelperError(f"cannot authenticate a request to this URL: {exc}") from None
        answer = self._memo.current(origin)
        if isinstance(answer, Refusal):
            self._warn_once(origin, answer)
            return r
        self._set(r, answer)
        r.hooks["response"].append(_Exchange(self, origin, answer))
        return r

    def forget(self) -> None:
        """Drop every remembered credential (after changing the helper's configuration)."""
        self._memo.forget()

    def _set(self, r: PreparedRequest, credential: Credential) -> None:
        if credential.header_name not in self._names:
            with self._lock:
                self._names = self._names | {credential.header_name}
        for name in self._names:
            if name != credential.header_name:
                r.headers.pop(name, None)
        r.headers[credential.header_name] = credential.header_value.expose()

    def _strip(self, r: PreparedRequest) -> None:
        for name in self._names:
            r.headers.pop(name, None)

    def _guard_redirect(self, response: Response, request: PreparedRequest) -> None:
        """Drop our header(s) from ``request`` unless the redirect stays on its origin.

        requests builds the next hop from a copy of ``request`` after this hook ran and
        removes only ``Authorization`` itself (and keeps it on http -> https upgrades).
        """
        location = response.headers.get("location", "")
        try:
            # requests reads Location as latin-1 and decodes it as UTF-8; do the same.
            location = location.encode("latin1").decode("utf8")
            same = Origin.of(urljoin(request.url or "", location)) == Origin.of(request.url or "")
        except (UnicodeError, ValueError):
            same = False
        if not same:
            self._strip(request)

    def _warn_once(self, origin: Origin, refusal: Refusal) -> None:
        if origin in self._warned:
            return
        with self._lock:
            if origin in self._warned:
                return
            self._warned.add(origin)
        _log.warning(
            "mlflow-secrets-helper has no credential for %s (%s: %s); "
            "requests to it are sent without authentication",
            origin,
            refusal.kind,
            refusal.message,
        )


class _Exchange:
    """The response hook of one request: knows the origin and credential it was sent with."""

    __slots__ = ("auth", "credential", "origin")

    def __init__(self, auth: HelperAuth, origin: Origin, credential: Credential) -> None:
        self.auth = auth
        self.origin = origin
        self.credential = credential

    def __call__(self, r: Response, **kwargs: Any) -> Response:
        request = r.request
        if r.is_redirect:
            self.auth._guard_redirect(r, request)
            return r
        if r.status_code not in (401, 403):
            return r
        sent = request.headers.get(self.credential.header_name)
        if sent != self.credential.header_value.expose():
            return r  # this hop did not carry the credential (a redirect removed it)
        fresh = self.auth._memo.replace(self.origin, self.credential, r.status_code)
        if fresh is None:
            return r
        if not _rewind(request):
            _log.debug(
                "%s answered %d; the request body cannot be sent again", self.origin, r.status_code
            )
            return r
        _ = r.content  # drain, so the connection goes back to the pool
        r.close()
        again = request.copy()
        extract_cookies_to_jar(again._cookies, request, r.raw)  # type: ignore[attr-defined,no-untyped-call]
        again.prepare_cookies(again._cookies)  # type: ignore[attr-defined]
        self.auth._set(again, fresh)
        _log.info(
            "%s answered %d; sending the request again with a new credential",
            self.origin,
            r.status_code,
        )
        retried: Response = r.connection.send(again, **kwargs)
        retried.history.append(r)
        retried.request = again
        # requests builds redirect hops from the original request, so keep it in step.
        self.auth._set(request, fresh)
        if retried.is_redirect:
            self.auth._guard_redirect(retried, request)
        return retried


def _rewind(request: PreparedRequest) -> bool:
    body = request.body
    if body is None or isinstance(body, bytes | str):
        return True
    try:
        rewind_body(request)
    except UnrewindableBodyError:
        return False
    return True
