"""The interpreters the benchmarks run and the environments they run them in.

* The project's venv (the one running this suite) runs the helper, the shim and the
  SDK baselines. Its modules are byte-compiled first, and every child runs with
  bytecode enabled: an editable install compiled on every start would measure the
  compiler, not the helper.
* ``benchmarks/.venv-anchor`` holds mlflow-secrets-auth 0.2.0 from the package index,
  with the same versions of mlflow-skinny, hvac, boto3 and requests as the project's
  venv, so the two plugins differ only in themselves.
"""

from __future__ import annotations

import compileall
import importlib.metadata
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ANCHOR_VENV = ROOT / "benchmarks" / ".venv-anchor"
ANCHOR_PACKAGE = "mlflow-secrets-auth"
ANCHOR_VERSION = "0.2.0"
#: packages pinned in the anchor venv to the versions this venv has
SHARED_PINS = ("mlflow-skinny", "hvac", "boto3", "botocore", "requests", "urllib3")

PYTHON = sys.executable


def compile_project() -> None:
    """Byte-compile the helper, the shim and site-packages (quietly, once)."""
    site_packages = Path(sysconfig.get_paths()["purelib"])
    for directory in (ROOT / "helper", ROOT / "mlflow_shim", site_packages):
        compileall.compile_dir(str(directory), quiet=2, workers=0)


def anchor_python() -> str:
    """The anchor venv's interpreter; creates or updates the venv when needed."""
    python = ANCHOR_VENV / "bin" / "python"
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in SHARED_PINS]
    wanted = [f"{ANCHOR_PACKAGE}[vault,aws]=={ANCHOR_VERSION}", *pins]
    stamp = ANCHOR_VENV / ".installed"
    if python.exists() and stamp.exists() and stamp.read_text().split("\n") == wanted:
        return str(python)
    if not python.exists():
        print(f"creating {ANCHOR_VENV.relative_to(ROOT)}", file=sys.stderr)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(ANCHOR_VENV)], check=True)
    print(f"installing {' '.join(wanted)}", file=sys.stderr)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *wanted],
        check=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    stamp.write_text("\n".join(wanted))
    return str(python)


def base_env(home: Path) -> dict[str, str]:
    """A child environment built from scratch: nothing from the machine leaks in
    (no proxies, no CA bundle overrides, no AWS profile), bytecode on, dummy AWS
    credentials and no instance metadata."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }


def machine() -> str:
    """``uname -m``, the CPU model and the core count (no host names, no paths)."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0))
    return f"{os.uname().machine}, {model}, {cores} cores, Python {sys.version.split()[0]}"
