"""Doctor's report: one :class:`Check` per line (``ok``, ``warn`` or ``FAIL`` with
``hint:`` lines under it) and how the list is printed, as text or as one JSON document.

The checks themselves are made by :mod:`.doctor` and, for ``--dry-run``, :mod:`.probe`.
Every text is escaped to printable ASCII on the way out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from mlflow_secrets_helper.errors import HelperError
from mlflow_secrets_helper.text import escape

Status = Literal["ok", "warn", "FAIL"]


@dataclass(frozen=True)
class Check:
    """One line of doctor's report."""

    status: Status
    message: str
    hints: tuple[str, ...] = ()
    exit_code: int = 0

    @classmethod
    def failed(cls, what: str, exc: HelperError, *, hints: Sequence[str] = ()) -> Check:
        return cls(
            "FAIL", f"{what}: {exc.kind}: {exc.message}", (*exc.hints, *hints), exc.exit_code
        )


def exit_status(checks: Sequence[Check]) -> int:
    """The exit code of the first failure, 0 when nothing failed (warnings do not count)."""
    return next((check.exit_code for check in checks if check.status == "FAIL"), 0)


def render(checks: Sequence[Check], *, as_json: bool) -> str:
    """The report as printed: one line per check and its hints, or one JSON document."""
    status = exit_status(checks)
    if as_json:
        document = {
            "v": 1,
            "ok": status == 0,
            "exit": status,
            "checks": [
                {
                    "status": check.status,
                    "message": check.message,
                    "hints": list(check.hints),
                }
                for check in checks
            ],
        }
        return json.dumps(document) + "\n"
    lines: list[str] = []
    for check in checks:
        lines.append(f"{check.status:<4} {escape(check.message)}")
        lines.extend(f"     hint: {escape(hint)}" for hint in check.hints)
    return "\n".join(lines) + "\n"
