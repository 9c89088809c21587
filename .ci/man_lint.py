"""Check that the man page says what its source means (called by .ci/man-check).

    python3 .ci/man_lint.py PAGE < rendered-text

groff reads a double quote in a macro line only as the delimiter of an argument, so
``.B {"token": "..."}`` renders as ``{"token": ...}``: a literal quote must be written
``\\(dq``. And every JSON example in the rendered SECRET FORMATS and EXAMPLES sections
must parse as JSON.
"""

from __future__ import annotations

import json
import re
import sys

JSON_SECTIONS = ("SECRET FORMATS", "EXAMPLES")


def quote_problem(args: str) -> str | None:
    """Why groff would drop a double quote from these macro arguments, or None."""
    i = 0
    while i < len(args):
        if args[i] in " \t":
            i += 1
        elif args[i] == '"':
            i += 1
            while i < len(args) and not (args[i] == '"' and args[i + 1 : i + 2] != '"'):
                i += 2 if args[i] == '"' else 1
            if i >= len(args):
                return "a quoted argument is not closed"
            i += 1
            if i < len(args) and args[i] not in " \t":
                return "text right after a closing quote"
        else:
            while i < len(args) and args[i] not in " \t":
                if args[i] == '"':
                    return "a double quote inside an argument (write \\(dq)"
                i += 1
    return None


def source_problems(source: str, name: str = "page") -> list[str]:
    problems = []
    for number, line in enumerate(source.splitlines(), 1):
        if line[:1] in ".'" and not line.startswith(('.\\"', ".\\#")):
            parts = line.split(None, 1)
            problem = quote_problem(parts[1]) if len(parts) == 2 else None
            if problem:
                problems.append(f"{name}:{number}: {problem}: {line}")
    return problems


def sections(rendered: str) -> dict[str, str]:
    found: dict[str, list[str]] = {}
    name = None
    for line in rendered.splitlines():
        if re.match(r"^[A-Z][A-Z0-9 ,/()-]*$", line):
            name = line.strip()
            found[name] = []
        elif name:
            found[name].append(line)
    return {k: " ".join(" ".join(v).split()) for k, v in found.items()}


def json_problems(rendered: str) -> tuple[list[str], int]:
    """Problems with the rendered JSON examples, and how many parsed."""
    problems, checked = [], 0
    text_of = sections(rendered)
    for name in JSON_SECTIONS:
        text = text_of.get(name)
        if not text:
            problems.append(f"the rendered page has no {name} section")
            continue
        for start in [m.start() for m in re.finditer(r"\{\s*\"", text)]:
            depth, end = 0, start
            for end in range(start, len(text)):
                depth += {"{": 1, "}": -1}.get(text[end], 0)
                if depth == 0:
                    break
            example = text[start : end + 1]
            try:
                json.loads(example)
                checked += 1
            except ValueError as exc:
                problems.append(f"{name}: the JSON example {example!r} does not parse: {exc}")
    return problems, checked


def main(argv: list[str]) -> int:
    (page,) = argv
    with open(page, encoding="utf-8") as f:
        problems = source_problems(f.read(), page)
    found, checked = json_problems(sys.stdin.read())
    problems += found
    if not problems and checked == 0:
        problems.append("found no JSON example to check")
    for problem in problems:
        print(f"man-check: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
