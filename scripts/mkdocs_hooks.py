"""mkdocs hooks: the man page becomes the site's Reference page.

The guides in docs/ link to the man page's source, ``../man/mlflow-secrets-helper.1``, so the
links work where the Markdown is read on a code forge. For the site, the page is rendered with
groff into ``reference.md`` and those links are pointed at it; a link to any other file outside
docs/ becomes its repository path in code font (the site holds only docs/).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MAN = ROOT / "man" / "mlflow-secrets-helper.1"
PAGE = "reference.md"
_LINK = re.compile(r"\[([^\]]+)\]\(\.\./([^)#\s]+)(#[^)\s]*)?\)")
_HEADING = re.compile(r"^[A-Z][A-Z0-9 ,/()-]*$")


def render_man_page() -> str:
    """The man page as Markdown: one heading per section, its text as preformatted lines."""
    text = subprocess.run(
        ["groff", "-man", "-Tutf8", "-P-cbou", "-rLL=96n", str(MAN)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
    ).stdout
    lines = text.splitlines()[1:-1]  # the running header and footer
    parts = [
        "# Reference: mlflow-secrets-helper(1)",
        "",
        "The man page, rendered from `man/mlflow-secrets-helper.1` "
        "(`man mlflow-secrets-helper` once installed).",
    ]
    block: list[str] = []

    def flush() -> None:
        while block and not block[-1].strip():
            block.pop()
        if block:
            parts.extend(["", "```text", *block, "```"])
        block.clear()

    for line in lines:
        if _HEADING.match(line):
            flush()
            parts.extend(["", f"## {line.strip().title()}"])
        elif block or line.strip():
            block.append(line[7:] if line.startswith(" " * 7) else line)
    flush()
    return "\n".join(parts) + "\n"


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=render_man_page()))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    def point(match: re.Match[str]) -> str:
        label, target = match.group(1), match.group(2)
        if target == "man/mlflow-secrets-helper.1":
            return f"[{label}]({PAGE})"
        return f"{label} (`{target}`)"

    return _LINK.sub(point, markdown)
