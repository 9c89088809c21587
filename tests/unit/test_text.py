"""Safe text: what reaches a terminal is one line of printable ASCII, URLs without secrets."""

from __future__ import annotations

import pytest

from mlflow_secrets_helper.text import display_url, escape, one_line, quote


def _printable_ascii(text: str) -> bool:
    return all(" " <= ch <= "~" for ch in text)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text", "plain text"),
        ("tab\there", "tab\\there"),
        ("new\nline", "new\\nline"),
        ("cr\r", "cr\\r"),
        ("nul\x00", "nul\\x00"),
        ("del\x7f", "del\\x7f"),
        ("c1\x9b", "c1\\x9b"),
        ("bidi\u202eevil", "bidi\\u202eevil"),
        ("ls\u2028", "ls\\u2028"),
        ("h\u00e9", "h\\xe9"),
        ("emoji\U0001f600", "emoji\\U0001f600"),
        (42, "42"),
    ],
)
def test_escape(raw: object, shown: str) -> None:
    assert escape(raw) == shown
    assert _printable_ascii(escape(raw))


def test_escape_keeps_printable_ascii_unchanged() -> None:
    every = "".join(chr(c) for c in range(0x20, 0x7F))
    assert escape(every) == every


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("h.example", "'h.example'"),
        ("h\u00e9", "'h\\xe9'"),
        (b"by\xfftes", "'by\\\\xfftes'"),
        ("a" * 81, "'" + "a" * 80 + "'..."),
        ("a" * 80, "'" + "a" * 80 + "'"),
    ],
)
def test_quote(raw: str | bytes, shown: str) -> None:
    assert quote(raw) == shown
    assert _printable_ascii(quote(raw))


def test_quote_limit() -> None:
    assert quote("abcdef", limit=3) == "'abc'..."


@pytest.mark.parametrize(
    ("raw", "limit", "shown"),
    [
        ("one\n  two\t three\r\n", 400, "one two three"),
        ("", 400, ""),
        ("x" * 10, 10, "x" * 10),
        ("x" * 11, 10, "x" * 7 + "..."),
        ("  padded  ", 400, "padded"),
    ],
)
def test_one_line(raw: str, limit: int, shown: str) -> None:
    assert one_line(raw, limit) == shown
    assert "\n" not in one_line(raw, limit)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://vault.example:8200/v1/x", "https://vault.example:8200/v1/x"),
        ("https://user:pw@vault.example/v1?token=t#frag", "https://vault.example/v1"),
        ("http://[::1]:8200/", "http://[::1]:8200/"),
        ("https://H.Example", "https://h.example"),
        ("vault.example/path?token=t", "vault.example/path"),
        ("user:pw@vault.example", "vault.example"),
        ("https://h.example:99999/", "<malformed URL>"),
        ("https://[::1/", "<malformed URL>"),
    ],
)
def test_display_url(url: str, shown: str) -> None:
    assert display_url(url) == shown
