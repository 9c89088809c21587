"""A loopback stand-in for the one Kubernetes API call OpenBao's Kubernetes auth makes.

It answers only ``POST /apis/authentication.k8s.io/v1/tokenreviews``, the way a real API
server does for a valid service-account token, so OpenBao's Kubernetes auth method can be
exercised without a cluster. It is NOT a Kubernetes API server; :meth:`K8sTokenReview.revoke`
makes it answer "not authenticated" for a token.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

from devservers.net import BackgroundServer, JSONHandler

TOKENREVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class _ReviewHandler(JSONHandler):
    def do_POST(self) -> None:
        review: K8sTokenReview = self.server.owner
        body = json.loads(self.body() or b"{}")
        if self.path != TOKENREVIEWS:
            self.send_json(404, {"kind": "Status", "status": "Failure", "code": 404})
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
        self.send_json(
            201,
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": body.get("spec", {}),
                "status": status,
            },
        )


class K8sTokenReview(BackgroundServer):
    """The TokenReview stand-in, serving (plain HTTP) from construction until :meth:`stop`.

    ``dummy_ca_pem``: any CA certificate; OpenBao requires ``kubernetes_ca_cert`` whenever
    ``disable_local_ca_jwt`` is true, even for an ``http://`` host.
    """

    handler = _ReviewHandler

    def __init__(self, dummy_ca_pem: str) -> None:
        self.dummy_ca_pem = dummy_ca_pem
        self.revoked: set[str] = set()
        self.reviews: list[str] = []
        self._key: Any = None
        super().__init__()

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
