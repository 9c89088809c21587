"""Scripts the benchmarks run in child processes (in the project's venv or the anchor's).

Each prints one JSON line with its figures. They import nothing from this repository,
so the same file runs against mlflow-secrets-auth 0.2.0 and against the shim.
"""
