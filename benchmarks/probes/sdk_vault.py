"""The least a script can do to read the secret from Vault with hvac (the baseline).

argv: secret path below the ``secret/`` KV v2 mount. VAULT_ADDR and VAULT_TOKEN come
from the environment.
"""

import os
import sys

import hvac

client = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["VAULT_TOKEN"])
answer = client.secrets.kv.v2.read_secret_version(
    path=sys.argv[1], mount_point="secret", raise_on_deleted_version=True
)
print(len(answer["data"]["data"]))
