"""The benchmarks, their baselines and targets, and the results table.

Each benchmark measures a figure and a baseline in the same run (interleaved, medians
over repetitions) and reports the ratio against its target. Absolute numbers are
printed too, but only the ratios are meant to be compared between machines.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import environment
from benchmarks.backends import BENCH_PASSWORD, BENCH_USER, started
from benchmarks.context import (
    ANCHOR_NAME,
    HELPER,
    HOST,
    PROBES,
    SHIM_NAME,
    Context,
    Result,
    basic_header,
)
from benchmarks.environment import PYTHON, ROOT
from benchmarks.measure import interleaved, median, paired_ratio, run, started_together
from benchmarks.tokens import bench_tokens

README = ROOT / "benchmarks" / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


# -- 1 ------------------------------------------------------------------------------------


def bench_cache_hit(ctx: Context) -> list[Result]:
    cache = ctx.fresh_cache("hit")
    env = ctx.helper_env("vault", cache)
    # the same, with the cache and config locations left to their defaults (platformdirs)
    default_env = dict(env)
    del default_env["MLFLOW_SECRETS_CACHE_DIR"]
    expect = basic_header()
    for warm in (env, default_env):
        first = ctx.helper_get(warm)
        assert first.stdout.decode() == expect, first
    floor_code = "from cryptography.hazmat.primitives.ciphers.aead import AESGCM"
    floor_argv = [PYTHON, "-I", "-c", floor_code]
    floor_env = environment.base_env(ctx.home())
    rss: dict[str, list[float]] = {"helper": [], "floor": []}

    def helper() -> float:
        done = ctx.helper_get(env)
        assert done.stdout.decode() == expect
        rss["helper"].append(done.rss_mib)
        return done.wall

    def helper_default() -> float:
        done = ctx.helper_get(default_env)
        assert done.stdout.decode() == expect
        return done.wall

    def floor() -> float:
        done = run(floor_argv, floor_env).check("the floor")
        rss["floor"].append(done.rss_mib)
        return done.wall

    found = interleaved(
        {"helper": helper, "default": helper_default, "floor": floor},
        rounds=ctx.rounds * 4,
        warmup=3,
    )
    h, d, f = median(found["helper"]), median(found["default"]), median(found["floor"])
    ratio, spread = paired_ratio(found["helper"], found["floor"])
    ratio_default, spread_default = paired_ratio(found["default"], found["floor"])
    peak = median(rss["helper"])
    floor_text = f"{f * 1000:.1f} ms (python -I -c 'import AESGCM')"
    return [
        Result(
            1,
            "helper `get` from the cache, whole process",
            f"{h * 1000:.1f} ms",
            floor_text,
            ratio,
            "≤ 1.5x",
            ratio <= 1.5,
            "cache and config locations set in the environment",
            spread=spread,
        ),
        Result(
            1,
            "… the same with the default cache and config locations",
            f"{d * 1000:.1f} ms",
            floor_text,
            ratio_default,
            "≤ 1.5x",
            ratio_default <= 1.5,
            "platformdirs imported",
            spread=spread_default,
        ),
        Result(
            1,
            "… its peak RSS",
            f"{peak:.1f} MiB",
            f"{median(rss['floor']):.1f} MiB (the floor)",
            None,
            "≤ 30 MiB",
            peak <= 30,
        ),
    ]


# -- 2 ------------------------------------------------------------------------------------


def bench_steady(ctx: Context) -> list[Result]:
    url = ctx.backends.mlflow.url
    calls, batches = "5000", "7"
    shim_cache = ctx.fresh_cache("steady")
    shim_env = ctx.shim_env(shim_cache)
    anchor_env = ctx.anchor_env()
    figures: dict[str, list[float]] = {"shim": [], "anchor": []}

    def probe(python: str, name: str, env: dict[str, str], key: str) -> Callable[[], float]:
        def measure() -> float:
            done = run([python, str(PROBES / "steady.py"), name, url, calls, batches], env)
            document = done.check(f"steady-state probe ({key})").json()
            figures[key].append(document["loop_us"])
            return document["per_call_us"]

        return measure

    found = interleaved(
        {
            "shim": probe(PYTHON, SHIM_NAME, shim_env, "shim"),
            "anchor": probe(ctx.anchor, ANCHOR_NAME, anchor_env, "anchor"),
        },
        rounds=max(ctx.rounds, 3),
        warmup=0,
    )
    s, a = median(found["shim"]), median(found["anchor"])
    ratio, spread = paired_ratio(found["shim"], found["anchor"])
    loop = median(figures["shim"] + figures["anchor"])
    return [
        Result(
            2,
            "shim per request: `fetch_auth` → `get_auth()` → auth call",
            f"{s:.2f} µs",
            f"{a:.2f} µs (mlflow-secrets-auth 0.2.0)",
            ratio,
            "≤ 0.5x",
            ratio <= 0.5,
            f"both include {loop:.2f} µs of loop and hook reset",
            spread=spread,
        )
    ]


# -- 3 ------------------------------------------------------------------------------------


def bench_log_metric(ctx: Context) -> list[Result]:
    """Both kinds of call in one process, interleaved call by call (see the probe)."""
    env = ctx.shim_env(ctx.fresh_cache("log-metric"))
    env.update(BENCH_USERNAME=BENCH_USER, BENCH_PASSWORD=BENCH_PASSWORD)
    shim: list[float] = []
    native: list[float] = []
    for _ in range(max(ctx.rounds, 3)):
        done = run([PYTHON, str(PROBES / "log_metrics_paired.py"), "500"], env)
        document = done.check("log_metric probe").json()
        shim.append(document["shim"])
        native.append(document["native"])
    s, n = median(shim), median(native)
    ratio, spread = paired_ratio(shim, native)
    return [
        Result(
            3,
            "500 `log_metric` calls, local MLflow server (interleaved call by call)",
            f"{s:.2f} s",
            f"{n:.2f} s (MLflow's username/password)",
            ratio,
            "≤ 1.03x",
            ratio <= 1.03,
            spread=spread,
        )
    ]


# -- 4 ------------------------------------------------------------------------------------


def bench_first_request(ctx: Context) -> list[Result]:
    url = ctx.backends.mlflow.url
    shim_env = ctx.shim_env(ctx.fresh_cache("first"))
    ctx.helper_get(shim_env)  # warm the helper's cache
    anchor_env = ctx.anchor_env()

    def probe(python: str, name: str, env: dict[str, str]) -> Callable[[], float]:
        def measure() -> float:
            done = run([python, str(PROBES / "first_request.py"), name, url], env)
            document = done.check(f"first-request probe ({name})").json()
            if document["status"] != 200:
                raise RuntimeError(f"{name}: the server answered {document['status']}")
            return document["seconds"]

        return measure

    found = interleaved(
        {
            "shim": probe(PYTHON, SHIM_NAME, shim_env),
            "anchor": probe(ctx.anchor, ANCHOR_NAME, anchor_env),
        },
        rounds=ctx.rounds * 2,
        warmup=1,
    )
    s, a = median(found["shim"]), median(found["anchor"])
    ratio, spread = paired_ratio(found["shim"], found["anchor"])
    return [
        Result(
            4,
            "first authenticated request in a fresh process (warm helper cache)",
            f"{s * 1000:.1f} ms",
            f"{a * 1000:.1f} ms (0.2.0 reading the same OpenBao)",
            ratio,
            "≤ 0.5x",
            ratio <= 0.5,
            spread=spread,
        )
    ]


# -- 5 ------------------------------------------------------------------------------------


def bench_cold(ctx: Context) -> list[Result]:
    b = ctx.backends
    results = []
    for provider, label, sdk_argv in (
        ("vault", "Vault (hvac)", [str(PROBES / "sdk_vault.py"), "mlflow/bench"]),
        ("aws-secrets-manager", "AWS (boto3)", [str(PROBES / "sdk_aws.py"), "mlflow/bench"]),
        (
            "azure-key-vault",
            "Azure (azure-identity + keyvault)",
            [str(PROBES / "sdk_azure.py"), b.azure.vault_url, "mlflow-bench"],
        ),
    ):
        sdk_env = ctx.helper_env(provider, ctx.fresh_cache("unused"))

        def helper(provider: str = provider) -> float:
            cache = ctx.fresh_cache("cold")
            done = ctx.helper_get(ctx.helper_env(provider, cache))
            assert done.stdout.decode() == basic_header()
            shutil.rmtree(cache, ignore_errors=True)
            return done.wall

        def sdk(argv: list[str] = sdk_argv, env: dict[str, str] = sdk_env) -> float:
            return run([PYTHON, *argv], env).check(f"SDK baseline {argv[0]}").wall

        # a later cold read: the entry is gone (erased, or past its lifetime) but the cache
        # directory, its key and the provider's notes (Vault's remembered mount) are there
        later_cache = ctx.fresh_cache("later")
        later_env = ctx.helper_env(provider, later_cache)
        ctx.helper_get(later_env)

        def later(env: dict[str, str] = later_env) -> float:
            host = f"http://{HOST}:{ctx.mlflow_port}\n".encode()
            run([*HELPER, "erase"], env, host).check("mlflow-secrets-helper erase")
            done = ctx.helper_get(env)
            assert done.stdout.decode() == basic_header()
            return done.wall

        runs: dict[str, Callable[[], float]] = {"helper": helper, "later": later, "sdk": sdk}
        found = interleaved(runs, rounds=ctx.rounds * 2, warmup=1)
        s = median(found["sdk"])
        for key, what in (
            ("helper", f"`get` on a cold cache: {label}"),
            ("later", f"… a later cold read (entry gone, cache directory kept): {label}"),
        ):
            ratio, spread = paired_ratio(found[key], found["sdk"])
            results.append(
                Result(
                    5,
                    what,
                    f"{median(found[key]) * 1000:.0f} ms",
                    f"{s * 1000:.0f} ms (a script reading the secret once)",
                    ratio,
                    "≤ 1.15x",
                    ratio <= 1.15,
                    spread=spread,
                )
            )
    return results


# -- 6 ------------------------------------------------------------------------------------


def bench_burst(ctx: Context, count: int = 64) -> list[Result]:
    from devservers.faultproxy import AWS_GET_SECRET_VALUE

    proxy = ctx.backends.aws_proxy
    stdin = f"http://{HOST}:{ctx.mlflow_port}\n".encode()
    expect = basic_header().encode()
    reads: list[int] = []

    def burst(env: dict[str, str]) -> float:
        wall, outputs = started_together([*HELPER, "get"], env, stdin, count)
        if set(outputs) != {expect}:
            raise RuntimeError("a burst get printed another header")
        return wall

    def cold() -> float:
        cache = ctx.fresh_cache("burst")
        env = ctx.helper_env("aws-secrets-manager", cache)
        proxy.clear()
        wall = burst(env)
        reads.append(proxy.count(header=AWS_GET_SECRET_VALUE))
        shutil.rmtree(cache, ignore_errors=True)
        return wall

    warm_env = ctx.helper_env("aws-secrets-manager", ctx.fresh_cache("burst-warm"))
    ctx.helper_get(warm_env)

    def warm() -> float:
        return burst(warm_env)

    found = interleaved({"cold": cold, "warm": warm}, rounds=max(ctx.rounds, 3), warmup=1)
    c, w = median(found["cold"]), median(found["warm"])
    ratio, spread = paired_ratio(found["cold"], found["warm"])
    most = max(reads)
    return [
        Result(
            6,
            f"{count} `get`s started together on a cold cache: backend reads",
            f"{most} (most in any burst)",
            "—",
            None,
            "1",
            most == 1,
            f"reads per burst: {', '.join(map(str, reads))}",
        ),
        Result(
            6,
            "… burst wall time (AWS via moto)",
            f"{c:.2f} s",
            f"{w:.2f} s ({count} cache-hit gets)",
            ratio,
            "≤ 1.2x",
            ratio <= 1.2,
            spread=spread,
        ),
    ]


BENCHMARKS: dict[int, Callable[[Context], list[Result]]] = {
    1: bench_cache_hit,
    2: bench_steady,
    3: bench_log_metric,
    4: bench_first_request,
    5: bench_cold,
    6: bench_burst,
    7: bench_tokens,
}


# -- the table ----------------------------------------------------------------------------


def table(results: list[Result]) -> str:
    lines = [
        "| # | what | figure | baseline | ratio (range over rounds) | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "—"
        if r.spread:
            ratio += f" ({r.spread})"
        note = f" ({r.note})" if r.note else ""
        lines.append(
            f"| {r.number} | {r.title}{note} | {r.figure} | {r.baseline} | {ratio} | "
            f"{r.target} | {'yes' if r.met else '**no**'} |"
        )
    return "\n".join(lines)


def header(rounds: int, load_before: float) -> str:
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    load_after = os.getloadavg()[0]
    return (
        f"Run on {today} (UTC) on {environment.machine()}; {rounds} rounds; "
        f"load average {load_before:.1f} before, {load_after:.1f} after."
    )


def write_readme(text: str) -> None:
    current = README.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(current):
        raise SystemExit(f"{README.name} has no {BEGIN} ... {END} block")
    README.write_text(pattern.sub(lambda _m: f"{BEGIN}\n{text}\n{END}", current))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/run", description=__doc__)
    parser.add_argument("--only", help="comma-separated benchmark numbers (default: all)")
    parser.add_argument("--quick", action="store_true", help="few repetitions: a smoke test")
    parser.add_argument("--rounds", type=int, default=5, help="repetitions per figure (default 5)")
    parser.add_argument("--write-readme", action="store_true", help="update benchmarks/README.md")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    chosen = [int(n) for n in args.only.split(",")] if args.only else sorted(BENCHMARKS)
    rounds = 1 if args.quick else args.rounds

    load_before = os.getloadavg()[0]
    print("compiling the project's modules", file=sys.stderr)
    environment.compile_project()
    anchor = environment.anchor_python() if {2, 4} & set(chosen) else ""
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="mlflow-secrets-bench-") as tmp:
        work = Path(tmp)
        _runtime_dir(work)
        print("starting OpenBao, moto, MLflow, the Azure stand-ins, oidc-provider", file=sys.stderr)
        with started(work) as backends:
            port = int(backends.mlflow.url.rsplit(":", 1)[1])
            ctx = Context(backends, work, anchor, rounds, port)
            for number in chosen:
                print(f"benchmark {number} ...", file=sys.stderr, flush=True)
                began = time.monotonic()
                results.extend(BENCHMARKS[number](ctx))
                print(f"  done in {time.monotonic() - began:.0f} s", file=sys.stderr)
    text = header(rounds, load_before) + "\n\n" + table(results)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in results], indent=2))
    if args.write_readme:
        write_readme(text)
    missed = sorted({r.number for r in results if not r.met})
    if missed:
        print(f"targets missed: {', '.join(map(str, missed))}", file=sys.stderr)
    return 0


def _runtime_dir(work: Path) -> None:
    """A private tmpfs directory as XDG_RUNTIME_DIR, as a desktop session or systemd gives
    (the helper keeps its cache key there). Skipped where /dev/shm is not tmpfs."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        return
    target = Path(tempfile.mkdtemp(prefix="mlflow-secrets-bench-", dir=shm))
    target.chmod(0o700)
    (work / "runtime").symlink_to(target)
    import atexit

    atexit.register(shutil.rmtree, target, True)
