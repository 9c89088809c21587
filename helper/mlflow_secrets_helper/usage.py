"""The help texts: the usage summary, one page per action, and the git program's own.

Plain text only; :mod:`mlflow_secrets_helper.cli` decides when to print them. They say
the same as the SYNOPSIS, OPTIONS, ACTIONS, GIT and EXIT STATUS sections of the man page,
which stays the reference.
"""

from __future__ import annotations

PROG = "mlflow-secrets-helper"
GIT_PROG = "git-credential-mlflow-secrets"

USAGE = f"""\
usage: {PROG} [--format header|token|json|git] [--refresh] [--timeout SECONDS]
                             get | store | erase
       {PROG} [--timeout SECONDS] info [--json]
       {PROG} [--timeout SECONDS] doctor [--json] [--dry-run URL]
       {PROG} cache status | cache clear
       {PROG} help [ACTION] | --help | --version

Reads a host (bare host[:port], a URL, or git key=value lines) on stdin and
prints one HTTP auth header for it.

actions: get (alias fill), store (approve), erase (reject), info, doctor, cache
Run '{PROG} help ACTION' (or 'ACTION --help') for one action's options,
examples and exit codes. The reference is mlflow-secrets-helper(1).
"""

_EXIT_GET = """\
exit codes:
  0  printed a credential
  1  no credential for this host (not allowed, no route, no such secret)
  2  usage error or invalid input
  3  the backend denied access
  4  the backend is unavailable and no stale answer may be served
  5  configuration, cache or secret-content error
"""

_ACTIONS = {
    "get": f"""\
usage: {PROG} [--format header|token|json|git] [--refresh] [--timeout SECONDS] get

Print the HTTP auth header for the host read on stdin (git's name 'fill' works too).
stdout carries the answer and nothing else; diagnostics go to stderr.

options:
  --format FORMAT    header (default): 'Name: value'; token: the bare bearer token;
                     json: one JSON line; git: git's credential protocol
  --refresh          skip the cache: read the backend now and store the result
  --timeout SECONDS  deadline for the backend work (0 < SECONDS <= 600, default 10)

examples:
  echo mlflow.example.com | {PROG} get
  echo https://mlflow.example.com | {PROG} --format json --refresh get

{_EXIT_GET}""",
    "store": f"""\
usage: {PROG} store < attributes

Accepted and ignored (git's name 'approve' works too): the helper never stores a
secret it did not fetch. Reads stdin and prints nothing.

options: none

example:
  printf 'protocol=https\\nhost=mlflow.example.com\\n\\n' | {PROG} store

exit codes:
  0  always, once the input is valid
  2  usage error or invalid input
  5  configuration error
""",
    "erase": f"""\
usage: {PROG} [--timeout SECONDS] erase < target

Delete the cached credential for the target read on stdin, so the next get reads
the backend (git's name 'reject' works too). With a credential_id attribute, delete
only while the cache still holds that credential; with git's password or credential
attribute, only when it is the cached value. Prints nothing.

options:
  --timeout SECONDS  deadline for reading stdin (0 < SECONDS <= 600, default 10)

examples:
  echo mlflow.example.com | {PROG} erase
  printf 'host=mlflow.example.com\\ncredential_id=ID\\n' | {PROG} erase

exit codes:
  0  erased, or nothing to erase
  1  the host is not allowed
  2  usage error or invalid input
  5  configuration or cache error
""",
    "info": f"""\
usage: {PROG} [--timeout SECONDS] info [--json]

Show the version, the providers (enabled, configured, SDK installed), the effective
configuration with every secret masked, the cache, unknown MLFLOW_* variables (typos)
and security warnings. Contacts no backend.

options:
  --json             print one JSON document instead of text
  --timeout SECONDS  used as the configured timeout in the report

examples:
  {PROG} info
  {PROG} info --json

exit codes:
  0  the configuration is valid
  2  usage error
  5  the configuration is invalid (the report says why)
""",
    "doctor": f"""\
usage: {PROG} [--timeout SECONDS] doctor [--json] [--dry-run URL]

Run each check (configuration, SDKs, backend login and secret, cache) and print one
line per check starting with ok, warn or FAIL.

options:
  --json             print one JSON document instead of text
  --dry-run URL      also send one authenticated request to the MLflow server at URL
  --timeout SECONDS  deadline for each backend check (0 < SECONDS <= 600, default 10)

examples:
  {PROG} doctor
  {PROG} doctor --dry-run https://mlflow.example.com

exit codes:
  0  nothing failed (warnings do not count)
  1-5  the exit code of the first failed check, as for get
""",
    "cache": f"""\
usage: {PROG} cache status | cache clear

status: show the cache's location, whether it is enabled, its entries, hit rate and
where its key is kept. clear: remove every entry and the cache key.

options: none

examples:
  {PROG} cache status
  {PROG} cache clear

exit codes:
  0  done
  2  neither status nor clear
  5  configuration or cache error
""",
}

GIT_USAGE = f"""\
usage: {GIT_PROG} [--timeout SECONDS] get | store | erase
       {GIT_PROG} help [ACTION] | --help | --version

A git credential helper: {PROG} speaking git's credential protocol
(the same as '{PROG} --format git'). Configure it with

  git config --global credential.helper mlflow-secrets

git then runs it with get, store or erase and git's key=value lines on stdin.
For a host it serves it prints username/password (basic) or, when git sends
capability[]=authtype (git 2.46+), authtype=Bearer and credential=TOKEN.
For a host it does not serve it prints nothing and exits 0, so the next helper
(or git's prompt) answers. store is ignored; erase drops the cached credential.
A failure for a host it serves prints quit=1 so git does not prompt; a secret
that does not exist prints nothing, so git may ask the next helper.
Actions git does not define are ignored. See the GIT section of
mlflow-secrets-helper(1).
"""


def topics() -> tuple[str, ...]:
    """The actions that have their own help page."""
    return tuple(_ACTIONS)


def action_help(action: str) -> str:
    """The help page of one action (a key of :func:`topics`)."""
    return _ACTIONS[action]
