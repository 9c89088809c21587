"""The stdin protocol: reading a request and parsing it into a target.

Every accepted form and every rejection of CONTRACT §3.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import time
from collections.abc import Iterator

import pytest

from mlflow_secrets_helper.errors import InvalidInput
from mlflow_secrets_helper.protocol import (
    MAX_LINE_BYTES,
    Request,
    Target,
    parse_request,
    parse_target,
    read_request,
)


def https(host: str, port: int = 443) -> Target:
    return Target("https", host, port)


def http(host: str, port: int = 80) -> Target:
    return Target("http", host, port)


ACCEPTED = [
    # URL form
    (b"https://mlflow.company.com", https("mlflow.company.com"), "url"),
    (b"https://mlflow.company.com/path/x?y=1#frag", https("mlflow.company.com"), "url"),
    (b"HTTPS://MLflow.Company.COM.", https("mlflow.company.com"), "url"),
    (b"https://mlflow.company.com:8443/", https("mlflow.company.com", 8443), "url"),
    (b"https://h.example:443", https("h.example"), "url"),
    (b"http://127.0.0.1:5000", http("127.0.0.1", 5000), "url"),
    (b"http://localhost", http("localhost"), "url"),
    (b"https://[::1]:8443/api", https("::1", 8443), "url"),
    (b"https://[0:0:0:0:0:0:0:1]", https("::1"), "url"),
    (b"https://[2001:DB8::1]", https("2001:db8::1"), "url"),
    (b"https://h.example?x", https("h.example"), "url"),
    (b"https://h.example#x", https("h.example"), "url"),
    (b"https://h.example/%2e%2e/a@b", https("h.example"), "url"),
    (b"https://h.example:65535", https("h.example", 65535), "url"),
    (b"https://h.example:1", https("h.example", 1), "url"),
    (b"https://under_score.example", https("under_score.example"), "url"),
    (b"https://xn--bcher-kva.example", https("xn--bcher-kva.example"), "url"),
    (b"https://1.2.3.example", https("1.2.3.example"), "url"),
    (b"https://255.255.255.255", https("255.255.255.255"), "url"),
    (b"https://0.0.0.0", https("0.0.0.0"), "url"),
    (b"https://127.0.0.1.", https("127.0.0.1"), "url"),
    (b"https://mlflow.company.com\n", https("mlflow.company.com"), "url"),
    (b"https://mlflow.company.com\n\nignored\x00\r", https("mlflow.company.com"), "url"),
    # bare host form
    (b"mlflow.company.com", https("mlflow.company.com"), "host"),
    (b"localhost:5000", https("localhost", 5000), "host"),
    (b"[::1]", https("::1"), "host"),
    (b"[::1]:5000\n", https("::1", 5000), "host"),
    (b"a", https("a"), "host"),
    (b"a" * 63 + b".example", https("a" * 63 + ".example"), "host"),
    (
        b".".join([b"a" * 63] * 3) + b"." + b"b" * 61,
        https(".".join(["a" * 63] * 3) + "." + "b" * 61),
        "host",
    ),
    # git form
    (b"protocol=https\nhost=mlflow.company.com\n\n", https("mlflow.company.com"), "git"),
    (b"protocol=HTTP\nhost=127.0.0.1:5000\n", http("127.0.0.1", 5000), "git"),
    (b"protocol=https\nhost=[::1]:8443\n", https("::1", 8443), "git"),
    (b"url=https://h.example/p\n", https("h.example"), "git"),
    (b"url=https://h.example\nprotocol=https\nhost=h.example\n", https("h.example"), "git"),
    (b"url=https://h.example:443\nhost=H.example.\n", https("h.example"), "git"),
    (b"url=http://h.example:8080\nhost=h.example:8080\n", http("h.example", 8080), "git"),
    (b"capability[]=authtype\nprotocol=https\nhost=h.example\n", https("h.example"), "git"),
    (b"protocol=https\nhost=h.example\nunknown=x\nunknown=y\n", https("h.example"), "git"),
    (b"protocol=https\nhost=h.example\nHost=other\n", https("h.example"), "git"),
    (b"protocol=https\nhost=h.example\n_x=\xc3\xa9 anything\n", https("h.example"), "git"),
]


@pytest.mark.parametrize(("data", "target", "form"), ACCEPTED)
def test_accepted(data: bytes, target: Target, form: str) -> None:
    request = parse_request(data)
    assert request.target == target
    assert request.form == form
    if form != "git":
        assert dict(request.attributes) == {}


REJECTED = [
    # emptiness and framing
    (b"", "empty input"),
    (b"\n", "empty input"),
    (b"\nhttps://h.example", "empty input"),
    (b"https://h.example\nhttps://other.example", "one line"),
    (b"h.example\nsecond", "one line"),
    (b"\xff\xfe", "UTF-8"),
    (b"x" * (MAX_LINE_BYTES + 1), "64 KiB"),
    (b"x" * (1024 * 1024 + 1), "1 MiB"),
    # control characters, anywhere
    (b"https://h.example\r\n", "control character '\\r'"),
    (b"https://h.example\r", "control character"),
    (b"h.example\x00", "control character '\\x00'"),
    (b"https://h.example/\x1b[31m", "control character"),
    (b"h.example\x7f", "control character '\\x7f'"),
    ("h.example\u0085".encode(), "control character '\\x85'"),
    ("h.example\u2028".encode(), "control character '\\u2028'"),
    ("h.example\u2029".encode(), "control character"),
    ("h.example\u202e".encode(), "control character"),
    (b"h.exam\tple", "control character '\\t'"),
    (b"protocol=https\r\nhost=h.example\n", "control character"),
    (b"protocol=https\nhost=h.example\npassword=a\rb\n", "password attribute"),
    (b"protocol=https\nhost=h.example\ncredential=a\x00b\n", "credential attribute"),
    (b"protocol=https\nhost=h.example\nother=a\x01b\n", "control character"),
    # schemes
    (b"ftp://h.example", "unsupported scheme"),
    (b"ssh://h.example", "unsupported scheme"),
    (b"file:///etc/passwd", "unsupported scheme"),
    (b"httpss://h.example", "unsupported scheme"),
    (b"://h.example", "malformed URL scheme"),
    (b"ht tp://h.example", "malformed URL scheme"),
    (b"protocol=ftp\nhost=h.example\n", "unsupported scheme"),
    (b"protocol=\nhost=h.example\n", "empty protocol"),
    (b"protocol=https \nhost=h.example\n", "unsupported scheme"),
    # userinfo, backslash, percent, whitespace, non-ASCII
    (b"https://user@h.example", "userinfo"),
    (b"https://user:pass@h.example", "userinfo"),
    (b"user:secret@h.example", "userinfo"),
    (b"https://good.example\\@evil.example", "userinfo"),
    (b"https://good.example\\evil.example", "backslash"),
    (b"https://h.example/a\\b", "'\\\\'"),
    (b"https://h%2eexample", "'%'"),
    (b"https://h.example%00", "'%'"),
    (b"https://h .example", "whitespace"),
    (b"https://h.example/a b", "' '"),
    (b" h.example", "whitespace"),
    (b"h.example ", "whitespace"),
    ("https://bücher.example".encode(), "non-ASCII"),
    ("https://h.example/ü".encode(), "'\\xfc'"),
    ("xn--bcher-kva.example\u00a0".encode(), "whitespace"),
    ("h.exampl\uff45".encode(), "non-ASCII"),
    ("https://h\u3002example".encode(), "non-ASCII"),
    ("h.example:\u0663".encode(), "non-ASCII"),
    # host shape
    (b"https://", "empty host"),
    (b"https:///path", "empty host"),
    (b"https://:443", "empty host"),
    (b"https://.", "empty host"),
    (b"protocol=https\nhost=\n", "empty host"),
    (b"h..example", "empty label"),
    (b".h.example", "empty label"),
    (b"h.example..", "empty label"),
    (b"a" * 64 + b".example", "63"),
    (b".".join([b"a" * 63] * 4) + b".b", "253"),
    (b"-h.example", "'-'"),
    (b"h-.example", "'-'"),
    (b"h.example/path", "'/'"),
    (b"h.example?x", "'?'"),
    (b"h*.example", "'*'"),
    (b"h!.example", "'!'"),
    (b"https://h.example:80:80", "more than one ':'"),
    # IPv4 other than dotted decimal
    (b"127.1", "IPv4"),
    (b"127.0.1", "IPv4"),
    (b"0x7f.0.0.1", "IPv4"),
    (b"0x7f000001", "IPv4"),
    (b"0177.0.0.1", "IPv4"),
    (b"127.000.0.1", "IPv4"),
    (b"2130706433", "IPv4"),
    (b"256.0.0.1", "IPv4"),
    (b"1.2.3.4.5", "IPv4"),
    (b"h.example.123", "IPv4"),
    (b"h.0x10", "IPv4"),
    (b"h.0x", "IPv4"),
    # IPv6
    (b"::1", "more than one ':'"),
    (b"https://::1:443", "more than one ':'"),
    (b"[::1", "unclosed"),
    (b"[]", "IPv6"),
    (b"[::g]", "IPv6"),
    (b"[1:2:3:4:5:6:7:8:9]", "IPv6"),
    (b"[fe80::1%eth0]", "'%'"),
    (b"[fe80::1%25eth0]:443", "'%'"),
    (b"[::1]x", "after ']'"),
    (b"[::1]:", "empty port"),
    (b"[127.0.0.1]", "IPv6"),
    # ports
    (b"h.example:", "empty port"),
    (b"https://h.example:/", "empty port"),
    (b"h.example:0", "invalid port"),
    (b"h.example:65536", "invalid port"),
    (b"h.example:99999999999999999999", "invalid port"),
    (b"h.example:+443", "invalid port"),
    (b"h.example:-1", "invalid port"),
    (b"h.example:0443", "invalid port"),
    (b"h.example:44a", "invalid port"),
    (b"h.example:0x1bb", "invalid port"),
    (b"protocol=https\nhost=h.example:0\n", "invalid port"),
    # git form structure
    (b"protocol=https\nhost=a.example\nhost=b.example\n", "more than once"),
    (b"protocol=https\nprotocol=https\nhost=h.example\n", "more than once"),
    (b"protocol=https\nhost=h.example\npassword=a\npassword=a\n", "more than once"),
    (
        b"protocol=https\nhost=h.example\nurl=https://h.example\nurl=https://h.example\n",
        "more than once",
    ),
    (b"host=h.example\n", "protocol attribute is missing"),
    (b"protocol=https\n", "host attribute is missing"),
    (b"capability[]=authtype\n", "missing"),
    (b"protocol=https\nhost=h.example\nnot a pair\n", "not key=value"),
    (b"protocol=https\n=x\nhost=h.example\n", "empty key"),
    (b"url=h.example\n", "not an absolute URL"),
    (b"url=\n", "not an absolute URL"),
    (b"url=https://h.example\nhost=other.example\n", "disagrees"),
    (b"url=https://h.example\nhost=h.example:8443\n", "disagrees"),
    (b"url=https://h.example:8443\nhost=h.example\n", "disagrees"),
    (b"url=https://h.example\nprotocol=http\n", "disagrees"),
    (b"url=ftp://h.example\n", "unsupported scheme"),
    (b"url=https://u@h.example\n", "userinfo"),
]


@pytest.mark.parametrize(("data", "message"), REJECTED)
def test_rejected(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_request(data)
    assert caught.value.exit_code == 2
    assert message in caught.value.message
    _assert_one_safe_line(caught.value.message)


def _assert_one_safe_line(message: str) -> None:
    assert "\n" not in message and "\r" not in message
    assert all(" " <= ch <= "~" for ch in message), message


def test_attributes_keep_every_value_of_multi_keys_in_order() -> None:
    request = parse_request(
        b"capability[]=authtype\ncapability[]=state\nprotocol=https\nhost=h.example\n"
        b"wwwauth[]=Bearer realm=x\nwwwauth[]=Basic realm=y\nusername=alice\n"
        b"path=repo/x y\npassword=p=w\xc3\xa9\ncredential_id=abc\ncredential=tok\n"
        b"state[]=ignored\nauthtype=Bearer\n\n"
    )
    assert dict(request.attributes) == {
        "capability[]": ("authtype", "state"),
        "protocol": ("https",),
        "host": ("h.example",),
        "wwwauth[]": ("Bearer realm=x", "Basic realm=y"),
        "username": ("alice",),
        "path": ("repo/x y",),
        "password": ("p=w\u00e9",),
        "credential_id": ("abc",),
        "credential": ("tok",),
    }
    assert request.get("username") == "alice"
    assert request.get("url") is None


def test_empty_multi_value_resets_the_list() -> None:
    request = parse_request(
        b"capability[]=authtype\ncapability[]=\ncapability[]=state\n"
        b"wwwauth[]=x\nwwwauth[]=\nprotocol=https\nhost=h.example\n"
    )
    assert request.attributes["capability[]"] == ("state",)
    assert "wwwauth[]" not in request.attributes


def test_attributes_are_read_only() -> None:
    request = parse_request(b"protocol=https\nhost=h.example\n")
    with pytest.raises(TypeError):
        request.attributes["host"] = ("x",)  # type: ignore[index]


@pytest.mark.parametrize(
    "data",
    [
        b"protocol=https\nhost=h.example\npassword=hunter2-\x00\n",
        b"protocol=https\nhost=h.example\npassword=hunter2-a\npassword=hunter2-b\n",
        b"protocol=https\nhost=h.example\ncredential=hunter2-\x1b\n",
        b"https://alice:hunter2-@h.example",
        b"alice:hunter2-@h.example",
        b"https://h.example/?token=hunter2- x",
        b"protocol=https\nhost=h.example\nhunter2-\n",
        b"protocol=https\nhost=h.example\noauth_refresh_token=hunter2-\r\n",
    ],
)
def test_secrets_never_appear_in_messages(data: bytes) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_request(data)
    text = caught.value.message + " ".join(caught.value.hints)
    assert "hunter2" not in text
    assert "alice" not in text


def test_hostile_host_is_escaped_and_truncated() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_request(b"https://" + b"a" * 200 + "\u202eb".encode() + b"c")
    message = caught.value.message
    _assert_one_safe_line(message)
    assert len(message) < 200


def test_escaped_message_for_bad_host_char() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_request("https://h\u00e9.example".encode())
    assert "'h\\xe9.example'" in caught.value.message


@pytest.mark.parametrize(
    ("target", "origin"),
    [
        (https("h.example"), "https://h.example"),
        (https("h.example", 8443), "https://h.example:8443"),
        (https("h.example", 80), "https://h.example:80"),
        (http("127.0.0.1", 5000), "http://127.0.0.1:5000"),
        (http("localhost"), "http://localhost"),
        (http("localhost", 443), "http://localhost:443"),
        (https("::1", 8443), "https://[::1]:8443"),
        (https("::1"), "https://[::1]"),
    ],
)
def test_origin(target: Target, origin: str) -> None:
    assert target.origin() == origin
    assert parse_target(origin) == target


@pytest.mark.parametrize(
    ("host", "loopback", "ip"),
    [
        ("localhost", True, False),
        ("127.0.0.1", True, True),
        ("127.255.3.4", True, True),
        ("::1", True, True),
        ("128.0.0.1", False, True),
        ("10.0.0.1", False, True),
        ("::2", False, True),
        ("::ffff:7f00:1", False, True),
        ("mlflow.localhost", False, False),
        ("localhost.example", False, False),
        ("127.example", False, False),
    ],
)
def test_loopback_and_ip(host: str, loopback: bool, ip: bool) -> None:
    assert Target("http", host, 80).is_loopback() is loopback
    assert Target("http", host, 80).is_ip() is ip


def test_parse_target_rejects_like_stdin() -> None:
    assert parse_target("h.example:8443") == https("h.example", 8443)
    for text in ("ftp://h", "h\r", "127.1", "u@h", "h:0"):
        with pytest.raises(InvalidInput):
            parse_target(text)


def test_request_is_a_value() -> None:
    one = parse_request(b"protocol=https\nhost=h.example\n")
    two = parse_request(b"protocol=https\nhost=h.example\n\n")
    assert one == two
    assert isinstance(one, Request)


# --- read_request --------------------------------------------------------------------


@pytest.fixture
def pipe() -> Iterator[tuple[io.BufferedReader, int]]:
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "rb")
    try:
        yield reader, write_fd
    finally:
        reader.close()
        with contextlib.suppress(OSError):
            os.close(write_fd)


def test_read_stops_at_blank_line_without_eof(pipe: tuple[io.BufferedReader, int]) -> None:
    reader, write_fd = pipe
    os.write(write_fd, b"protocol=https\nhost=h.example\n\nmore after\n")
    started = time.monotonic()
    assert read_request(reader, timeout=5) == b"protocol=https\nhost=h.example\n\n"
    assert time.monotonic() - started < 2


def test_read_stops_at_eof(pipe: tuple[io.BufferedReader, int]) -> None:
    reader, write_fd = pipe
    os.write(write_fd, b"https://h.example")
    os.close(write_fd)
    assert read_request(reader, timeout=5) == b"https://h.example"


def test_read_empty_eof(pipe: tuple[io.BufferedReader, int]) -> None:
    reader, write_fd = pipe
    os.close(write_fd)
    assert read_request(reader, timeout=5) == b""


def test_read_stops_at_cr_blank_line(pipe: tuple[io.BufferedReader, int]) -> None:
    reader, write_fd = pipe
    os.write(write_fd, b"protocol=https\r\nhost=h.example\r\n\r\n")
    data = read_request(reader, timeout=5)
    with pytest.raises(InvalidInput, match="control character"):
        parse_request(data)


def test_read_collects_slow_writes(pipe: tuple[io.BufferedReader, int]) -> None:
    reader, write_fd = pipe

    def write() -> None:
        for piece in (b"protocol=ht", b"tps\nhost=h.ex", b"ample\n", b"\n"):
            time.sleep(0.05)
            os.write(write_fd, piece)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert read_request(reader, timeout=5) == b"protocol=https\nhost=h.example\n\n"
    finally:
        writer.join()


def test_read_times_out_on_a_pipe_that_stays_open(pipe: tuple[io.BufferedReader, int]) -> None:
    reader, _write_fd = pipe
    started = time.monotonic()
    with pytest.raises(InvalidInput, match="did not end") as caught:
        read_request(reader, timeout=0.3)
    assert 0.25 < time.monotonic() - started < 3
    assert caught.value.hints


def test_read_times_out_on_a_trickle(pipe: tuple[io.BufferedReader, int]) -> None:
    reader, write_fd = pipe
    stop = threading.Event()

    def trickle() -> None:
        while not stop.is_set():
            os.write(write_fd, b"a")
            time.sleep(0.02)

    writer = threading.Thread(target=trickle)
    writer.start()
    started = time.monotonic()
    try:
        with pytest.raises(InvalidInput, match="did not end"):
            read_request(reader, timeout=0.3)
    finally:
        stop.set()
        writer.join()
    assert time.monotonic() - started < 3


def test_read_rejects_a_long_line_before_it_ends(pipe: tuple[io.BufferedReader, int]) -> None:
    reader, write_fd = pipe
    chunk = b"x" * 8192

    def write() -> None:
        try:
            for _ in range(MAX_LINE_BYTES // len(chunk) + 2):
                os.write(write_fd, chunk)
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=write)
    writer.start()
    try:
        with pytest.raises(InvalidInput, match="64 KiB"):
            read_request(reader, timeout=5)
    finally:
        reader.close()
        writer.join()


def test_read_accepts_a_line_of_exactly_64_kib() -> None:
    data = b"path=" + b"p" * (MAX_LINE_BYTES - 5) + b"\n\n"
    assert read_request(io.BytesIO(data)) == data


def test_read_rejects_a_long_line_in_the_middle() -> None:
    data = b"protocol=https\n" + b"x" * (MAX_LINE_BYTES + 1) + b"\nhost=h\n\n"
    with pytest.raises(InvalidInput, match=r"line 2 .*64 KiB"):
        read_request(io.BytesIO(data))


def test_read_bounds_total_input() -> None:
    data = b"k=" + b"v" * 1000 + b"\n"
    with pytest.raises(InvalidInput, match="1 MiB"):
        read_request(io.BytesIO(data * 1100))


def test_read_without_fileno_uses_the_stream() -> None:
    assert read_request(io.BytesIO(b"h.example\n\nrest")) == b"h.example\n\n"
    assert read_request(io.BytesIO(b"h.example")) == b"h.example"


class _Terminal(io.BytesIO):
    def isatty(self) -> bool:
        return True


def test_read_refuses_a_terminal_without_blocking() -> None:
    with pytest.raises(InvalidInput, match="terminal") as caught:
        read_request(_Terminal(b""))
    assert any("pipe the host on stdin" in hint for hint in caught.value.hints)


def test_read_from_a_regular_file(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "input")
    with open(path, "wb") as handle:
        handle.write(b"protocol=https\nhost=h.example\n")
    with open(path, "rb") as handle:
        assert read_request(handle) == b"protocol=https\nhost=h.example\n"
