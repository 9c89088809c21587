#!/usr/bin/env python3
"""The real helper, with each call's action appended to ``SHIM_HELPER_LOG``.

End-to-end tests point ``MLFLOW_SECRETS_HELPER_COMMAND`` here to count how often the
shim runs ``get`` and ``erase``. It replaces itself with ``python -I -m
mlflow_secrets_helper`` (the shim's default command), so stdin, stdout, exit status and
the process group are the helper's own.
"""

import os
import sys

with open(os.environ["SHIM_HELPER_LOG"], "a") as log:
    log.write((sys.argv[-1] if len(sys.argv) > 1 else "") + "\n")
os.execv(sys.executable, [sys.executable, "-I", "-m", "mlflow_secrets_helper", *sys.argv[1:]])
