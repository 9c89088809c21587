"""The file source on real files: the safety rule, the kubelet's ``..data`` swap, the limits.

The machine (and CI) runs the tests as root; a file "owned by someone else" is made with
``os.chown`` to an unused uid, which fails loudly when the tests do not run as root. The
volume trees are laid out as the kubelet's atomic writer lays them out: a timestamped
directory, ``..data`` pointing at it, the visible names pointing into ``..data``.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlflow_secrets_helper import providers
from mlflow_secrets_helper.cache import open_user_cache
from mlflow_secrets_helper.config import load
from mlflow_secrets_helper.errors import BackendUnavailable, ConfigError, InvalidSecret, NotFound
from mlflow_secrets_helper.protocol import Target
from mlflow_secrets_helper.providers import Provider, file
from mlflow_secrets_helper.resolve import Resolver
from mlflow_secrets_helper.secret import MAX_SECRET_BYTES, parse_secret
from tests.support.contract import CANARY, ProviderContract, deadline
from tests.support.kubelet import Kubelet

#: a uid no account on the machine has: "another user"
OTHER_UID = 12345


def provider(path: Path | str, env: dict[str, str] | None = None, **seams: object) -> Provider:
    return providers.spec("file").build(
        {"path": str(path)},
        env or {},
        providers.Seams(**seams),  # type: ignore[arg-type]
    )


def read(path: Path | str) -> str:
    value = provider(path).fetch(deadline()).value.expose()
    assert isinstance(value, str)
    return value


def secret_file(directory: Path, text: str = "tok-1", name: str = "token") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    path.chmod(0o600)
    return path


def refused(path: Path | str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        read(path)
    error = caught.value
    assert "\n" not in error.message and error.hints
    assert error.exit_code == 5
    return error


# -- the provider contract, on files ---------------------------------------------------


class TestFileProviderContract(ProviderContract):
    provider_name = "file"

    @pytest.fixture
    def make_provider(self, tmp_path: Path) -> Callable[..., Provider]:
        names = itertools.count()

        def make(payload: str | bytes, **settings: str) -> Provider:
            path = tmp_path / f"secret-{next(names)}"
            path.write_bytes(payload.encode() if isinstance(payload, str) else payload)
            path.chmod(0o600)
            return provider(path)

        return make

    @pytest.fixture
    def missing_provider(self, tmp_path: Path) -> Provider:
        return provider(tmp_path / "not-mounted" / "token")

    @pytest.fixture
    def rotate(self) -> Callable[[Provider, str], None]:
        def rotate(rotated: Provider, payload: str) -> None:
            path = Path(rotated.reference())
            staged = path.with_name(path.name + ".new")
            staged.write_text(payload)
            staged.chmod(0o600)
            os.rename(staged, path)

        return rotate

    # No backend: nothing can deny a login or be unreachable. What stands for a denial is
    # a file the source must not trust (below, and the safety rule tests further down).
    test_denied_is_backend_denied = None  # type: ignore[assignment]
    test_unreachable_is_unavailable_within_deadline = None  # type: ignore[assignment]

    def test_a_file_another_user_owns_is_refused_not_denied(self, tmp_path: Path) -> None:
        path = secret_file(tmp_path)
        os.chown(path, OTHER_UID, -1)
        assert f"owned by uid {OTHER_UID}" in refused(path).message

    def test_building_a_provider_imports_no_sdk(self) -> None:
        code = (
            "import sys\n"
            "import mlflow_secrets_helper.providers as p\n"
            "built = p.create('file', {'path': '/run/secrets/mlflow-token'}, {})\n"
            "built.reference(); built.cache_key(); built.warnings(); repr(built)\n"
            "loaded = {m.partition('.')[0] for m in sys.modules}\n"
            "assert not loaded & {'hvac', 'boto3', 'botocore', 'azure', 'requests'}, loaded\n"
        )
        import subprocess

        subprocess.run([sys.executable, "-c", code], check=True)


# -- what is read and how it is handed back ------------------------------------------------


def test_every_fetch_reads_the_file_again_and_is_never_cached(tmp_path: Path) -> None:
    path = secret_file(tmp_path, "first")
    reader = provider(path, clock=lambda: 1000.0)
    fetched = reader.fetch(deadline())
    assert fetched.value.expose() == "first"
    assert fetched.local is True
    assert fetched.expires_at == 1000.0 + file.RECHECK_SEC == 1010.0
    path.write_text("second")  # rewritten in place: the next read serves it at once
    assert reader.fetch(deadline()).value.expose() == "second"


def test_the_json_formats_are_returned_as_text_for_the_resolver(tmp_path: Path) -> None:
    client = json.dumps({"client_id": "app", "client_secret": CANARY})
    assert read(secret_file(tmp_path, client)) == client
    basic = secret_file(tmp_path, '{"username": "u", "password": "p"}\n', "basic")
    assert parse_secret(provider(basic).fetch(deadline()).value).mode == "basic"


def test_an_empty_file_is_the_usual_invalid_secret(tmp_path: Path) -> None:
    fetched = provider(secret_file(tmp_path, "")).fetch(deadline())
    with pytest.raises(InvalidSecret):
        parse_secret(fetched.value)


def test_at_most_64_kib_is_read(tmp_path: Path) -> None:
    assert len(read(secret_file(tmp_path, "t" * MAX_SECRET_BYTES))) == MAX_SECRET_BYTES
    large = secret_file(tmp_path, CANARY * (MAX_SECRET_BYTES // len(CANARY) + 1), "large")
    with pytest.raises(InvalidSecret, match="larger than 64 KiB") as caught:
        read(large)
    assert CANARY not in str(caught.value) and str(large) in caught.value.message


def test_text_that_is_not_utf8_is_invalid(tmp_path: Path) -> None:
    path = secret_file(tmp_path)
    path.write_bytes(b"tok-\xff\xfe")
    with pytest.raises(InvalidSecret, match="is not UTF-8 text"):
        read(path)


def test_reference_and_cache_key_are_the_path_as_configured(tmp_path: Path) -> None:
    built = provider(tmp_path / "a" / ".." / "token")
    assert built.reference() == f"{tmp_path}/a/../token"
    assert built.cache_key() == f"file|{tmp_path}/a/../token"
    assert provider(tmp_path / "other").cache_key() != built.cache_key()


def test_tilde_is_the_home_directory(tmp_path: Path) -> None:
    path = secret_file(tmp_path / "home" / ".secrets", "from-home")
    built = provider("~/.secrets/token", {"HOME": str(tmp_path / "home")})
    assert built.reference() == str(path)
    assert built.fetch(deadline()).value.expose() == "from-home"


@pytest.mark.parametrize(
    "value", ["", "  ", "token", "./token", "~user/token", "/run/secrets/token/"]
)
def test_a_path_must_be_absolute(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        provider(value, {"HOME": "/home/u"})
    assert "MLFLOW_SECRETS_FILE" in " ".join(caught.value.hints)


# -- missing, unreadable, not a file ------------------------------------------------------


def test_a_missing_file_is_not_found_and_names_the_variable(tmp_path: Path) -> None:
    for path in (tmp_path / "token", tmp_path / "not-mounted" / "token"):
        with pytest.raises(NotFound) as caught:
            read(path)
        assert caught.value.message.startswith(f"the secret file {path} does not exist")
        assert caught.value.exit_code == 1
        assert "MLFLOW_SECRETS_FILE" in caught.value.hints[0]
    assert "(" + str(tmp_path / "not-mounted") + " is missing)" in caught.value.message


def test_a_dangling_link_is_not_found(tmp_path: Path) -> None:
    (tmp_path / "token").symlink_to("..data/token")
    with pytest.raises(NotFound, match="does not exist"):
        read(tmp_path / "token")


def test_a_directory_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    error = refused(tmp_path / "secrets")
    assert error.message == f"the secret file {tmp_path}/secrets is a directory"
    assert "ends with '/', so it names a directory" in refused("/").message


def test_a_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe", 0o600)
    assert "is a named pipe" in refused(tmp_path / "pipe").message


def test_a_file_on_the_way_is_not_a_directory(tmp_path: Path) -> None:
    secret_file(tmp_path)
    assert "is not a directory" in refused(tmp_path / "token" / "inner").message


def test_a_link_loop_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    assert "symbolic links" in refused(tmp_path / "a").message


# -- the safety rule -----------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666])
def test_a_file_its_group_or_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    path = secret_file(tmp_path)
    path.chmod(mode)
    error = refused(path)
    assert error.message == (
        f"refusing the secret file {path}: {path} is writable by its group or others "
        f"(mode {mode:04o}), so another user could change what is read"
    )
    assert error.hints == (f"chmod go-w {path}",)


@pytest.mark.parametrize("mode", [0o400, 0o440, 0o444, 0o600, 0o644])
def test_a_file_only_its_owner_can_write_is_read(tmp_path: Path, mode: int) -> None:
    path = secret_file(tmp_path, "tok-ok")
    path.chmod(mode)
    assert read(path) == "tok-ok"


def test_a_file_another_user_owns_is_refused(tmp_path: Path) -> None:
    path = secret_file(tmp_path)
    os.chown(path, OTHER_UID, -1)
    error = refused(path)
    assert f"{path} is owned by uid {OTHER_UID}, not by root" in error.message


def test_a_directory_another_user_owns_is_refused(tmp_path: Path) -> None:
    path = secret_file(tmp_path / "theirs")
    os.chown(tmp_path / "theirs", OTHER_UID, -1)
    error = refused(path)
    assert f"the directory {tmp_path}/theirs is owned by uid {OTHER_UID}" in error.message


@pytest.mark.parametrize("mode", [0o775, 0o757, 0o777])
def test_a_directory_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    path = secret_file(tmp_path / "shared")
    (tmp_path / "shared").chmod(mode)
    error = refused(path)
    assert error.message == (
        f"refusing the secret file {path}: the directory {tmp_path}/shared is writable by "
        f"its group or others (mode {mode:04o}) and has no sticky bit, so another user could "
        "change what is read"
    )
    assert error.hints == (f"chmod go-w {tmp_path}/shared",)


def test_a_sticky_shared_directory_is_crossed_when_the_entry_is_ours(tmp_path: Path) -> None:
    path = secret_file(tmp_path / "tmpfs", "tok-sticky")
    (tmp_path / "tmpfs").chmod(0o1777)  # what a secret volume's tmpfs root looks like
    assert read(path) == "tok-sticky"
    os.chown(path, OTHER_UID, -1)
    error = refused(path)
    assert f"{path} is owned by uid {OTHER_UID}, not by root" in error.message
    assert f"in {tmp_path}/tmpfs, a directory others can write" in error.message


def test_a_link_another_user_owns_is_refused(tmp_path: Path) -> None:
    target = secret_file(tmp_path / "data")
    (tmp_path / "token").symlink_to("data/token")
    os.lchown(tmp_path / "token", OTHER_UID, -1)
    error = refused(tmp_path / "token")
    assert f"the symbolic link {tmp_path}/token is owned by uid {OTHER_UID}" in error.message
    assert read(target)  # the target itself is fine


def test_the_directories_of_a_link_target_are_checked(tmp_path: Path) -> None:
    target = secret_file(tmp_path / "elsewhere" / "open")
    (tmp_path / "elsewhere" / "open").chmod(0o777)
    safe = tmp_path / "safe"
    safe.mkdir()
    (safe / "token").symlink_to(target)  # absolute
    (safe / "relative").symlink_to("../elsewhere/open/token")
    for path in (safe / "token", safe / "relative"):
        assert f"the directory {tmp_path}/elsewhere/open is writable" in refused(path).message
    (tmp_path / "elsewhere" / "open").chmod(0o755)
    assert read(safe / "token") == read(safe / "relative") == "tok-1"


def test_dot_dot_is_resolved_from_where_a_link_points(tmp_path: Path) -> None:
    # the kernel resolves "link/.." in the link's target, not lexically: so does the walk
    secret_file(tmp_path / "real", "tok-real")
    secret_file(tmp_path, "tok-lexical")
    (tmp_path / "real" / "sub").mkdir()
    (tmp_path / "link").symlink_to("real/sub")
    assert read(tmp_path / "link" / ".." / "token") == "tok-real"
    assert Path(tmp_path / "link" / ".." / "token").read_text() == "tok-real"


def test_the_descriptor_read_is_the_file_the_walk_checked(tmp_path: Path) -> None:
    path = secret_file(tmp_path, "old")
    walked = file.walk(str(path))
    staged = secret_file(tmp_path, "new", "token.new")
    os.rename(staged, path)  # replaced between the walk and the open
    with pytest.raises(Exception, match=re.escape(str(path))) as caught:
        file._read_walked(str(path), walked)
    assert type(caught.value).__name__ == "_Changed"
    assert read(path) == "new"  # read_file walks again

    walked = file.walk(str(path))
    path.chmod(0o666)  # loosened between the walk and the open: fstat sees it
    with pytest.raises(ConfigError, match="writable by its group or others"):
        file._read_walked(str(path), walked)


def test_a_file_replaced_at_every_look_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = secret_file(tmp_path)
    real_walk = file.walk

    def walk_then_replace(where: str) -> file.Walked:
        walked = real_walk(where)
        staged = secret_file(tmp_path, "next", "token.new")
        os.rename(staged, path)
        return walked

    monkeypatch.setattr(file, "walk", walk_then_replace)
    with pytest.raises(BackendUnavailable, match=f"replaced {file.ATTEMPTS} times"):
        read(path)


def test_no_message_holds_the_content(tmp_path: Path) -> None:
    path = secret_file(tmp_path, CANARY)
    path.chmod(0o666)
    error = refused(path)
    assert CANARY not in error.message + " ".join(error.hints)


# -- the kubelet's volume -----------------------------------------------------------------


def test_a_kubelet_volume_is_read_through_its_links(tmp_path: Path) -> None:
    kubelet = Kubelet(tmp_path / "serviceaccount")
    kubelet.write({"token": "tok-1", "namespace": "ml"})
    token = kubelet.volume / "token"
    assert read(token) == "tok-1"
    kubelet.write({"token": "tok-2", "namespace": "ml"})
    assert read(token) == "tok-2"
    assert file.state(str(token)) == "present; owner and modes are safe"


def test_a_reader_never_sees_a_mix_or_an_error_while_the_kubelet_swaps(tmp_path: Path) -> None:
    kubelet = Kubelet(tmp_path / "volume")

    def version(number: int) -> str:
        return f"v{number:06d}." * 4000  # 32 KB: a torn read would mix two numbers

    kubelet.write({"token": version(0)})
    reader = provider(kubelet.volume / "token")
    seen: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def read_all_the_time() -> None:
        while not done.is_set():
            try:
                text = reader.fetch(deadline()).value.expose()
                assert isinstance(text, str)
                numbers = set(re.findall(r"v(\d{6})\.", text))
                assert len(numbers) == 1 and text == version(int(numbers.pop())), "a mix"
                seen.append(int(text[1:7]))
            except BaseException as exc:
                errors.append(exc)
                return

    thread = threading.Thread(target=read_all_the_time)
    thread.start()
    try:
        for number in range(1, 301):
            kubelet.write({"token": version(number)})
            time.sleep(0.001)
    finally:
        done.set()
        thread.join(timeout=60)
    assert errors == []
    assert len(seen) >= 100, len(seen)
    assert seen == sorted(seen)  # never an older version after a newer one
    assert read(kubelet.volume / "token") == version(300)


# -- through the resolver: nothing is cached ------------------------------------------------


@pytest.fixture
def file_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    yield {
        "HOME": str(home),
        "MLFLOW_SECRETS_CACHE_DIR": str(tmp_path / "cache"),
        "MLFLOW_SECRETS_ALLOWED_HOSTS": "mlflow.example.com",
        "MLFLOW_SECRETS_AUTH_ENABLE_FILE": "true",
        "MLFLOW_SECRETS_FILE": str(secret_file(tmp_path / "run" / "secrets", CANARY)),
    }


def test_the_resolver_never_writes_a_file_secret_to_the_cache(
    file_env: dict[str, str], tmp_path: Path
) -> None:
    config = load(file_env)
    cache = open_user_cache(config.cache_dir, file_env, lambda _: None)
    resolver = Resolver(config, cache, file_env, warn=lambda _: None, clock=lambda: 5000.0)
    target = Target("https", "mlflow.example.com", 443)
    first = resolver.get(target)
    assert first.source == "backend"
    assert first.header_value().expose() == f"Bearer {CANARY}"
    assert first.expires_at == first.refresh_after == 5000.0 + file.RECHECK_SEC
    cache_dir = tmp_path / "cache"
    on_disk = [p.read_bytes() for p in cache_dir.rglob("*") if p.is_file()]
    assert all(CANARY.encode() not in data for data in on_disk)
    assert cache.status().entries == 0
    Path(file_env["MLFLOW_SECRETS_FILE"]).write_text("tok-rotated")
    assert resolver.get(target).header_value().expose() == "Bearer tok-rotated"
