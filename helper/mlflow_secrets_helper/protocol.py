"""The stdin protocol: reading a request and parsing it into a canonical :class:`Target`.

Owns the bounded, non-blocking read of stdin (:func:`read_request`), the three input
forms and the canonical origin (scheme, host, port) they name. One module because the
reader and the parser enforce the same limits with the same messages. The rules are the
INPUT section of the man page; ``tests/unit/test_protocol.py`` and
``tests/unit/test_fuzz_input.py`` hold the parser to them.
"""

import os
import re
import select
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import BinaryIO, Literal, NamedTuple

from mlflow_secrets_helper.errors import InvalidInput, UnsupportedScheme
from mlflow_secrets_helper.text import quote

MAX_LINE_BYTES = 64 * 1024
MAX_INPUT_BYTES = 1024 * 1024
DEFAULT_PORTS = {"https": 443, "http": 80}

Form = Literal["git", "url", "host"]

# Plain character sets rather than regular expressions: compiling them would cost a
# cache hit more than parsing its one line does.
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGITS = frozenset("0123456789")
_NAME_START = _LETTERS | {"_"}
_NAME_CHARS = _NAME_START | _DIGITS
_SCHEME_CHARS = _LETTERS | _DIGITS | frozenset("+.-")
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
_HEX_DIGITS = frozenset("0123456789abcdef")
#: C0, DEL, C1, line and paragraph separators, bidirectional embeddings and isolates
_CONTROL = "[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"

SINGLE_KEYS = frozenset(
    {"protocol", "host", "path", "url", "username", "credential_id", "password", "credential"}
)
MULTI_KEYS = frozenset({"capability[]", "wwwauth[]"})
_SHOWN_KEYS = frozenset({"protocol", "host", "url"})


class Target(NamedTuple):
    """A canonical origin. Build it with :func:`parse_target` or :func:`parse_request`."""

    scheme: str
    host: str
    port: int

    def origin(self) -> str:
        """``scheme://host[:port]``, the port omitted when it is the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if DEFAULT_PORTS.get(self.scheme) == self.port:
            return f"{self.scheme}://{host}"
        return f"{self.scheme}://{host}:{self.port}"

    def authority(self) -> str:
        """``host:port`` (IPv6 in brackets), always with the port."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def is_ip(self) -> bool:
        return ":" in self.host or is_dotted_quad(self.host)

    def is_loopback(self) -> bool:
        """``localhost``, any address in 127.0.0.0/8, or ``::1``."""
        if self.host in ("localhost", "::1"):
            return True
        return is_dotted_quad(self.host) and self.host.startswith("127.")


class Request(NamedTuple):
    """What stdin asked for: the target, the form it came in, and git's attributes."""

    target: Target
    form: Form
    attributes: Mapping[str, tuple[str, ...]] = MappingProxyType({})

    def get(self, key: str) -> str | None:
        """The value of a single-valued attribute, or None."""
        values = self.attributes.get(key, ())
        return values[0] if values else None


# --- reading -------------------------------------------------------------------------


def read_request(stream: BinaryIO, *, timeout: float = 5.0) -> bytes:
    """Read stdin up to and including the first blank line, or to EOF.

    Raises :class:`InvalidInput` when the stream is a terminal (nothing is
    read, so a ``get`` typed at a prompt never hangs), when a line exceeds
    64 KiB or the input 1 MiB, and when the input has not ended after
    ``timeout`` seconds. A line holding only ``\\r`` also ends the read, so
    CRLF input is rejected at once instead of waiting for EOF.

    When the stream has a file descriptor it is read with ``select`` and
    ``os.read``, bypassing the stream's own buffer: nothing may have been read
    from the stream before. Streams without a descriptor (or where ``select``
    does not work on it) are read with ``read1``/``read`` and no timeout.
    """
    try:
        is_tty = stream.isatty()
    except (AttributeError, ValueError, OSError):
        is_tty = False
    if is_tty:
        raise InvalidInput(
            "stdin is a terminal; expected the host on stdin",
            hints=[
                "pipe the host on stdin, e.g. "
                "echo https://mlflow.example.com | mlflow-secrets-helper get"
            ],
        )
    fd: int | None
    try:
        fd = stream.fileno()
    except (AttributeError, ValueError, OSError):
        fd = None
    deadline = time.monotonic() + timeout
    buf = bytearray()
    line_start = 0
    while True:
        chunk = _read_chunk(stream, fd, deadline, timeout)
        if chunk is None:  # select does not work on this descriptor
            fd = None
            continue
        if not chunk:
            return bytes(buf)
        buf += chunk
        while True:
            newline = buf.find(b"\n", line_start)
            if newline < 0:
                break
            length = newline - line_start
            if length > MAX_LINE_BYTES:
                raise _line_too_long(buf.count(b"\n", 0, line_start) + 1)
            if length == 0 or (length == 1 and buf[line_start] == 0x0D):
                return bytes(buf[: newline + 1])
            line_start = newline + 1
        if len(buf) - line_start > MAX_LINE_BYTES:
            raise _line_too_long(buf.count(b"\n", 0, line_start) + 1)
        if len(buf) > MAX_INPUT_BYTES:
            raise _too_much_input()


def _read_chunk(stream: BinaryIO, fd: int | None, deadline: float, timeout: float) -> bytes | None:
    size = 65536
    if fd is None:
        read1 = getattr(stream, "read1", None)
        data = read1(size) if read1 is not None else stream.read(size)
        return bytes(data or b"")
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _no_end(timeout)
    try:
        ready, _, _ = select.select([fd], [], [], remaining)
    except (OSError, ValueError):
        return None
    if not ready:
        raise _no_end(timeout)
    return os.read(fd, size)


def _no_end(timeout: float) -> InvalidInput:
    return InvalidInput(
        f"stdin did not end within {timeout:g} s",
        hints=["end the input with a blank line or close stdin"],
    )


def _line_too_long(lineno: int) -> InvalidInput:
    return InvalidInput(f"line {lineno} of the input is longer than 64 KiB")


def _too_much_input() -> InvalidInput:
    return InvalidInput("the input is longer than 1 MiB")


# --- parsing -------------------------------------------------------------------------


def parse_request(data: bytes) -> Request:
    """Parse what :func:`read_request` returned. Raises :class:`InvalidInput`."""
    if len(data) > MAX_INPUT_BYTES:
        raise _too_much_input()
    lines: list[str] = []
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        if not raw:
            break
        if len(raw) > MAX_LINE_BYTES:
            raise _line_too_long(lineno)
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"line {lineno} of the input is not valid UTF-8") from None
        bad = first_control(line)
        if bad is not None:
            key = line.partition("=")[0]
            where = f"the {key} attribute" if key in SINGLE_KEYS | MULTI_KEYS else "the input"
            raise InvalidInput(
                f"control character {bad!a} in line {lineno} ({where})",
                hints=["the input must be plain lines ending in \\n (no CR)"],
            )
        lines.append(line)
    if not lines:
        raise InvalidInput(
            "empty input: expected a URL, host[:port] or git credential attributes",
            hints=["pipe the host on stdin, e.g. echo https://mlflow.example.com"],
        )
    if _is_git_line(lines[0]):
        return _parse_git(lines)
    if len(lines) > 1:
        raise InvalidInput(
            f"expected one line with a URL or host[:port], got {len(lines)} lines",
            hints=["git credential attributes need key=value on every line"],
        )
    if "://" in lines[0]:
        return Request(_parse_url(lines[0]), "url")
    return Request(parse_authority(lines[0], "https"), "host")


def first_control(text: str) -> str | None:
    """The first control, separator or bidirectional-override character in ``text``."""
    if text.isprintable():  # C speed, and none of those characters is printable
        return None
    found = re.search(_CONTROL, text)  # compiled on first use only
    return found.group() if found is not None else None


def _is_git_line(line: str) -> bool:
    """``name=`` or ``name[]=`` at the start: git credential attributes."""
    key, equals, _ = line.partition("=")
    if not equals:
        return False
    key = key.removesuffix("[]")
    return key[:1] in _NAME_START and set(key) <= _NAME_CHARS


def parse_target(text: str) -> Target:
    """A URL or a bare ``host[:port]`` (https), validated like stdin."""
    bad = first_control(text)
    if bad is not None:
        raise InvalidInput(f"control character {bad!a} in {quote(text)}")
    if "://" in text:
        return _parse_url(text)
    return parse_authority(text, "https")


def _parse_git(lines: list[str]) -> Request:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for lineno, line in enumerate(lines, 1):
        key, sep, value = line.partition("=")
        if not sep:
            raise InvalidInput(
                f"line {lineno} is not key=value",
                hints=["git credential input is key=value lines ended by a blank line"],
            )
        if not key:
            raise InvalidInput(f"line {lineno} has an empty key")
        if key in MULTI_KEYS:
            if value:
                multi.setdefault(key, []).append(value)
            else:
                multi[key] = []
        elif key in SINGLE_KEYS:
            if key in single:
                raise InvalidInput(f"the {key} attribute is given more than once")
            single[key] = value

    url = single.get("url")
    protocol = single.get("protocol")
    host = single.get("host")
    if url is not None:
        if "://" not in url:
            raise InvalidInput(
                f"the url attribute {quote(url)} is not an absolute URL",
                hints=["write url=https://host[:port]/path"],
            )
        target = _parse_url(url)
        if protocol is not None and parse_scheme(protocol) != target.scheme:
            raise InvalidInput(
                f"protocol={quote(protocol)} disagrees with url scheme {target.scheme!r}"
            )
        if host is not None:
            named = parse_authority(host, target.scheme)
            if (named.host, named.port) != (target.host, target.port):
                raise InvalidInput(
                    f"host={quote(host)} disagrees with the url's host {quote(target.authority())}"
                )
    else:
        if protocol is not None:
            parse_scheme(protocol)  # an unsupported protocol is reported as such, first
        if protocol is None or host is None:
            missing = "protocol" if protocol is None else "host"
            raise InvalidInput(
                f"the {missing} attribute is missing",
                hints=["git input needs protocol= and host= (or url=)"],
            )
        target = parse_authority(host, parse_scheme(protocol))

    attributes: dict[str, tuple[str, ...]] = {k: (v,) for k, v in single.items()}
    attributes.update((k, tuple(v)) for k, v in multi.items() if v)
    return Request(target, "git", MappingProxyType(attributes))


def parse_scheme(text: str) -> str:
    """``https`` or ``http``, lowercased; anything else raises :class:`InvalidInput`."""
    scheme = text.lower()
    if scheme in DEFAULT_PORTS:
        return scheme
    if not text:
        raise InvalidInput("empty protocol")
    raise UnsupportedScheme(
        f"unsupported scheme {quote(text)}",
        hints=["only https (or http to a local server) is supported"],
    )


def _parse_url(text: str) -> Target:
    scheme_text, _, rest = text.partition("://")
    if not (scheme_text[:1] in _LETTERS and set(scheme_text) <= _SCHEME_CHARS):
        raise InvalidInput(f"malformed URL scheme {quote(scheme_text)}")
    scheme = parse_scheme(scheme_text)
    end = len(rest)
    for stop in "/?#":
        found = rest.find(stop)
        if 0 <= found < end:
            end = found
    authority, tail = rest[:end], rest[end:]
    target = parse_authority(authority, scheme)
    for index, ch in enumerate(tail):
        if ch.isspace() or ch == "\\" or not ch.isascii():
            raise InvalidInput(
                f"the URL path contains {ch!a} at position {len(text) - len(tail) + index}",
                hints=["percent-encode the path, or give only scheme://host[:port]"],
            )
    return target


def parse_authority(text: str, scheme: str) -> Target:
    """``host[:port]`` or ``[ipv6][:port]`` for an already valid ``scheme``."""
    if not text:
        raise InvalidInput("empty host")
    if "@" in text:
        raise InvalidInput(
            "the input contains userinfo ('@'); credentials in URLs are not accepted",
            hints=["give only scheme://host[:port]"],
        )
    _check_authority_chars(text)
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise InvalidInput(f"unclosed '[' in {quote(text)}")
        host = canonical_ipv6(text[1:close])
        rest = text[close + 1 :]
        if rest and not rest.startswith(":"):
            raise InvalidInput(f"unexpected text after ']' in {quote(text)}")
        port_text: str | None = rest[1:] if rest else None
    else:
        if text.count(":") > 1:
            raise InvalidInput(
                f"{quote(text)} has more than one ':'",
                hints=["write IPv6 addresses in brackets, e.g. [::1]:5000"],
            )
        host_text, colon, port_part = text.partition(":")
        port_text = port_part if colon else None
        if scheme == "http" and host_text.endswith("."):
            # "localhost." is another name to a proxy's no_proxy list than "localhost":
            # plain http carries the header in clear text, so it goes by one spelling only
            raise InvalidInput(
                f"plain http to {quote(host_text)} with a trailing dot is not served",
                hints=[f"write the host without the trailing dot: {quote(host_text[:-1])}"],
            )
        host = canonical_host(host_text)
    port = DEFAULT_PORTS[scheme] if port_text is None else parse_port(port_text)
    return Target(scheme, host, port)


def _check_authority_chars(text: str) -> None:
    for ch in text:
        if ch.isspace():
            problem = "whitespace"
        elif ch == "\\":
            problem = "a backslash"
        elif ch == "%":
            problem = "'%' (percent-encoding and IPv6 zone ids are not accepted)"
        elif not ch.isascii():
            problem = f"the non-ASCII character {ch!a}"
        elif first_control(ch) is not None:
            problem = f"the control character {ch!a}"
        else:
            continue
        raise InvalidInput(
            f"the host {quote(text)} contains {problem}",
            hints=["write internationalised names in their xn-- form"] if not ch.isascii() else [],
        )


def parse_port(text: str) -> int:
    """A decimal port 1-65535 without sign or leading zeros."""
    if not text:
        raise InvalidInput("empty port after ':'")
    if not (len(text) <= 5 and text[0] != "0" and set(text) <= _DIGITS) or int(text) > 65535:
        raise InvalidInput(
            f"invalid port {quote(text)}",
            hints=["a port is a number from 1 to 65535 without leading zeros"],
        )
    return int(text)


def canonical_ipv6(text: str) -> str:
    """The compressed form of an IPv6 address written without brackets."""
    if not text or not all(ch in "0123456789abcdefABCDEF:." for ch in text):
        raise InvalidInput(f"invalid IPv6 address {quote(text)}")
    import ipaddress  # only IPv6 input pays for this import

    try:
        return ipaddress.IPv6Address(text).compressed
    except ValueError:
        raise InvalidInput(f"invalid IPv6 address {quote(text)}") from None


def canonical_host(text: str) -> str:
    """A host name or dotted-quad IPv4 address: lowercased, one trailing dot dropped."""
    host = text.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise InvalidInput("empty host")
    if len(host) > 253:
        raise InvalidInput(f"the host name {quote(text)} is longer than 253 characters")
    labels = host.split(".")
    for label in labels:
        if not label:
            raise InvalidInput(f"the host name {quote(text)} has an empty label")
        if len(label) > 63:
            raise InvalidInput(f"the host name {quote(text)} has a label over 63 characters")
        if not set(label) <= _LABEL_CHARS:
            bad = next(ch for ch in label if ch not in _LABEL_CHARS)
            raise InvalidInput(f"the host name {quote(text)} contains {bad!a}")
        if label[0] == "-" or label[-1] == "-":
            raise InvalidInput(
                f"the host name {quote(text)} has a label starting or ending with '-'"
            )
    last = labels[-1]
    if is_numeric_label(last) and not is_dotted_quad(host):
        raise InvalidInput(
            f"{quote(text)} is not a valid IPv4 address",
            hints=["write IPv4 addresses as four numbers 0-255 without leading zeros"],
        )
    return host


def is_numeric_label(label: str) -> bool:
    """A label a browser would read as a number (decimal, or ``0x`` hex): a name
    ending in one is an IPv4 address or nothing."""
    lowered = label.lower()
    return set(label) <= _DIGITS or (lowered[:2] == "0x" and set(lowered[2:]) <= _HEX_DIGITS)


def is_dotted_quad(host: str) -> bool:
    """True for plain dotted-decimal IPv4: four parts 0-255, no leading zeros."""
    parts = host.split(".")
    if len(parts) != 4:
        return False
    for part in parts:
        if not part or len(part) > 3 or not set(part) <= _DIGITS:
            return False
        if (part[0] == "0" and len(part) > 1) or int(part) > 255:
            return False
    return True
