#!/usr/bin/env python3
"""A stand-in for ``mlflow-secrets-helper`` that speaks its JSON protocol (CONTRACT §5).

Used to test the MLflow shim's process handling and caching honestly: it is a real child
process reading stdin and printing one line, and it records every call. Its "backend" and
"cache" live in one JSON state file (``SHIM_FAKE_STATE``), guarded by a file lock so many
concurrent calls behave like the real helper's per-entry lock::

    {"mode": "ok", "backend": {"127.0.0.1:5000": {"name": "Authorization",
                                                  "value": "Bearer t1"}},
     "cache": {}, "ttl": 300, "expires": null}

Modes: ok, garbage, two-lines, flood, hang (also starts a grandchild; both pids go to
``SHIM_FAKE_PIDS``), refused, not-configured, not-found, unavailable, bad-header.
Calls are appended to ``SHIM_FAKE_LOG`` as ``get HOST`` / ``erase HOST ID``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time


def main() -> int:
    args = sys.argv[1:]
    action = args[-1] if args else ""
    attrs = {}
    for line in sys.stdin.read().split("\n"):
        if not line:
            break
        key, _, value = line.partition("=")
        attrs[key] = value
    host = attrs.get("host", "")
    state_path = os.environ["SHIM_FAKE_STATE"]
    with open(state_path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(state_path) as f:
            state = json.load(f)
        with open(os.environ["SHIM_FAKE_LOG"], "a") as log:
            log.write(f"{action} {host} {attrs.get('credential_id', '')}".rstrip() + "\n")
        mode = state.get("mode", "ok")
        if action == "erase":
            cached = state["cache"].get(host)
            if cached and cached["id"] == attrs.get("credential_id", cached["id"]):
                del state["cache"][host]
            _save(state_path, state)
            return 0
        if action != "get" or args[:2] != ["--format", "json"]:
            return _err(2, "invalid-input", "this fake answers only --format json get and erase")
        if mode == "ok" or mode == "bad-header":
            cached = state["cache"].get(host)
            if cached is None:
                secret = state["backend"].get(host)
                if secret is None:
                    return _err(1, "host-not-configured", f"no route serves {host}")
                digest = hashlib.sha256(secret["value"].encode()).hexdigest()[:16]
                now = time.time()
                cached = dict(secret, id=f"fake-{digest}", fetched=now)
                state["cache"][host] = cached
                _save(state_path, state)
                source = "backend"
            else:
                source = "cache"
            ttl = state.get("ttl")
            expires = state.get("expires")
            value = cached["value"] if mode == "ok" else cached["value"] + "\r\nX-Injected: 1"
            answer = {
                "header": {"name": cached["name"], "value": value},
                "credential_id": cached["id"],
                "expires_at": None if expires is None else cached["fetched"] + expires,
                "refresh_after": None if ttl is None else cached["fetched"] + ttl,
                "source": source,
            }
            print(json.dumps({"v": 1, "ok": answer}, separators=(",", ":")))
            return 0
    if mode == "garbage":
        print("Authorization: Bearer not-json-at-all")
        return 0
    if mode == "two-lines":
        line = json.dumps({"v": 1, "err": {"kind": "x", "message": "m", "retryable": False}})
        print(line)
        print(line)
        return 0
    if mode == "flood":
        sys.stdout.write("x" * (1 << 20))
        return 0
    if mode == "hang":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        with open(os.environ["SHIM_FAKE_PIDS"], "w") as f:
            f.write(f"{os.getpid()} {child.pid}\n")
        time.sleep(300)
        return 0
    if mode == "refused":
        return _err(1, "host-not-allowed", f"{host} is not in MLFLOW_SECRETS_ALLOWED_HOSTS")
    if mode == "not-configured":
        return _err(1, "host-not-configured", f"no route serves {host}")
    if mode == "not-found":
        return _err(1, "not-found", "secret mlflow/missing does not exist")
    if mode == "unavailable":
        return _err(4, "backend-unavailable", "secret store timed out")
    return _err(5, "config", f"unknown fake mode {mode}")


def _err(code: int, kind: str, message: str) -> int:
    doc = {"v": 1, "err": {"kind": kind, "message": message, "retryable": code == 4}}
    print(json.dumps(doc, separators=(",", ":")))
    print(f"mlflow-secrets-helper: error: {kind}: {message}", file=sys.stderr)
    return code


def _save(path: str, state: dict[str, object]) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(state, f)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    sys.exit(main())
