"""MLflow request-auth plugin that obtains headers from mlflow-secrets-helper."""
