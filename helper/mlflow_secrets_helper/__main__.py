import sys

from mlflow_secrets_helper.cli import main

sys.exit(main())
