"""Safe text: how hostile or multi-line text is shown in one line of output.

A stdlib-only leaf. Everything the helper prints about input it did not write
(hosts, paths, backend messages, URLs) goes through one of these, so a control
character or a bidirectional override never reaches a terminal and a URL never
shows its user info or query. The output rules are in the man page.
"""

from __future__ import annotations


def escape(text: object) -> str:
    """Text made safe for one line of output: printable ASCII stays, everything
    else becomes a backslash escape (no quotes added, nothing truncated)."""
    value = str(text)
    if all(" " <= ch <= "~" for ch in value):
        return value
    return "".join(ch if " " <= ch <= "~" else ascii(ch)[1:-1] for ch in value)


def quote(text: str | bytes, limit: int = 80) -> str:
    """Hostile input made safe for a one-line message: escaped, quoted, truncated.

    Only printable ASCII survives; everything else is shown as a Python escape.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "backslashreplace")
    if len(text) > limit:
        return ascii(text[:limit]) + "..."
    return ascii(text)


def one_line(text: str, limit: int = 400) -> str:
    """Whitespace runs (newlines included) collapsed to one space, ends stripped, and
    cut to ``limit`` characters with ``...`` when longer. Not escaped: pass the result
    through :func:`escape` (the CLI does) before it reaches a terminal."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def display_url(url: str) -> str:
    """A URL without user info, query or fragment (they may carry secrets).

    ``https://user:pw@h:8200/v1?token=x`` is shown as ``https://h:8200/v1``; text that
    is not ``scheme://host...`` loses everything after ``?``/``#`` and up to the last
    ``@``; a URL ``urllib`` cannot split is ``<malformed URL>``.
    """
    import urllib.parse  # not on the cache-hit path

    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<malformed URL>"
    if not parts.scheme or not host:
        return url.split("?", 1)[0].split("#", 1)[0].rpartition("@")[2]
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
