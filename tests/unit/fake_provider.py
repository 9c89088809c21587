"""An honest fake of the Provider protocol, for the resolver's fast tests.

A :class:`FakeProvider` answers each ``fetch`` with the next scripted answer (the last
one repeats): a payload (``str`` or ``bytes``, returned as a :class:`Secret`), a
:class:`Fetched` as is, or a :class:`HelperError` instance that is raised
(``NotFound``, ``BackendUnavailable``, ``BackendDenied``, ...). It counts its calls,
reports ``expires_at`` as the backend's expiry of every payload answer, and never
prints or reveals a payload in its ``repr``. Build the resolver with
:func:`factory` so no registry entry is needed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeAlias

from mlflow_secrets_helper.errors import HelperError
from mlflow_secrets_helper.providers.base import Fetched, Provider, Seams
from mlflow_secrets_helper.secret import Secret

Scripted: TypeAlias = str | bytes | Fetched | HelperError


class FakeProvider:
    """A provider whose answers are scripted per call."""

    def __init__(
        self,
        *answers: Scripted,
        name: str = "fake/secret",
        expires_at: float | None = None,
        warnings: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.expires_at = expires_at
        self.calls = 0
        self.deadlines: list[float] = []
        self._warnings = warnings
        self._answers: list[Scripted] = list(answers)

    def answer(self, *answers: Scripted) -> FakeProvider:
        """Replace the script: the next calls get these answers (the last one repeats)."""
        self._answers = list(answers)
        return self

    # -- the Provider protocol ------------------------------------------------------------

    def reference(self) -> str:
        return f"fake:{self.name}"

    def cache_key(self) -> str:
        return f"fake|{self.name}|"

    def warnings(self) -> tuple[str, ...]:
        return self._warnings

    def fetch(self, deadline: float) -> Fetched:
        self.calls += 1
        self.deadlines.append(deadline)
        if not self._answers:
            raise AssertionError(f"{self.reference()}: fetch was not expected")
        answer = self._answers.pop(0) if len(self._answers) > 1 else self._answers[0]
        if isinstance(answer, HelperError):
            raise answer
        if isinstance(answer, Fetched):
            return answer
        if isinstance(answer, bytes):
            return Fetched(Secret(answer), self.expires_at)
        return Fetched(Secret(answer), self.expires_at)

    def __repr__(self) -> str:
        return f"FakeProvider({self.name!r}, calls={self.calls})"


ProviderFactory = Callable[[str, Mapping[str, str], Mapping[str, str], Seams], Provider]


def factory(providers: Mapping[str, FakeProvider]) -> ProviderFactory:
    """A ``create_provider`` for the resolver: a route's provider name picks the fake."""

    def create(
        name: str, settings: Mapping[str, str], env: Mapping[str, str], seams: Seams
    ) -> Provider:
        return providers[name]

    return create
