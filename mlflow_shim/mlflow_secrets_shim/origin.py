"""The (scheme, host, port) a request goes to, and how the helper is told about it."""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int

    @staticmethod
    def of(url: str) -> Origin:
        """The origin of an absolute http(s) URL; ``ValueError`` for anything else."""
        return _parse(url)

    @property
    def netloc(self) -> str:
        """``host[:port]`` as git writes it: the port only when it is not the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    def helper_input(self, **extra: str) -> bytes:
        """The git-attribute block the helper reads on stdin."""
        lines = [f"protocol={self.scheme}", f"host={self.netloc}"]
        lines += [f"{key}={value}" for key, value in extra.items()]
        return ("\n".join(lines) + "\n\n").encode("ascii")

    def __str__(self) -> str:
        return f"{self.scheme}://{self.netloc}"


@lru_cache(maxsize=512)
def _parse(url: str) -> Origin:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"not an http(s) URL (scheme {scheme!r})")
    host = parts.hostname
    if not host or not host.isascii():
        raise ValueError("URL without an ASCII host name")
    port = parts.port  # raises ValueError when out of range or not a number
    if scheme == "https" and host.endswith("."):
        host = host[:-1]  # the same origin; plain http keeps its spelling (the helper
        # refuses a dotted plain-http host: a proxy's no_proxy tells the two apart)
    return Origin(scheme, host, port or _DEFAULT_PORTS[scheme])
