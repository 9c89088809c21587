"""Docs move with code.

The man page is the one reference: it documents every variable, option, action, error kind
and exit status, each enumerated from the code. README.md and docs/ link to it: every link
resolves, every docs page is in the site's navigation, the README is a short front door whose
quick starts use the variables the providers read and end with ``doctor``, and every shell
example fails, sending nothing, when the helper fails.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from mlflow_secrets_helper import cli, config, errors, providers
from mlflow_secrets_helper.providers.base import ProviderSpec

ROOT = Path(__file__).resolve().parents[2]
README_PATH = ROOT / "README.md"
README = README_PATH.read_text()
DOCS = sorted(ROOT.joinpath("docs").glob("*.md"))
MARKDOWN = [README_PATH, ROOT / "SECURITY.md", ROOT / "CHANGELOG.md", *DOCS]
MAN_SOURCE = ROOT.joinpath("man", "mlflow-secrets-helper.1").read_text()
# roff escapes hyphens as "\-" and uses "\%" to stop hyphenation; undo both so names
# compare as typed.
MAN = MAN_SOURCE.replace("\\-", "-").replace("\\%", "")
SPECS: tuple[ProviderSpec, ...] = tuple(providers.specs())


def _man_section(name: str) -> str:
    match = re.search(rf"^\.SH {re.escape(name)}\n(.*?)(?=^\.SH |\Z)", MAN, re.M | re.S)
    assert match, f"the man page has no {name} section"
    return match.group(1)


def _variables() -> set[str]:
    names = set(config.known_variables())
    for spec in SPECS:
        names.update(spec.variables())
    return names


# -- the man page documents what the code has ------------------------------------------


def test_the_code_has_variables_to_document() -> None:
    assert {"MLFLOW_SECRETS_ALLOWED_HOSTS", "VAULT_ADDR", "MLFLOW_AWS_SECRET_NAME"} <= _variables()


@pytest.mark.parametrize("name", sorted(_variables()))
def test_man_page_documents_variable(name: str) -> None:
    assert re.search(rf"\b{name}\b", MAN), f"{name} is missing from the man page"


def _options() -> list[str]:
    source = ROOT.joinpath("helper", "mlflow_secrets_helper", "cli.py").read_text()
    return sorted(set(re.findall(r"[\"'](--[a-z][a-z-]*)[\"']", source)))


def test_the_cli_has_options_to_document() -> None:
    assert {"--format", "--timeout", "--json", "--dry-run", "--version", "--help"} <= set(
        _options()
    )


@pytest.mark.parametrize("option", _options())
def test_man_page_documents_option(option: str) -> None:
    assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", MAN), option


@pytest.mark.parametrize("action", cli.ACTIONS)
def test_man_page_documents_action(action: str) -> None:
    synopsis = _man_section("SYNOPSIS")
    assert re.search(rf"\b{action}\b", synopsis), f"{action} not in SYNOPSIS"
    described = re.compile(rf'^\.TP\n\.B[IR]* "?{action}\b', re.M)
    assert described.search(_man_section("ACTIONS")), f"{action} not described in ACTIONS"


def _error_classes() -> list[type[errors.HelperError]]:
    found: list[type[errors.HelperError]] = [errors.HelperError]
    for cls in found:
        found.extend(c for c in cls.__subclasses__() if c not in found)
    return found


def test_man_page_lists_exactly_the_exit_statuses_the_code_uses() -> None:
    codes = {0} | {cls.exit_code for cls in _error_classes()}
    listed = {int(n) for n in re.findall(r"^\.TP\n\.B (\d+)$", _man_section("EXIT STATUS"), re.M)}
    assert listed == codes


@pytest.mark.parametrize("kind", sorted({cls.kind for cls in _error_classes()}))
def test_man_page_documents_error_kind(kind: str) -> None:
    assert kind in _man_section("OUTPUT"), f"error kind {kind} is not in OUTPUT"


# -- every link resolves -------------------------------------------------------------

_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """The anchor of a Markdown heading, as mkdocs' toc and code forges compute it for
    the plain headings used here."""
    text = re.sub(r"[`*_]", "", heading).strip().lower()
    text = re.sub(r"[^\w\s-]", "", text)
    return re.sub(r"[-\s]+", "-", text).strip("-")


def _anchors(path: Path) -> set[str]:
    body = _FENCE.sub("", path.read_text())
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", body, re.M)}


def _links(path: Path) -> list[str]:
    return _LINK.findall(_FENCE.sub("", path.read_text()))


def test_the_documents_have_links() -> None:
    assert len(DOCS) >= 10
    assert sum(len(_links(p)) for p in MARKDOWN) > 40


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_resolves(path: Path) -> None:
    broken = []
    for link in _links(path):
        if re.match(r"[a-z]+:", link):
            assert link.startswith("https://"), f"{link}: only https links"
            continue
        target, _, anchor = link.partition("#")
        resolved = (path.parent / target).resolve() if target else path
        if not resolved.exists() or ROOT not in (resolved, *resolved.parents):
            broken.append(f"{link}: no such file in the repository")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{link}: no heading with that anchor")
    assert not broken, broken


def test_every_docs_page_is_in_the_site_navigation() -> None:
    nav = set(re.findall(r"^\s+- [^:]+: (\S+\.md)$", ROOT.joinpath("mkdocs.yml").read_text(), re.M))
    pages = {p.name for p in DOCS}
    # reference.md is the man page, rendered at build time by scripts/mkdocs_hooks.py
    assert nav == pages | {"reference.md"}
    assert "reference.md" not in pages


def test_docs_link_the_man_page_source_that_the_site_renders() -> None:
    hooks = ROOT.joinpath("scripts", "mkdocs_hooks.py").read_text()
    assert '"man/mlflow-secrets-helper.1"' in hooks
    assert "../man/mlflow-secrets-helper.1" in _links(ROOT / "docs" / "index.md")
    assert "man/mlflow-secrets-helper.1" in _links(README_PATH)


# -- the README is a front door --------------------------------------------------------


def test_readme_is_short() -> None:
    assert len(README.encode()) <= 12 * 1024


def test_readme_first_screen_has_the_two_commands_install_and_quick_starts() -> None:
    lines = README.splitlines()
    first_screen = "\n".join(lines[:25])
    assert "./scripts/demo" in first_screen and "./scripts/test" in first_screen
    headings = [n for n, line in enumerate(lines) if line.startswith("## ")]
    names = [lines[n][3:] for n in headings]
    assert names[:2] == ["Install", "Quick starts"]
    assert headings[0] < 30


def test_readme_commands_are_the_scripts_ci_runs() -> None:
    block = README.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split()[0] for line in block.strip().splitlines()]
    assert commands == ["./scripts/demo", "./scripts/test"]
    for command in commands:
        assert os.access(ROOT / command, os.X_OK), f"{command} is not executable"
    assert "scripts/test" in ROOT.joinpath(".ci", "run").read_text()


def _quick_starts() -> list[str]:
    section = README.split("\n## Quick starts\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```sh\n(.*?)^```", section, re.M | re.S)


def test_each_provider_has_a_quick_start_that_ends_with_doctor() -> None:
    blocks = _quick_starts()
    for spec in SPECS:
        found = [b for b in blocks if f"MLFLOW_SECRETS_AUTH_ENABLE={spec.name}\n" in b]
        assert found, f"no quick start for {spec.name}"
        assert all(f"export {spec.secret_variable()}=" in block for block in found)
    for block in blocks:
        assert block.strip().splitlines()[-1] == "mlflow-secrets-helper doctor"
    # MLflow behind an identity provider: an OAuth client in a store
    assert any("export MLFLOW_OIDC_ISSUER=" in block for block in blocks)


@pytest.mark.parametrize("block", _quick_starts())
def test_quick_starts_set_only_variables_the_code_reads(block: str) -> None:
    exported = re.findall(r"^export ([A-Z_0-9]+)=", block, re.M)
    assert exported and set(exported) <= _variables()
    assert "MLFLOW_SECRETS_ALLOWED_HOSTS" in exported


def test_no_example_prints_a_live_credential_to_the_terminal() -> None:
    for path in [README_PATH, *DOCS]:
        for block in re.findall(r"^```sh\n(.*?)^```", path.read_text(), re.M | re.S):
            for line in block.splitlines():
                if re.search(r"mlflow-secrets-helper( --\S+)* get\b", line):
                    assert "$(" in line or ">" in line or "|" in line.split(" get", 1)[1], (
                        f"{path.name}: {line}"
                    )


# -- install instructions that work ---------------------------------------------------

_UNPUBLISHED = re.compile(r"pip install\s+['\"]?mlflow-secrets-helper\b")


def test_no_document_installs_from_the_index_before_publication() -> None:
    for path in [*MARKDOWN, ROOT / "man" / "mlflow-secrets-helper.1"]:
        assert not _UNPUBLISHED.search(path.read_text().replace("\\-", "-")), path.name


@pytest.mark.parametrize("spec", [s for s in SPECS if s.sdk], ids=lambda s: s.name)
def test_install_hint_says_what_works(spec: ProviderSpec) -> None:
    hint = spec.install_hint()
    assert "\n" not in hint
    assert f"'<checkout or wheel>[{spec.extra}]'" in hint
    assert f"'mlflow-secrets-helper[{spec.extra}]' once it is published" in hint


def test_every_install_hint_in_the_code_comes_from_install_hint() -> None:
    base = ROOT / "helper" / "mlflow_secrets_helper" / "providers" / "base.py"
    for path in ROOT.joinpath("helper").rglob("*.py"):
        text = path.read_text()
        assert len(_UNPUBLISHED.findall(text)) == (path == base), path
        assert "install mlflow-secrets-helper[" not in text, path


# -- shell examples fail when the helper fails ----------------------------------------


def _man_examples() -> list[str]:
    blocks = re.findall(r"^\.EX\n(.*?)^\.EE$", _man_section("EXAMPLES"), re.M | re.S)
    table = {"\\(aq": "'", "\\(dq": '"', "\\e": "\\", "\\-": "-"}
    return [re.sub(r"\\\(aq|\\\(dq|\\e|\\-", lambda m: table[m.group()], b) for b in blocks]


def _shell_examples() -> list[str]:
    blocks = list(_man_examples())
    for path in [README_PATH, *DOCS]:
        blocks += re.findall(r"^```(?:sh|bash)\n(.*?)^```", path.read_text(), re.M | re.S)
    return blocks


def _unsafe(block: str) -> list[str]:
    """Why a shell example would go on (or send a request) after the helper failed."""
    problems = []
    # the helper's answer goes into a pipe (not "||", not inside "$(...)")
    piped = re.compile(r"mlflow-secrets-helper\b[^|]*\bget\b[^|)]*\|(?!\|)")
    for line in block.splitlines():
        if piped.search(line) and "pipefail" not in block:
            problems.append(f"pipes the helper without pipefail: {line}")
    if "curl " in block and "--fail-with-body" not in block:
        problems.append("curl without --fail-with-body")
    return problems


def test_the_old_readme_recipe_is_caught() -> None:
    old = "echo mlflow.company.com | mlflow-secrets-helper get | curl -sS -H @- https://h/api\n"
    assert len(_unsafe(old)) == 2
    assert _unsafe("set -o pipefail\n" + old.replace("-sS", "--fail-with-body -sS")) == []


def test_every_shell_example_fails_when_the_helper_fails() -> None:
    blocks = _shell_examples()
    assert len(blocks) > 15
    problems = [p for block in blocks for p in _unsafe(block)]
    assert not problems, problems


def _curl_recipe() -> str:
    (recipe,) = [b for b in _man_examples() if "curl " in b]
    return recipe


def _run_recipe(tmp_path: Path, helper_exit: int) -> tuple[int, str]:
    """Run the man page's curl recipe with stand-ins for the helper and curl on PATH:
    the helper prints a header (or fails), curl records the headers it got on stdin."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    record = tmp_path / "curl-called"
    helper = bin_dir / "mlflow-secrets-helper"
    helper.write_text(
        textwrap.dedent(f"""\
            #!/bin/sh
            cat >/dev/null
            if [ {helper_exit} -ne 0 ]; then
              echo "mlflow-secrets-helper: error: backend-unavailable: down" >&2
              exit {helper_exit}
            fi
            echo "Authorization: Bearer canary-token"
            """)
    )
    curl = bin_dir / "curl"
    curl.write_text(f"#!/bin/sh\ncat > {shlex.quote(str(record))}\necho '{{}}'\n")
    for stub in (helper, curl):
        stub.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    script = "set -u\n" + _curl_recipe()
    done = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    return done.returncode, record.read_text() if record.exists() else "<not called>"


def test_man_page_curl_recipe_sends_nothing_when_the_helper_fails(tmp_path: Path) -> None:
    status, sent = _run_recipe(tmp_path, helper_exit=4)
    assert status == 4
    assert sent == "<not called>"


def test_man_page_curl_recipe_sends_the_header_on_stdin(tmp_path: Path) -> None:
    status, sent = _run_recipe(tmp_path, helper_exit=0)
    assert status == 0
    assert sent == "Authorization: Bearer canary-token\n"
    assert "canary-token" not in _curl_recipe()


# -- the man page renders what its source means (.ci/man-check) ----------------------


def _man_lint() -> Any:
    spec = importlib.util.spec_from_file_location("man_lint", ROOT / ".ci" / "man_lint.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_man_lint_catches_quotes_that_groff_drops() -> None:
    lint = _man_lint()
    old = '.B {"token": "..."}\n.B {"username": "...", "password": "..."}\n'
    assert len(lint.source_problems(old)) == 2
    assert lint.source_problems('.B {\\(dqtoken\\(dq: \\(dq...\\(dq}\n.BR "a b" , c\n') == []
    assert lint.source_problems(MAN_SOURCE) == []


def test_man_lint_parses_the_rendered_json_examples() -> None:
    lint = _man_lint()
    lost = 'SECRET FORMATS\n       A JSON object {"token": ...} is a bearer token\nEXAMPLES\n  x\n'
    problems, checked = lint.json_problems(lost)
    assert len(problems) == 1 and checked == 0
    kept = lost.replace("...", '"..."')
    assert lint.json_problems(kept) == ([], 1)
