"""Running a command and measuring it: wall time, peak RSS, medians, interleaving."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Run:
    """One finished process: exit status, output, wall seconds and peak RSS in MiB."""

    returncode: int
    stdout: bytes
    stderr: bytes
    wall: float
    rss_mib: float

    def check(self, what: str) -> Run:
        if self.returncode != 0:
            tail = self.stderr.decode("utf-8", "replace")[-2000:]
            raise RuntimeError(f"{what} exited {self.returncode}:\n{tail}")
        return self

    def json(self) -> dict[str, float]:
        document: dict[str, float] = json.loads(self.stdout.decode().strip().splitlines()[-1])
        return document


#: Started with ``python -I -S``: forks, execs the command, and reports the child's wall
#: time and peak RSS on a pipe. On Linux a child's peak RSS includes the memory of the
#: process it was forked from (it survives exec), so a child of this big process would
#: report this process's size; a child of a small trampoline reports its own.
_TRAMPOLINE = """
import os, sys, time
report, argv = int(sys.argv[1]), sys.argv[2:]
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.close(report)
    try:
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
os.write(report, ("%r %d" % (wall, usage.ru_maxrss)).encode())
code = os.waitstatus_to_exitcode(status)
os._exit(code if code >= 0 else 128 - code)
"""


def run(argv: Sequence[str], env: Mapping[str, str], stdin: bytes = b"") -> Run:
    """Run ``argv`` to completion; wall time (fork to reap) and peak RSS of that process."""
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _TRAMPOLINE, str(write_end), *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            pass_fds=(write_end,),
        )
    finally:
        os.close(write_end)
    with os.fdopen(read_end, "rb") as report_pipe:
        out, err = proc.communicate(stdin)
        report = report_pipe.read().decode()
    if not report:
        raise RuntimeError(f"the trampoline failed: {err.decode()[-2000:]}")
    wall, maxrss_kib = report.split()
    return Run(proc.returncode, out, err, float(wall), int(maxrss_kib) / 1024.0)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def paired_ratio(figures: Sequence[float], baselines: Sequence[float]) -> tuple[float, str]:
    """The median of the per-round ratios (each figure against the baseline measured right
    next to it, which cancels drifts of the machine's load better than a ratio of medians),
    and their range as text."""
    ratios = [f / b for f, b in zip(figures, baselines, strict=True)]
    return statistics.median(ratios), f"{min(ratios):.2f}-{max(ratios):.2f}"


def interleaved(
    variants: Mapping[str, Callable[[], float]], *, rounds: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Call each variant once per round, in alternating order, and collect the figures.

    Alternating (A B, B A, A B ...) spreads slow drifts of a shared machine evenly.
    """
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    found: dict[str, list[float]] = {name: [] for name in names}
    for number in range(rounds):
        order = names if number % 2 == 0 else list(reversed(names))
        for name in order:
            found[name].append(variants[name]())
    return found


def started_together(
    argv: Sequence[str], env: Mapping[str, str], stdin: bytes, count: int
) -> tuple[float, list[bytes]]:
    """Start ``count`` processes at once and wait for all of them: the wall time from the
    first start to the last exit, and each one's output. A failed process raises."""
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
        )
        for _ in range(count)
    ]
    outputs = [proc.communicate(stdin) for proc in procs]
    wall = time.perf_counter() - started
    for proc, (_, err) in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise RuntimeError(f"a burst process failed ({proc.returncode}): {err.decode()[-500:]}")
    return wall, [out for out, _ in outputs]
