"""A provider owns its facts: its variables are written in its module and nowhere else.

Adding a provider is one module under ``providers/`` and one line in the registry: the
modules that route, resolve and print (config, resolve, cli) name no provider, so none
of them changes. These tests read the source (string literals, imports), not behaviour.
"""

from __future__ import annotations

import ast
import importlib
import re
from functools import cache
from pathlib import Path

import pytest

import mlflow_secrets_helper
from mlflow_secrets_helper import providers
from mlflow_secrets_helper.providers import ProviderSpec

PACKAGE = Path(mlflow_secrets_helper.__file__).parent
#: the modules every provider passes through; none of them may know one by name
NEUTRAL = ("config.py", "resolve.py", "cli.py")


@cache
def strings() -> dict[str, tuple[str, ...]]:
    """Every string literal (docstrings and f-string parts included) of every module."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        texts = tuple(
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
        )
        found[path.relative_to(PACKAGE).as_posix()] = texts
    return found


def modules_naming(word: str) -> set[str]:
    """The modules with a string literal that holds ``word`` as a whole token."""
    token = re.compile(rf"(?<![\w-]){re.escape(word)}(?![\w-])")
    return {module for module, texts in strings().items() if any(map(token.search, texts))}


def module_of(spec: ProviderSpec) -> set[str]:
    """The files of the provider module whose ``SPEC`` this is (a module, or a package
    whose ``__init__`` holds the spec and whose other modules are the provider's own)."""
    for module in providers.MODULES:
        if importlib.import_module(f"{providers.__name__}.{module}").SPEC is spec:
            package = f"providers/{module}/"
            return {f"providers/{module}.py"} | {m for m in strings() if m.startswith(package)}
    raise AssertionError(f"no module holds the spec of {spec.name}")


def owners(variable: str) -> list[ProviderSpec]:
    """The providers a variable belongs to: a toggle's provider; else the provider with the
    longest prefix the variable starts with (``MLFLOW_AZURE_TOKEN_SCOPE`` is Entra ID's,
    although ``MLFLOW_AZURE_`` is Azure Key Vault's prefix); else every provider that reads
    it as a credential or location variable (one SDK's sign-in chain, shared)."""
    specs = providers.specs()
    toggled = [spec for spec in specs if spec.toggle == variable]
    if toggled:
        return toggled
    prefixed = [spec for spec in specs if variable.startswith(spec.env_prefix + "_")]
    if prefixed:
        return [max(prefixed, key=lambda spec: len(spec.env_prefix))]
    return [
        spec
        for spec in specs
        if variable in spec.credential_variables or variable in spec.location_variables
    ]


def owned_variables(spec: ProviderSpec) -> list[str]:
    """The variables this provider owns, alone or with the providers sharing its sign-in:
    its toggle, its own prefix's variables and the credential and location variables of
    its backend."""
    return [variable for variable in spec.variables() if spec in owners(variable)]


def test_the_longest_prefix_owns_a_variable() -> None:
    by_prefix = {spec.env_prefix: spec for spec in providers.specs()}
    assert owners("MLFLOW_AZURE_TOKEN_SCOPE") == [by_prefix["MLFLOW_AZURE_TOKEN"]]
    assert owners("MLFLOW_AZURE_SECRET_NAME") == [by_prefix["MLFLOW_AZURE"]]


@pytest.mark.parametrize("spec", providers.specs(), ids=lambda spec: spec.name)
def test_each_provider_variable_is_written_in_its_module_only(spec: ProviderSpec) -> None:
    elsewhere = {}
    for variable in owned_variables(spec):
        own = set().union(*(module_of(owner) for owner in owners(variable)))
        named = modules_naming(variable)
        # <prefix>_AUTH_MODE and <prefix>_TTL_SEC are built from the prefix; nothing spells them
        derived = variable in (f"{spec.env_prefix}_AUTH_MODE", f"{spec.env_prefix}_TTL_SEC")
        if named - own or not (named or derived):
            elsewhere[variable] = sorted(named)
    assert modules_naming(spec.env_prefix) <= module_of(spec)
    assert not elsewhere, f"{spec.name} variables written outside their owners: {elsewhere}"


@pytest.mark.parametrize("module", NEUTRAL)
def test_routing_resolving_and_printing_name_no_provider(module: str) -> None:
    texts = strings()[module]
    words = [word for spec in providers.specs() for word in (spec.env_prefix, *spec.variables())]
    token = re.compile("|".join(rf"(?<![\w-]){re.escape(word)}(?![\w-])" for word in words))
    named = {match.group() for text in texts for match in token.finditer(text)}
    # A name such as "file" is also a word of prose ("the config file"): a provider's name
    # is caught where code would use it, as a whole string literal.
    names = {spec.name for spec in providers.specs()}
    named |= {text.strip() for text in texts if text.strip() in names}
    assert not named, f"{module} names {sorted(named)}"
    tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
    imported = [
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and node.module
        and node.module.startswith(f"{providers.__name__}.")
        and node.module.rpartition(".")[2] in providers.MODULES
    ]
    assert not imported, f"{module} imports a provider module: {imported}"


def test_every_provider_module_is_registered() -> None:
    on_disk = {
        path.stem
        for path in (PACKAGE / "providers").iterdir()
        if path.stem not in ("__init__", "base", "__pycache__")
        and (path.suffix == ".py" or (path / "__init__.py").exists())
    }
    assert on_disk == set(providers.MODULES)


@pytest.mark.parametrize("spec", providers.specs(), ids=lambda spec: spec.name)
def test_no_other_module_writes_a_providers_prefix(spec: ProviderSpec) -> None:
    """A prefix such as ``MLFLOW_VAULT_`` spelled out elsewhere (a list of "our" prefixes)
    would need editing for every new provider: it is derived from the specs instead."""
    own = module_of(spec)
    prefix = spec.env_prefix + "_"
    # a longer prefix that starts with this one is another provider's (MLFLOW_AZURE_TOKEN)
    longer = [
        re.compile(rf"{re.escape(other.env_prefix)}(?![A-Za-z0-9])")
        for other in providers.specs()
        if other.env_prefix.startswith(prefix)
    ]

    def writes_prefix(text: str) -> bool:
        for other in longer:
            text = other.sub("", text)
        return prefix in text

    elsewhere = sorted(
        module
        for module, texts in strings().items()
        if module not in own and any(map(writes_prefix, texts))
    )
    assert not elsewhere, f"{prefix} is written in {elsewhere}"
