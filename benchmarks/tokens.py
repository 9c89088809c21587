"""Benchmark 7: a secret that holds an OAuth client, exchanged for an access token.

The OAuth client (``client_id``, ``client_secret``, ``issuer``) sits in OpenBao beside the
basic secret of benchmark 1; the helper reads it, finds the token endpoint by discovery,
exchanges it at the OpenID Provider (node's oidc-provider over TLS on 127.0.0.1) and
caches the access token. The provider counts token requests, so every figure here is
checked against the number of exchanges it really saw.

* 7a: a cache hit that serves the exchanged token costs what any other hit costs: the
  same whole-process ``get`` as benchmark 1, interleaved with it, and no exchange.
* 7b: 64 ``get``s started together on a cold cache make one exchange, and the burst
  takes about as long as 64 cache hits (benchmark 6 does the same for AWS reads).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from benchmarks.backends import TOKEN_LIFETIME, VAULT_OAUTH_PATH
from benchmarks.context import HELPER, HOST, Context, Result, basic_header
from benchmarks.measure import interleaved, median, paired_ratio, started_together

BEARER = "Authorization: Bearer "


def oauth_env(ctx: Context, cache: Path) -> dict[str, str]:
    """Benchmark 1's Vault route, reading the OAuth client instead of the basic secret."""
    env = ctx.helper_env("vault", cache)
    env.update(
        MLFLOW_VAULT_SECRET_PATH=VAULT_OAUTH_PATH,
        MLFLOW_OIDC_CA_BUNDLE=ctx.backends.oidc.ca_path,
        # the cache keeps the token for its lifetime (less the margin), not the default
        # five minutes: no refresh may start in the middle of a measurement
        MLFLOW_VAULT_TTL_SEC=str(TOKEN_LIFETIME),
    )
    return env


def exchanges(ctx: Context) -> int:
    """Token requests the OpenID Provider answered for the benchmark's client so far."""
    return ctx.backends.oidc.token_requests(ctx.backends.oauth_client.client_id)


def bench_tokens(ctx: Context, count: int = 64) -> list[Result]:
    return [*_hit(ctx), *_burst(ctx, count)]


def _hit(ctx: Context) -> list[Result]:
    oauth = oauth_env(ctx, ctx.fresh_cache("token-hit"))
    basic = ctx.helper_env("vault", ctx.fresh_cache("token-hit-basic"))
    basic["MLFLOW_VAULT_TTL_SEC"] = str(TOKEN_LIFETIME)  # the same route settings
    before = exchanges(ctx)
    token_header = ctx.helper_get(oauth).stdout.decode()
    if not token_header.startswith(BEARER) or exchanges(ctx) != before + 1:
        raise RuntimeError("the first get did not exchange the OAuth client for a token")
    basic_expected = basic_header()
    assert ctx.helper_get(basic).stdout.decode() == basic_expected
    rss: dict[str, list[float]] = {"token": [], "basic": []}

    def hit(env: dict[str, str], expect: str, key: str) -> float:
        done = ctx.helper_get(env)
        if done.stdout.decode() != expect:
            raise RuntimeError(f"a cache hit ({key}) printed another header")
        rss[key].append(done.rss_mib)
        return done.wall

    before = exchanges(ctx)
    found = interleaved(
        {
            "token": lambda: hit(oauth, token_header, "token"),
            "basic": lambda: hit(basic, basic_expected, "basic"),
        },
        rounds=ctx.rounds * 4,
        warmup=3,
    )
    during = exchanges(ctx) - before
    t, b = median(found["token"]), median(found["basic"])
    ratio, spread = paired_ratio(found["token"], found["basic"])
    return [
        Result(
            7,
            "`get` from the cache serving an exchanged OAuth token (Vault route)",
            f"{t * 1000:.1f} ms",
            f"{b * 1000:.1f} ms (benchmark 1's route, a basic secret)",
            ratio,
            "≤ 1.05x",
            ratio <= 1.05 and during == 0,
            f"exchanges during the measurement: {during}; peak RSS "
            f"{median(rss['token']):.1f} MiB against {median(rss['basic']):.1f} MiB",
            spread=spread,
        )
    ]


def _burst(ctx: Context, count: int) -> list[Result]:
    oidc = ctx.backends.oidc
    stdin = f"http://{HOST}:{ctx.mlflow_port}\n".encode()
    per_burst: list[int] = []
    discoveries: list[int] = []

    def burst(env: dict[str, str]) -> tuple[float, int]:
        """The burst's wall time and the token exchanges it made; every get printed the
        same bearer header."""
        before = exchanges(ctx)
        wall, outputs = started_together([*HELPER, "get"], env, stdin, count)
        headers = set(outputs)
        if len(headers) != 1 or not next(iter(headers)).decode().startswith(BEARER):
            raise RuntimeError(f"a burst printed {len(headers)} different headers")
        return wall, exchanges(ctx) - before

    def cold() -> float:
        cache = ctx.fresh_cache("token-burst")
        discovered = oidc.stats()["discovery_requests"]
        wall, made = burst(oauth_env(ctx, cache))
        per_burst.append(made)
        discoveries.append(oidc.stats()["discovery_requests"] - discovered)
        shutil.rmtree(cache, ignore_errors=True)
        return wall

    warm_env = oauth_env(ctx, ctx.fresh_cache("token-burst-warm"))
    ctx.helper_get(warm_env)
    warm_exchanges: list[int] = []

    def warm() -> float:
        wall, made = burst(warm_env)
        warm_exchanges.append(made)
        return wall

    found = interleaved({"cold": cold, "warm": warm}, rounds=max(ctx.rounds, 3), warmup=1)
    c, w = median(found["cold"]), median(found["warm"])
    ratio, spread = paired_ratio(found["cold"], found["warm"])
    most = max(per_burst)
    return [
        Result(
            7,
            f"{count} `get`s started together on a cold cache: token exchanges",
            f"{most} (most in any burst)",
            "—",
            None,
            "1",
            most == 1 and min(per_burst) == 1 and not any(warm_exchanges),
            f"exchanges per burst: {', '.join(map(str, per_burst))}; discovery requests "
            f"per burst: {', '.join(map(str, discoveries))}; "
            f"in the warm bursts: {sum(warm_exchanges)}",
        ),
        Result(
            7,
            "… burst wall time (OAuth client in OpenBao, OpenID Provider over TLS)",
            f"{c:.2f} s",
            f"{w:.2f} s ({count} cache-hit gets)",
            ratio,
            "≤ 1.2x",
            ratio <= 1.2,
            spread=spread,
        ),
    ]
