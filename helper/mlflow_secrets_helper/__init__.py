"""mlflow-secrets-helper: MLflow tracking credentials from a secret manager, as one HTTP header."""

__version__ = "0.1.0"
