"""The least a script can do to read the secret from AWS Secrets Manager with boto3.

argv: secret name. Endpoint, region and credentials come from the environment.
"""

import sys

import boto3

answer = boto3.client("secretsmanager").get_secret_value(SecretId=sys.argv[1])
print(len(answer["SecretString"]))
