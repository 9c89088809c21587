"""MLflow request-auth plugin that takes its header from ``mlflow-secrets-helper``.

MLflow selects it with ``MLFLOW_TRACKING_AUTH=mlflow-secrets-helper``. The plugin talks
to the helper only through a child process (its ``--format json get`` and ``erase``
actions), keeps the answer in memory per origin, and handles redirects, 401 and 403.
It never imports the helper package or any secret-store SDK.
"""
