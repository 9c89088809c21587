"""The host policy: which targets may receive a header.

This module owns the allowlist (``MLFLOW_SECRETS_ALLOWED_HOSTS`` or the routes' host
patterns): parsing its entries into :class:`HostPattern`, matching a canonical
:class:`~mlflow_secrets_helper.protocol.Target` against them, the plain-http rule for
loopback targets, and the proxy check that goes with it. The resolver asks it before
the cache, so a refused host gets nothing, not even a cached header.

The rules are the HOST POLICY section of the man page, ``man/mlflow-secrets-helper.1``.
Finer points the man page does not spell out yet: entries are stripped of whitespace;
``localhost`` does not cover ``127.0.0.1``. Whether a proxy would carry plain http is
asked of the HTTP library (:mod:`mlflow_secrets_helper.netrules`), never read here.
"""

from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

from mlflow_secrets_helper.errors import ConfigError, HostRefused, InvalidInput
from mlflow_secrets_helper.protocol import (
    Target,
    canonical_host,
    is_numeric_label,
    parse_authority,
    parse_port,
)
from mlflow_secrets_helper.text import quote

ALLOWED_HOSTS_ENV = "MLFLOW_SECRETS_ALLOWED_HOSTS"

_FORMS_HINT = (
    "entries look like mlflow.company.com, mlflow.company.com:8443, *.company.com, "
    "mlflow-*, **.company.com, 127.0.0.1:5000 or [::1]:5000"
)
_PATTERN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.:*[]")
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")

Wildcard = Literal["", "*", "**"]

#: the Public Suffix List's rules for one top-level label, parsed once per process
_PSL_BY_TLD: dict[str, Any] = {}


class HostPattern(NamedTuple):
    """One allowlist entry.

    ``wildcard`` is ``""`` for a literal host or IP, ``"*"`` for one label
    starting with ``prefix`` (``prefix`` empty for a whole-label ``*``), or
    ``"**"`` for one or more labels. ``suffix`` is the host after the wildcard
    label (the whole host for a literal); ``port`` is None for any port.
    """

    text: str
    wildcard: Wildcard
    prefix: str
    suffix: str
    port: int | None

    @property
    def literal(self) -> bool:
        """True when the entry names one host or IP, without a wildcard."""
        return self.wildcard == ""

    def __str__(self) -> str:
        return self.text

    @classmethod
    def parse(cls, text: str) -> "HostPattern":
        """Parse one entry; raises :class:`ConfigError` naming it."""
        try:
            return cls._parse(text)
        except InvalidInput as exc:
            raise _bad(text, exc.message) from None

    @classmethod
    def _parse(cls, text: str) -> "HostPattern":
        if not text:
            raise _bad(text, "empty entry")
        lowered = text.lower()
        for ch in lowered:
            if ch in _PATTERN_CHARS:
                continue
            if ch == "?":
                raise _bad(text, "'?' is not supported; '*' stands for one label")
            if ch in "/@" or "://" in lowered:
                raise _bad(text, "write only host[:port], without scheme, path or user")
            raise _bad(text, f"invalid character {ch!a}")
        if lowered.startswith("."):
            raise _bad(text, "write *.company.com (one label) or **.company.com (any depth)")
        if lowered.startswith("["):
            inside = lowered[1:].partition("]")[0]
            if not set(inside) <= set("0123456789abcdef:."):
                raise _bad(text, "character classes such as [a-z] are not supported")
            target = parse_authority(lowered, "https")
            port = parse_port(lowered.rpartition("]:")[2]) if "]:" in lowered else None
            return cls(text, "", "", target.host, port)
        if "[" in lowered or "]" in lowered:
            raise _bad(text, "character classes such as [a-z] are not supported")
        if lowered.count(":") > 1:
            raise _bad(text, "write IPv6 addresses in brackets, e.g. [::1]")
        host, colon, port_text = lowered.partition(":")
        port = parse_port(port_text) if colon else None
        if "*" not in host:
            return cls(text, "", "", canonical_host(host), port)

        if host.endswith("."):
            host = host[:-1]
        first, _, suffix = host.partition(".")
        if "*" in suffix:
            raise _bad(text, "a wildcard is allowed only in the leftmost label")
        if first in ("*", "**"):
            if not suffix:
                raise _bad(text, f"a bare {first!r} would allow every host")
            wildcard: Wildcard = "**" if first == "**" else "*"
            prefix = ""
        elif first.endswith("*") and "*" not in first[:-1]:
            wildcard, prefix = "*", first[:-1]
            if not set(prefix) <= _LABEL_CHARS or prefix.startswith("-") or len(prefix) >= 63:
                raise _bad(text, "invalid label prefix before '*'")
        else:
            raise _bad(text, "'*' must be a whole label (*.company.com) or end one (mlflow-*)")
        if suffix:
            last = suffix.rpartition(".")[2]
            if is_numeric_label(last):
                raise _bad(text, "wildcards cannot match IP addresses")
            suffix = canonical_host(suffix)
            if is_public_suffix(suffix):
                raise _bad(
                    text,
                    f"{suffix} is a public suffix: the pattern would match sites of "
                    "unrelated owners",
                )
        return cls(text, wildcard, prefix, suffix, port)

    def matches(self, target: Target) -> bool:
        if self.port is not None and self.port != target.port:
            return False
        host = target.host
        if self.literal:
            return host == self.suffix
        if target.is_ip():
            return False
        if self.suffix:
            if not host.endswith("." + self.suffix):
                return False
            head = host[: -len(self.suffix) - 1]
        else:
            head = host
        if self.wildcard == "**":
            return bool(head)
        return "." not in head and len(head) > len(self.prefix) and head.startswith(self.prefix)


def is_public_suffix(name: str) -> bool:
    """Whether ``name`` is a public suffix in the Public Suffix List (its ICANN and its
    private section) that the ``publicsuffixlist`` package ships; no network access.

    A TLD the list does not know (``internal``, ``lan``) is not one. Only the rules for
    ``name``'s top-level label are handed to the library (every rule ends in its TLD, so
    no other can apply): that keeps the parse to about a millisecond.
    """
    try:
        from publicsuffixlist import PSLFILE, PublicSuffixList
    except ImportError:  # a core dependency: a broken install fails closed
        raise ConfigError(
            "wildcard host patterns need the publicsuffixlist package",
            hints=["reinstall mlflow-secrets-helper"],
        ) from None
    tld = name.rpartition(".")[2]
    names = {tld}
    if tld.startswith("xn--"):  # the list is written in Unicode
        import contextlib

        with contextlib.suppress(UnicodeError):  # not valid punycode: in no rule either
            names.add(tld.encode("ascii").decode("idna"))
    psl = _PSL_BY_TLD.get(tld)
    if psl is None:
        with open(PSLFILE, encoding="utf-8") as file:
            rules = [
                line
                for line in file
                if not line.startswith("//")
                and line.split(" ", 1)[0].rstrip().rpartition(".")[2].lower() in names
            ]
        psl = _PSL_BY_TLD[tld] = PublicSuffixList(source=rules, accept_unknown=False)
    return bool(psl.is_public(name))


def _bad(text: str, reason: str) -> ConfigError:
    return ConfigError(f"invalid host pattern {quote(text)}: {reason}", hints=[_FORMS_HINT])


def parse_patterns(spec: str | Sequence[str], *, source: str) -> tuple[HostPattern, ...]:
    """Parse a comma-separated string (or a list of entries from a TOML file).

    Raises :class:`ConfigError` naming ``source`` and the first bad entry.
    """
    if isinstance(spec, str):
        if not spec.strip():
            raise ConfigError(
                f"{source} is set but empty",
                hints=[f"unset {source} for development mode, or list the allowed hosts"],
            )
        entries: list[object] = list(spec.split(","))
    else:
        entries = list(spec)
        if not entries:
            raise ConfigError(f"{source} is an empty list", hints=["list the allowed hosts"])
    patterns = []
    for index, entry in enumerate(entries, 1):
        if not isinstance(entry, str):
            raise ConfigError(f"{source}: entry {index} is not a string", hints=[_FORMS_HINT])
        stripped = entry.strip()
        if not stripped:
            raise ConfigError(
                f"{source}: entry {index} is empty",
                hints=["remove the extra comma", _FORMS_HINT],
            )
        try:
            patterns.append(HostPattern.parse(stripped))
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc.message}", hints=exc.hints) from None
    return tuple(patterns)


class HostPolicy(NamedTuple):
    """The allowlist, or development mode when none is configured."""

    patterns: tuple[HostPattern, ...]
    development_mode: bool = False
    source: str = ALLOWED_HOSTS_ENV

    @classmethod
    def from_spec(
        cls, spec: str | Sequence[str] | None, *, source: str = ALLOWED_HOSTS_ENV
    ) -> "HostPolicy":
        """``None`` (unset) is development mode; anything invalid raises ConfigError."""
        if spec is None:
            return cls((), development_mode=True, source=source)
        return cls(parse_patterns(spec, source=source), source=source)

    def check(self, target: Target, env: Mapping[str, str]) -> None:
        """Return if ``target`` may get a header; else raise :class:`HostRefused`."""
        if self.development_mode:
            if target.scheme == "https":
                return
            raise HostRefused(
                f"plain http to {target.origin()} is refused: {self.source} is not set "
                "(development mode allows https only)",
                hints=[f"use https, or set {self.source}={_entry_for(target)}"],
            )
        if not any(pattern.matches(target) for pattern in self.patterns):
            raise HostRefused(
                f"{target.origin()} is not in {self.source}",
                hints=[f"add {_entry_for(target)} to {self.source}"],
            )
        if target.scheme == "https":
            return
        refusal = self._http_refusal(target, env)
        if refusal is not None:
            raise HostRefused(refusal[0], hints=[refusal[1]])

    def allows_plain_http(self, target: Target, env: Mapping[str, str]) -> bool:
        """Whether a header may go to ``target``'s host and port over plain http."""
        if self.development_mode:
            return False
        if not any(pattern.matches(target) for pattern in self.patterns):
            return False
        return self._http_refusal(target, env) is None

    def _http_refusal(self, target: Target, env: Mapping[str, str]) -> tuple[str, str] | None:
        origin = target.origin()
        if not target.is_loopback():
            return (
                f"plain http to {origin} is refused: http is allowed only for loopback hosts",
                f"use https://{_entry_for(Target('https', target.host, 443))}",
            )
        if not any(p.literal and p.matches(target) for p in self.patterns):
            return (
                f"plain http to {origin} is refused: no {self.source} entry names it "
                "without a wildcard",
                f"add {_entry_for(target)} to {self.source}",
            )
        variable = proxy_for_http(target, env)
        if variable is not None:
            return (
                f"plain http to {origin} is refused: the proxy in {variable} (any case) "
                "would see the header",
                f"add {_no_proxy_entries(target)} to no_proxy, or unset {variable}",
            )
        return None


def _entry_for(target: Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    if target.scheme == "https" and target.port == 443:
        return host
    return target.authority()


def _no_proxy_entries(target: Target) -> str:
    return f"[{target.host}]" if ":" in target.host else target.host


def proxy_for_http(target: Target, env: Mapping[str, str]) -> str | None:
    """The proxy setting that plain http to ``target`` would go through, or None.

    Asked of the HTTP library itself (:func:`~mlflow_secrets_helper.netrules.proxy_for`).
    The host is spelled as the caller spelled it: the input parser refuses a plain-http
    host written with a trailing dot, so the canonical host is that spelling.
    """
    from mlflow_secrets_helper.netrules import proxy_for  # only plain http to loopback

    host = f"[{target.host}]" if ":" in target.host else target.host
    return proxy_for(f"http://{host}:{target.port}/", env)
