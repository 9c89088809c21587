"""The least a script can do to read the secret from Azure Key Vault with the Azure SDK.

argv: vault URL, secret name. The credential chain is steered by the environment.
"""

import sys

from azure.identity import DefaultAzureCredential
from azure.keyvault.secrets import SecretClient

secret = SecretClient(sys.argv[1], DefaultAzureCredential()).get_secret(sys.argv[2])
print(len(secret.value or ""))
