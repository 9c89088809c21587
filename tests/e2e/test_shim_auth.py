"""The shim's auth object against loopback HTTP servers and a real helper child process
(``shim_fake_helper.py``, which speaks the helper's JSON protocol and logs its calls)."""

from __future__ import annotations

import io
import logging
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from mlflow_secrets_shim.auth import HelperAuth
from mlflow_secrets_shim.errors import HelperError
from mlflow_secrets_shim.invocation import HelperProcess
from mlflow_secrets_shim.memo import RECHECK_401_AFTER, CredentialMemo
from mlflow_secrets_shim.origin import Origin
from tests.e2e.shim_fakes import FakeHelper, LoopbackServer, loopback_server

SECRET = "Bearer tok-0001-s3cr3t"
ROTATED = "Bearer tok-0002-r0tated"


@pytest.fixture
def fake(tmp_path: Path) -> FakeHelper:
    return FakeHelper(tmp_path)


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with loopback_server() as box:
        yield box


@pytest.fixture
def other() -> Iterator[LoopbackServer]:
    with loopback_server() as box:
        yield box


MakeAuth = Callable[..., HelperAuth]


@pytest.fixture
def make_auth(fake: FakeHelper) -> MakeAuth:
    def make(clock: Callable[[], float] = time.time, **env: str) -> HelperAuth:
        environ = {**os.environ, **fake.env, **env}
        return HelperAuth(CredentialMemo(HelperProcess(environ=environ), clock=clock))

    return make


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.trust_env = False
        yield s


def protect(server: LoopbackServer, fake: FakeHelper, name: str, value: str) -> None:
    server.accept = {(name, value)}
    fake.set_secret(server.netloc, name, value)


# -- the header and its memory ------------------------------------------------------------


def test_header_is_added_and_the_answer_is_kept_in_memory(
    fake: FakeHelper, server: LoopbackServer, make_auth: MakeAuth, session: requests.Session
) -> None:
    protect(server, fake, "Authorization", SECRET)
    auth = make_auth()
    for _ in range(5):
        assert session.get(f"{server.url}/protected", auth=auth).status_code == 200
    assert fake.calls() == [f"get {server.netloc}"]
    assert all(s.headers["authorization"] == SECRET for s in server.seen)


def test_default_port_is_left_out_of_the_helper_input() -> None:
    assert Origin.of("https://MLflow.Example.com./x").helper_input() == (
        b"protocol=https\nhost=mlflow.example.com\n\n"
    )
    assert Origin.of("http://[::1]:5000/x").netloc == "[::1]:5000"
    # plain http keeps a trailing dot, so the helper can refuse that spelling (HOST POLICY)
    assert Origin.of("http://localhost.:5000/").helper_input() == (
        b"protocol=http\nhost=localhost.:5000\n\n"
    )
    assert Origin.of("http://127.0.0.1:80/").helper_input(credential_id="c") == (
        b"protocol=http\nhost=127.0.0.1\ncredential_id=c\n\n"
    )


def test_answer_is_asked_again_after_refresh_after(
    fake: FakeHelper, server: LoopbackServer, make_auth: MakeAuth, session: requests.Session
) -> None:
    protect(server, fake, "Authorization", SECRET)
    fake.set(ttl=100, expires=None)
    offset = [0.0]
    auth = make_auth(clock=lambda: time.time() + offset[0])
    session.get(f"{server.url}/protected", auth=auth)
    offset[0] = 90
    session.get(f"{server.url}/protected", auth=auth)
    assert len(fake.calls("get")) == 1
    offset[0] = 101
    session.get(f"{server.url}/protected", auth=auth)
    assert len(fake.calls("get")) == 2


def test_answer_is_never_used_past_expires_at(
    fake: FakeHelper, server: LoopbackServer, make_auth: MakeAuth, session: requests.Session
) -> None:
    protect(server, fake, "Authorization", SECRET)
    fake.set(ttl=None, expires=50)
    offset = [0.0]
    auth = make_auth(clock=lambda: time.time() + offset[0])
    session.get(f"{server.url}/protected", auth=auth)
    offset[0] = 51
    session.get(f"{server.url}/protected", auth=auth)
    assert len(fake.calls("get")) == 2


def test_many_threads_on_a_cold_memory_start_one_helper(
    fake: FakeHelper, server: LoopbackServer, make_auth: MakeAuth
) -> None:
    protect(server, fake, "Authorization", SECRET)
    auth = make_auth()
    barrier = threading.Barrier(8)
    codes: list[int] = []

    def work() -> None:
        with requests.Session() as s:
            barrier.wait()
            codes.append(s.get(f"{server.url}/protected", auth=auth).status_code)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 8
    assert len(fake.calls("get")) == 1


# -- hosts that are not ours, and failures ---------------------------------------------------


@pytest.mark.parametrize("mode", ["refused", "not-configured"])
def test_host_not_ours_goes_out_without_header_and_warns_once(
    mode: str,
    fake: FakeHelper,
    server: LoopbackServer,
    make_auth: MakeAuth,
    session: requests.Session,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.set(mode=mode)
    auth = make_auth()
    with caplog.at_level(logging.WARNING, logger="mlflow_secrets_shim"):
        for _ in range(3):
            assert session.get(f"{server.url}/open", auth=auth).status_code == 200
    assert [s.headers.get("authorization") for s in server.seen] == [None] * 3
    warnings = [r for r in caplog.records if r.name == "mlflow_secrets_shim"]
    assert len(warnings) == 1
    assert server.netloc in warnings[0].getMessage()
    assert len(fake.calls("get")) == 1


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("not-found", "not-found: secret mlflow/missing does not exist"),
        ("unavailable", "backend-unavailable: secret store timed out"),
        ("garbage", "stdout is not JSON"),
        ("two-lines", "exactly one line"),
        ("flood", "printed more than"),
        ("bad-header", "not a valid header value"),
    ],
)
def test_helper_failure_raises_and_sends_nothing(
    mode: str,
    expected: str,
    fake: FakeHelper,
    server: LoopbackServer,
    make_auth: MakeAuth,
    session: requests.Session,
) -> None:
    protect(server, fake, "Authorization", SECRET)
    fake.set(mode=mode)
    with pytest.raises(HelperError) as caught:
        session.get(f"{server.url}/protected", auth=make_auth())
    assert expected in str(caught.value)
    assert "tok-0001" not in str(caught.value)
    assert server.seen == []


def test_failure_is_repeated_briefly_instead_of_starting_a_helper_per_request(
    fake: FakeHelper, server: LoopbackServer, make_auth: MakeAuth, session: requests.Session
) -> None:
    fake.set(mode="unavailable")
    auth = make_auth()
    for _ in range(3):
        with pytest.raises(HelperError):
            session.get(f"{server.url}/protected", auth=auth)
    assert len(fake.calls("get")) == 1


def test_a_hanging_helper_is_killed_with_its_children(
    fake: FakeHelper, server: LoopbackServer, make_auth: MakeAuth, session: requests.Session
) -> None:
    fake.set(mode="hang")
    started = time.monotonic()
    with pytest.raises(HelperError, match="did not answer"):
        session.get(f"{server.url}/protected", auth=make_auth(MLFLOW_SECRETS_TIMEOUT_SEC="0.5"))
    assert time.monotonic() - started < 15
    pids = [int(p) for p in fake.pids_path.read_text().split()]
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)
    assert server.seen == []


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_command_must_be_absolute(make_auth: MakeAuth, server: LoopbackServer) -> None:
    auth = make_auth(MLFLOW_SECRETS_HELPER_COMMAND="mlflow-secrets-helper")
    with pytest.raises(HelperError, match="absolute path"):
        requests.get(f"{server.url}/x", auth=auth)
    assert server.seen == []


def test_default_command_is_this_interpreter_isolated() -> None:
    helper = HelperProcess(environ={}, executable="/opt/py/bin/python3")
    assert helper.command() == ["/opt/py/bin/python3", "-I", "-m", "mlflow_secrets_helper"]
    assert helper.timeout() == 15.0
    assert HelperProcess(environ={"MLFLOW_SECRETS_TIMEOUT_SEC": "2"}).timeout() == 7.0


# -- 401 and 403 ------------------------------------------------------------------------------


class RecordingAdapter(HTTPAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.sends: list[dict[str, Any]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sends.append(kwargs)
        return super().send(request, **kwargs)


def rotate(server: LoopbackServer, fake: FakeHelper, name: str = "Authorization") -> None:
    server.accept = {(name, ROTATED)}
    fake.set_secret(server.netloc, name, ROTATED)


def test_401_erases_by_id_refreshes_and_resends_once_with_the_same_settings(
    fake: FakeHelper,
    server: LoopbackServer,
    other: LoopbackServer,
    make_auth: MakeAuth,
    session: requests.Session,
) -> None:
    protect(server, fake, "Authorization", SECRET)
    other.accept = server.accept
    auth = make_auth()
    adapter = RecordingAdapter()
    session.mount("http://", adapter)
    # ``other`` acts as the HTTP proxy: the re-send must go through it too.
    settings: dict[str, Any] = {
        "timeout": (3.5, 7.25),
        "verify": False,
        "cert": None,
        "proxies": {"http": other.url},
    }
    assert session.get(f"{server.url}/protected/a", auth=auth, **settings).status_code == 200
    rotate(server, fake)
    other.accept = server.accept
    adapter.sends.clear()
    r = session.post(f"{server.url}/protected/b", data=b"payload", auth=auth, **settings)
    assert r.status_code == 200
    assert [h.status_code for h in r.history] == [401]
    assert len(fake.calls("erase")) == 1
    old_id = fake.calls("get")[0]  # the erase names the credential that failed
    assert fake.calls("erase")[0].startswith(f"erase {server.netloc} fake-")
    assert old_id == f"get {server.netloc}"
    assert len(adapter.sends) == 2
    first, second = adapter.sends
    for key in ("timeout", "verify", "cert", "proxies"):
        assert first[key] == second[key], key
    assert [s.body for s in other.seen[-2:]] == [b"payload", b"payload"]
    assert server.seen == []  # every request went through the proxy
    assert session.get(f"{server.url}/protected/c", auth=auth, **settings).status_code == 200
    assert len(fake.calls("erase")) == 1


def test_401_rewinds_a_file_body(
    fake: FakeHelper, server: LoopbackServer, make_auth: MakeAuth, session: requests.Session
) -> None:
    protect(server, fake, "Authorization", SECRET)
    auth = make_auth()
    session.get(f"{server.url}/protected", auth=auth)
    rotate(server, fake)
    payload = os.urandom(256 * 1024)
    body = io.BytesIO(b"skip" + payload)
    body.seek(4)
    r = session.put(f"{server.url}/protected/upload", data=body, auth=auth, timeout=10)
    assert r.status_code == 200
    assert r.json() == {"len": len(payload)}
    assert [s.body for s in server.seen[-2:]] == [payload, payload]


def test_401_with_a_body_that_cannot_be_replayed_returns_the_401(
    fake: FakeHelper, server: LoopbackServer, make_auth: MakeAuth, session: requests.Session
) -> None:
    protect(server, fake, "Authorization", SECRET)
    auth = make_auth()
    session.get(f"{server.url}/protected", auth=auth)
    rotate(server, fake)
    r = session.post(f"{server.url}/protected", data=(c for c in [b"a", b"b"]), auth=auth)
    assert r.status_code == 401
    assert len(fake.calls("erase")) == 1
    # The credential was still replaced: the next request succeeds without another erase.
    assert session.post(f"{server.url}/protected", data=b"ab", auth=auth).status_code == 200
    assert len(fake.calls("erase")) == 1


def test_genuine_401_is_not_retried_in_a_loop(
    fake: FakeHelper, server: LoopbackServer, make_auth: MakeAuth, session: requests.Session
) -> None:
    fake.set_secret(server.netloc, "Authorization", SECRET)
    server.accept = set()
    auth = make_auth()
    for _ in range(5):
        assert session.get(f"{server.url}/protected", auth=auth).status_code == 401
    assert len(server.seen) == 5
    assert len(fake.calls("erase")) == 1


def test_server_changed_before_the_store_recovers_after_the_recheck_period(
    fake: FakeHelper, server: LoopbackServer, make_auth: MakeAuth, session: requests.Session
) -> None:
    now = [1000.0]
    protect(server, fake, "Authorization", SECRET)
    auth = make_auth(clock=lambda: now[0])
    assert session.get(f"{server.url}/protected", auth=auth).status_code == 200
    server.accept = {("Authorization", ROTATED)}  # the server first; the store still has SECRET
    for _ in range(50):  # a storm of refused requests within one second
        assert session.get(f"{server.url}/protected", auth=auth).status_code == 401
        now[0] += 0.02
    assert len(fake.calls("erase")) == 1  # one check: the store still had the old secret
    fake.set_secret(server.netloc, "Authorization", ROTATED)  # now the store
    now[0] += RECHECK_401_AFTER
    assert session.get(f"{server.url}/protected", auth=auth).status_code == 200
    assert len(fake.calls("erase")) == 2
    assert session.get(f"{server.url}/protected", auth=auth).status_code == 200
    assert len(fake.calls("erase")) == 2


def test_a_401_storm_costs_one_check_per_recheck_period(
    fake: FakeHelper, server: LoopbackServer, make_auth: MakeAuth, session: requests.Session
) -> None:
    now = [1000.0]
    fake.set_secret(server.netloc, "Authorization", SECRET)
    server.accept = set()
    auth = make_auth(clock=lambda: now[0])
    for _ in range(50):  # 50 refused requests over 10 s
        assert session.get(f"{server.url}/protected", auth=auth).status_code == 401
        now[0] += 0.2
    assert len(fake.calls("erase")) == math.ceil(10 / RECHECK_401_AFTER)


def test_a_helper_failure_during_the_401_refresh_raises_and_sends_nothing_more(
    fake: FakeHelper, server: LoopbackServer, make_auth: MakeAuth, session: requests.Session
) -> None:
    protect(server, fake, "Authorization", SECRET)
    auth = make_auth()
    session.get(f"{server.url}/protected", auth=auth)
    rotate(server, fake)
    fake.set(mode="unavailable")
    with pytest.raises(HelperError, match="backend-unavailable"):
        session.get(f"{server.url}/protected", auth=auth)
    assert len(server.seen) == 2  # the warm-up and the rejected request, no re-send
    assert len(fake.calls("erase")) == 1


def test_header_name_change_on_rotation_drops_the_old_header(
    fake: FakeHelper, server: LoopbackServer, make_auth: MakeAuth, session: requests.Session
) -> None:
    protect(server, fake, "X-MLflow-Auth", "tok-custom-1")
    auth = make_auth()
    session.get(f"{server.url}/protected", auth=auth)
    rotate(server, fake, name="Authorization")
    assert session.get(f"{server.url}/protected", auth=auth).status_code == 200
    assert "x-mlflow-auth" not in server.seen[-1].headers


def test_concurrent_401s_cause_one_refresh(
    fake: FakeHelper, server: LoopbackServer, make_auth: MakeAuth
) -> None:
    protect(server, fake, "Authorization", SECRET)
    auth = make_auth()
    requests.get(f"{server.url}/protected", auth=auth)
    rotate(server, fake)
    barrier = threading.Barrier(8)
    codes: list[int] = []

    def work() -> None:
        with requests.Session() as s:
            barrier.wait()
            codes.append(s.get(f"{server.url}/protected", auth=auth).status_code)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 8
    assert len(fake.calls("erase")) == 1
    assert len(fake.calls("get")) == 2


def test_403_everywhere_causes_no_erase_storm(
    fake: FakeHelper, server: LoopbackServer, make_auth: MakeAuth
) -> None:
    fake.set_secret(server.netloc, "Authorization", SECRET)
    auth = make_auth()
    codes: list[int] = []

    def work() -> None:
        with requests.Session() as s:
            for _ in range(10):
                codes.append(s.get(f"{server.url}/forbidden", auth=auth).status_code)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [403] * 80
    assert len(fake.calls("erase")) <= 1
    assert len(server.seen) == 80  # no re-sends: the helper had nothing better


def test_403_gets_one_guarded_retry_per_credential(
    fake: FakeHelper, server: LoopbackServer, make_auth: MakeAuth, session: requests.Session
) -> None:
    fake.set_secret(server.netloc, "Authorization", SECRET)
    auth = make_auth()
    session.get(f"{server.url}/open", auth=auth)
    rotate(server, fake)
    r = session.get(f"{server.url}/forbidden", auth=auth)
    assert r.status_code == 403
    assert [h.status_code for h in r.history] == [403]  # re-sent once with the new credential
    assert len(fake.calls("erase")) == 1
    for _ in range(3):
        assert session.get(f"{server.url}/forbidden", auth=auth).status_code == 403
    # the new credential had its one check (same answer, so no re-send), then no more erases
    assert len(fake.calls("erase")) == 2
    assert len(server.carrying(ROTATED)) == 4


# -- redirects ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("name", ["Authorization", "X-MLflow-Auth"])
@pytest.mark.parametrize("target", ["port", "host"])
def test_cross_origin_redirect_never_carries_our_header(
    status: int,
    name: str,
    target: str,
    fake: FakeHelper,
    server: LoopbackServer,
    other: LoopbackServer,
    make_auth: MakeAuth,
    session: requests.Session,
) -> None:
    fake.set_secret(server.netloc, name, SECRET)
    fake.set_secret(f"localhost:{server.port}", name, "Bearer for-localhost")
    # "port": same IP, other port; "host": same port, other host name (same listener).
    where = other.url if target == "port" else f"http://localhost:{server.port}"
    r = session.post(
        f"{server.url}/redirect/{status}?to={where}/landing",
        data=b"body-bytes",
        auth=make_auth(),
    )
    assert r.status_code == 200
    landed = [s for s in [*server.seen, *other.seen] if s.path == "/landing"]
    assert len(landed) == 1
    assert not server.carrying("tok-0001")[1:]
    assert other.carrying("tok-0001") == []
    assert "for-localhost" not in str(landed[0].headers)
    if status in (307, 308):
        assert landed[0].body == b"body-bytes"


def test_cross_origin_redirect_through_mlflows_request_path(
    fake: FakeHelper,
    server: LoopbackServer,
    other: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow.tracking.request_auth.registry import fetch_auth
    from mlflow.utils.rest_utils import MlflowHostCreds, http_request

    for name, value in fake.env.items():
        monkeypatch.setenv(name, value)
    fake.set_secret(server.netloc, "X-MLflow-Auth", SECRET)
    fetch_auth("mlflow-secrets-helper").forget()
    try:
        creds = MlflowHostCreds(server.url, auth="mlflow-secrets-helper")
        endpoint = f"/redirect/307?to={other.url}/api/2.0/mlflow/runs/log-metric"
        r = http_request(creds, endpoint, "POST", json={"key": "m", "value": 1})
    finally:
        fetch_auth("mlflow-secrets-helper").forget()
    assert r.status_code == 200
    assert len(server.carrying("tok-0001")) == 1
    assert other.carrying("tok-0001") == []
    assert other.seen[0].body == server.seen[0].body != b""


def test_two_hops_lose_the_header_at_the_first_origin_change(
    fake: FakeHelper,
    server: LoopbackServer,
    other: LoopbackServer,
    make_auth: MakeAuth,
    session: requests.Session,
) -> None:
    fake.set_secret(server.netloc, "X-MLflow-Auth", SECRET)
    hop2 = f"{other.url}/redirect/307?to={server.url}/final"
    r = session.put(f"{server.url}/redirect/307?to={hop2}", data=b"x", auth=make_auth())
    assert r.status_code == 200
    assert [s.path.split("?")[0] for s in [*server.seen, *other.seen]] == [
        "/redirect/307",
        "/final",
        "/redirect/307",
    ]
    assert len(server.carrying("tok-0001")) == 1  # the first request only
    assert other.carrying("tok-0001") == []


def test_same_origin_redirect_keeps_the_header(
    fake: FakeHelper, server: LoopbackServer, make_auth: MakeAuth, session: requests.Session
) -> None:
    protect(server, fake, "X-MLflow-Auth", SECRET)
    r = session.get(f"{server.url}/redirect/302?to=/protected/there", auth=make_auth())
    assert r.status_code == 200
    assert [h.status_code for h in r.history] == [302]
    r = session.post(
        f"{server.url}/redirect/307?to={server.url}/protected/x", data=b"b", auth=make_auth()
    )
    assert r.status_code == 200


def test_redirect_after_a_resend_is_guarded_too(
    fake: FakeHelper,
    server: LoopbackServer,
    other: LoopbackServer,
    make_auth: MakeAuth,
    session: requests.Session,
) -> None:
    """A 401 re-send whose answer is a cross-origin redirect must not leak either."""
    name = "X-MLflow-Auth"
    fake.set_secret(server.netloc, name, SECRET)
    auth = make_auth()
    session.get(f"{server.url}/x", auth=auth)
    fake.set_secret(server.netloc, name, ROTATED)

    server.queue = [(401, {}), (307, {"Location": f"{other.url}/elsewhere"})]
    r = session.post(f"{server.url}/y", data=b"z", auth=auth)
    assert r.status_code == 200
    assert other.carrying("tok-000") == []
    assert other.seen[-1].path == "/elsewhere"


# -- fork and the provider ---------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_after_fork_the_child_uses_the_memory_and_can_refresh(
    fake: FakeHelper, server: LoopbackServer, make_auth: MakeAuth
) -> None:
    protect(server, fake, "Authorization", SECRET)
    auth = make_auth()
    requests.get(f"{server.url}/protected", auth=auth)
    rotate(server, fake)
    # Fork while another thread holds the origin's lock, as a refresh in flight would.
    slot = auth._memo._slots[Origin.of(server.url)]
    slot.lock.acquire()
    try:
        pid = os.fork()
        if pid == 0:  # child: a 401 refresh needs the lock the parent thread held
            try:
                code = requests.get(f"{server.url}/protected", auth=auth, timeout=10).status_code
                os._exit(0 if code == 200 else 1)
            except BaseException:
                os._exit(2)
    finally:
        slot.lock.release()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(fake.calls("erase")) == 1


def test_provider_constructor_cannot_fail_and_hands_out_one_auth_object(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow_secrets_shim.provider import SecretsHelperAuthProvider

    monkeypatch.setenv("MLFLOW_SECRETS_HELPER_COMMAND", "not absolute ' unbalanced")
    provider = SecretsHelperAuthProvider()
    assert provider.get_name() == "mlflow-secrets-helper"
    assert provider.get_auth() is provider.get_auth()


def test_mlflow_registry_finds_the_provider() -> None:
    from mlflow.tracking.request_auth.registry import fetch_auth

    assert isinstance(fetch_auth("mlflow-secrets-helper"), HelperAuth)


def test_importing_the_shim_loads_no_helper_or_sdk() -> None:
    code = (
        "import sys, mlflow_secrets_shim.provider, mlflow_secrets_shim.auth\n"
        "heavy = {'mlflow_secrets_helper', 'boto3', 'botocore', 'hvac', 'azure', 'cryptography'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
