"""AWS Secrets Manager: the provider, its settings and variables, its error mapping.

Reads one secret with one ``GetSecretValue`` call per attempt, through boto3 imported
only inside :meth:`AwsSecretsManagerProvider.fetch`. botocore makes exactly one attempt
per call and this module retries transient failures itself with
:func:`~mlflow_secrets_helper.providers.base.with_retries`, so no attempt or pause runs
past the deadline; a 429 or 503 ``Retry-After`` sets the least pause. Every answer is
read by :func:`_bounded_send`, never past the size limit of
:data:`~mlflow_secrets_helper.providers.base.MAX_ANSWER_BYTES`. Errors are classified by
AWS's error code and never copy AWS's message text. The settings, retries and exit
statuses are described in the man page (AWS SECRETS MANAGER).

Seams: ``monotonic`` (the deadline), ``sleep`` and ``jitter`` (the pauses), and
``client_factory``: when set it is called as ``client_factory(session=, config=,
region_name=)`` with the botocore session, the botocore ``Config`` (timeouts cut to the
time left, botocore's own retries off) and the region (None: botocore's chain), and
returns a Secrets Manager client; by default boto3 builds it from the same arguments.

It runs past 400 lines because one provider is one module: AWS's error-code tables and
their mapping stay beside the call they classify.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from mlflow_secrets_helper import __version__
from mlflow_secrets_helper.errors import (
    BackendDenied,
    BackendUnavailable,
    ConfigError,
    HelperError,
    InvalidSecret,
    NotFound,
)
from mlflow_secrets_helper.netrules import is_loopback_url, require_tls_unless_loopback
from mlflow_secrets_helper.providers.base import (
    DEFAULT_SEAMS,
    READ_CHUNK,
    Fetched,
    Final,
    ProviderSpec,
    Retry,
    Seams,
    Throttled,
    read_bounded,
    require_sdk,
    retry_after_seconds,
    with_retries,
)
from mlflow_secrets_helper.secret import Secret
from mlflow_secrets_helper.text import display_url

if TYPE_CHECKING:
    from botocore.config import Config as BotocoreConfig
    from botocore.session import Session as BotocoreSession
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_secretsmanager.type_defs import GetSecretValueResponseTypeDef

NAME = "aws-secrets-manager"

SETTINGS = frozenset({"secret_name", "secret_version", "region", "profile"})

DEFAULT_STAGE = "AWSCURRENT"
#: the retry policy; ``attempts`` is replaced by AWS_MAX_ATTEMPTS / the profile's max_attempts
RETRY = Retry(attempts=3, base=0.25, cap=2.0, min_attempt=0.05)
MAX_ATTEMPTS_CAP = 10
#: a TCP connect to a regional endpoint that takes longer than this is retried
CONNECT_TIMEOUT_CAP = 3.0
#: rebuild a client whose construction took longer than this (see fetch)
CLIENT_BUILD_SLACK = 0.02
#: botocore's endpoint overrides for this service, first set wins
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL")

#: compiled on first use: a cache hit never needs it
_VERSION_ID = r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"

_NOT_FOUND = frozenset({"ResourceNotFoundException"})
_DENIED = frozenset(
    {
        "AccessDeniedException",
        "AccessDenied",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "ExpiredTokenException",
        "ExpiredToken",
        "RequestExpired",
        "DecryptionFailure",
        "KMSAccessDeniedException",
        "KMSDisabledException",
        "KMSInvalidStateException",
        "KMSNotFoundException",
        "OptInRequired",
        "NotAuthorized",
    }
)
_TRANSIENT = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "InternalServiceError",
        "InternalServiceErrorException",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
    }
)
_BAD_REQUEST = frozenset(
    {"InvalidParameterException", "ValidationException", "InvalidRequestException"}
)
_CREDENTIAL_HINT = (
    "botocore looks for credentials in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
    "AWS_PROFILE and the shared config files, web identity, SSO, the container "
    "and the instance metadata service"
)


class Version(NamedTuple):
    """Which version to read: a staging label or a version id."""

    stage: str | None = None
    version_id: str | None = None

    @classmethod
    def parse(cls, text: str) -> Version:
        """``id:X`` / ``stage:X`` explicitly; otherwise UUID-shaped is an id, else a label."""
        value = text.strip()
        if value.startswith("id:"):
            version = cls(version_id=value[3:])
        elif value.startswith("stage:"):
            version = cls(stage=value[6:])
        elif re.fullmatch(_VERSION_ID, value):
            version = cls(version_id=value)
        else:
            version = cls(stage=value)
        shown = version.version_id or version.stage or ""
        if not shown or len(shown) > 256 or not shown.isprintable() or " " in shown:
            raise ConfigError(
                f"invalid AWS secret version {text!r}",
                hints=[
                    "MLFLOW_AWS_SECRET_VERSION is a staging label such as AWSPREVIOUS, "
                    "a version id, or id:<version id> / stage:<label>"
                ],
            )
        return version

    def describe(self) -> str:
        return f"version id {self.version_id}" if self.version_id else f"stage {self.stage}"


class AwsSecretsManagerProvider:
    """Reads one secret from AWS Secrets Manager. Building it loads no SDK.

    ``env`` must be the process environment botocore reads: it is used only to compute
    the cache key (region, endpoint override, profile) without loading boto3.
    """

    def __init__(
        self, settings: Mapping[str, str], env: Mapping[str, str], seams: Seams = DEFAULT_SEAMS
    ) -> None:
        secret_id = settings.get("secret_name", "").strip()
        if not secret_id:
            raise ConfigError(
                "MLFLOW_AWS_SECRET_NAME is not set",
                hints=["set MLFLOW_AWS_SECRET_NAME (or secret_name in the route) to a name or ARN"],
            )
        if (
            len(secret_id) > 2048
            or not secret_id.isprintable()
            or any(c.isspace() for c in secret_id)
        ):
            raise ConfigError(
                "MLFLOW_AWS_SECRET_NAME is not a valid secret name or ARN",
                hints=["names use letters, digits and /_+=.@-"],
            )
        version_text = settings.get("secret_version", "").strip()
        region = settings.get("region", "").strip() or None
        if region is not None and not re.fullmatch(r"[a-z0-9-]{1,64}", region):
            raise ConfigError(f"invalid AWS region {region!r}")
        self.secret_id = secret_id
        self.version = Version.parse(version_text) if version_text else None
        self.region = region
        self.profile = settings.get("profile", "").strip() or None
        self.env = env
        self._seams = seams
        endpoint = self._endpoint_override()
        if endpoint:
            require_tls_unless_loopback(endpoint, _endpoint_variable(env))

    def __repr__(self) -> str:
        return (
            f"AwsSecretsManagerProvider(secret_id={self.secret_id!r}, version={self.version!r}, "
            f"region={self.region!r}, profile={self.profile!r})"
        )

    # ----------------------------------------------------------------- identity

    def warnings(self) -> tuple[str, ...]:
        return ()

    def reference(self) -> str:
        suffix = ""
        if self.version is not None:
            suffix = "@" + (self.version.version_id or self.version.stage or "")
        return f"{NAME}:{self.secret_id}{suffix}"

    def cache_key(self) -> str:
        version = self.version or Version(stage=DEFAULT_STAGE)
        return json.dumps(
            {
                "provider": NAME,
                "region": self._effective_region() or _env(self.env, "AWS_DEFAULT_REGION"),
                "endpoint": self._endpoint_override() or "",
                "profile": self.profile or _env(self.env, "AWS_PROFILE", "AWS_DEFAULT_PROFILE"),
                "secret": self.secret_id,
                "stage": version.stage or "",
                "version_id": version.version_id or "",
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    def _arn_region(self) -> str | None:
        # arn:<partition>:secretsmanager:<region>:<account>:secret:<name>
        parts = self.secret_id.split(":", 6)
        if len(parts) == 7 and parts[0] == "arn" and parts[2:6:3] == ["secretsmanager", "secret"]:
            return parts[3] or None
        return None

    def _effective_region(self) -> str | None:
        """The region we pass to botocore (None: botocore's chain decides).

        ``AWS_REGION`` is the variable the AWS SDKs document, but botocore itself
        reads only ``AWS_DEFAULT_REGION``, so it is passed explicitly."""
        return self.region or self._arn_region() or _env(self.env, "AWS_REGION") or None

    def _endpoint_override(self) -> str | None:
        if _env(self.env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").lower() == "true":
            return None
        return _env(self.env, *ENDPOINT_VARIABLES) or None

    def _what(self) -> str:
        version = self.version or Version(stage=DEFAULT_STAGE)
        return f"secret {self.secret_id!r} ({version.describe()})"

    # -------------------------------------------------------------------- fetch

    def fetch(self, deadline: float) -> Fetched:
        require_sdk(SPEC, "boto3")
        import boto3.session  # noqa: F401 - imported before the clock starts
        from botocore.exceptions import BotoCoreError, ClientError

        monotonic = self._seams.monotonic
        budget = max(deadline - monotonic(), 0.0)
        try:
            session = self._session()
            policy = RETRY._replace(attempts=self._max_attempts(session))
        except (BotoCoreError, ValueError) as exc:
            raise self._classify(exc, 0)[0] from exc
        made = 0
        last_code: str | None = None

        def attempt(remaining: float) -> Fetched:
            nonlocal made, last_code
            made += 1
            try:
                built = monotonic()
                client = self._client(session, deadline)
                if monotonic() - built > CLIENT_BUILD_SLACK:
                    # the first client loads models and credentials into the session;
                    # the next is built in milliseconds with timeouts that end on time
                    client = self._client(session, deadline)
                response = self._get(client)
                if "SecretString" not in response and "SecretBinary" not in response:
                    raise _IncompleteResponse
            except (BotoCoreError, ClientError, ValueError, _IncompleteResponse) as exc:
                last_code = _code_of(exc) or type(exc).__name__
                error, again = self._classify(exc, made)
                cause = None if isinstance(exc, ClientError) else exc
                if error.retryable and not again:
                    raise Final(error) from cause
                raise error from cause
            return self._fetched(response)

        return with_retries(
            attempt,
            deadline=deadline,
            seams=self._seams,
            timed_out=lambda attempts, _last: self._timed_out(budget, attempts, last_code),
            policy=policy,
        )

    def _get(self, client: SecretsManagerClient) -> GetSecretValueResponseTypeDef:
        version = self.version or Version(stage=DEFAULT_STAGE)
        if version.version_id:
            return client.get_secret_value(SecretId=self.secret_id, VersionId=version.version_id)
        return client.get_secret_value(
            SecretId=self.secret_id, VersionStage=version.stage or DEFAULT_STAGE
        )

    def _fetched(self, response: Mapping[str, object]) -> Fetched:
        text = response.get("SecretString")
        if isinstance(text, str):
            return Fetched(Secret(text))
        binary = response.get("SecretBinary")
        if isinstance(binary, bytes):
            return Fetched(Secret(binary))
        raise InvalidSecret(f"AWS Secrets Manager returned no usable value for {self._what()}")

    def _session(self) -> BotocoreSession:
        import botocore.session

        session = botocore.session.Session(profile=self.profile)
        session.get_scoped_config()  # a missing profile or unreadable config fails here
        return session

    def _max_attempts(self, session: BotocoreSession) -> int:
        """``AWS_MAX_ATTEMPTS`` / ``max_attempts`` from the profile: total attempts."""
        try:
            value = session.get_config_variable("max_attempts")
        except ValueError:
            value = 0
        if value is None:
            return RETRY.attempts
        if not isinstance(value, int) or value < 1:
            raise ConfigError(
                "AWS max_attempts is not a positive integer",
                hints=["fix AWS_MAX_ATTEMPTS or max_attempts in the AWS config file"],
            )
        return min(value, MAX_ATTEMPTS_CAP)

    def _client(self, session: BotocoreSession, deadline: float) -> SecretsManagerClient:
        """A fresh client whose timeouts end at the deadline (about 10 ms after the first)."""
        from botocore.config import Config

        remaining = max(deadline - self._seams.monotonic(), RETRY.min_attempt)
        config = Config(
            connect_timeout=min(CONNECT_TIMEOUT_CAP, remaining),
            read_timeout=remaining,
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=1,
            user_agent_extra=f"mlflow-secrets-helper/{__version__}",
            # a loopback endpoint override is reached directly, never through a proxy
            proxies={} if is_loopback_url(self._endpoint_override() or "") else None,
        )
        factory = self._seams.client_factory or _boto3_client
        client: SecretsManagerClient = factory(
            session=session, config=config, region_name=self._effective_region()
        )
        events = getattr(getattr(client, "meta", None), "events", None)
        if events is not None:  # a botocore client (a test's fake may not be one)
            events.register("before-send.secrets-manager", _bounded_send(client))
        return client

    # ------------------------------------------------------------------- errors

    def _timed_out(self, budget: float, attempts: int, code: str | None) -> BackendUnavailable:
        last = f"; last error {code}" if code else ""
        return BackendUnavailable(
            f"AWS Secrets Manager did not return {self._what()} within the "
            f"{budget:.1f} s timeout ({attempts} attempt{'s' if attempts != 1 else ''}{last})",
            hints=["raise --timeout / MLFLOW_SECRETS_TIMEOUT_SEC or check the network path"],
        )

    def _classify(self, exc: Exception, attempts: int) -> tuple[HelperError, bool]:
        """Map an SDK exception to the helper's error and whether another attempt may help.

        Branches on AWS's error code, never on the HTTP status alone (moto and AWS
        disagree on statuses). AWS's message text is never copied into ours.
        """
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConfigNotFound,
            ConfigParseError,
            ConnectTimeoutError,
            CredentialRetrievalError,
            HTTPClientError,
            InvalidRegionError,
            NoCredentialsError,
            NoRegionError,
            PartialCredentialsError,
            ProfileNotFound,
            ReadTimeoutError,
            SSLError,
            SSOError,
            TokenRetrievalError,
        )
        from botocore.exceptions import ConnectionError as BotoConnectionError

        what = self._what()
        tried = f"after {attempts} attempt{'s' if attempts != 1 else ''}"
        if isinstance(exc, _IncompleteResponse):
            return BackendUnavailable(
                f"AWS Secrets Manager sent an incomplete answer for {what} {tried}"
            ), True
        if isinstance(exc, ClientError):
            code = _code_of(exc) or "unknown"
            status = _status_of(exc)
            if code in _NOT_FOUND or (
                code == "InvalidRequestException" and "delet" in _message_of(exc).lower()
            ):
                return NotFound(
                    f"AWS Secrets Manager has no {what} ({code})",
                    hints=["check the secret name or ARN, the version and the region"],
                ), False
            if code in _DENIED:
                return BackendDenied(
                    f"AWS Secrets Manager denied reading {what} ({code})",
                    hints=_denied_hints(code),
                ), False
            if code in _TRANSIENT or status >= 500 or status == 429:
                message = f"AWS Secrets Manager could not serve {what} ({code}) {tried}"
                wait = _retry_after_of(exc, self._seams.clock()) if status in (429, 503) else None
                if wait is not None:
                    return Throttled(message, retry_after=wait), True
                return BackendUnavailable(message), True
            if code in _BAD_REQUEST:
                return ConfigError(
                    f"AWS Secrets Manager rejected the request for {what} ({code})",
                    hints=["check the secret name or ARN and the version setting"],
                ), False
            return BackendDenied(f"AWS Secrets Manager refused reading {what} ({code})"), False
        if isinstance(exc, NoRegionError):
            return ConfigError(
                f"no AWS region is configured for {what}",
                hints=["set AWS_REGION, a region in the AWS profile, or use the secret's full ARN"],
            ), False
        if isinstance(exc, ProfileNotFound):
            profile = self.profile or _env(self.env, "AWS_PROFILE", "AWS_DEFAULT_PROFILE")
            return ConfigError(
                f"the AWS profile {profile!r} does not exist",
                hints=["check the profile setting, AWS_PROFILE and AWS_CONFIG_FILE"],
            ), False
        if isinstance(exc, ConfigParseError | ConfigNotFound):
            return ConfigError(
                f"the AWS config file cannot be read ({type(exc).__name__})",
                hints=["check AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE"],
            ), False
        if isinstance(
            exc,
            NoCredentialsError
            | PartialCredentialsError
            | CredentialRetrievalError
            | TokenRetrievalError
            | SSOError,
        ):
            return BackendDenied(
                f"no usable AWS credentials to read {what} ({type(exc).__name__})",
                hints=[_CREDENTIAL_HINT],
            ), False
        if isinstance(exc, SSLError):
            return BackendUnavailable(
                f"TLS to AWS Secrets Manager failed reading {what} (SSLError)",
                hints=["check AWS_CA_BUNDLE and the endpoint URL"],
            ), False
        if isinstance(exc, ReadTimeoutError | ConnectTimeoutError):
            return BackendUnavailable(
                f"AWS Secrets Manager timed out serving {what} ({type(exc).__name__}) {tried}"
            ), True
        if isinstance(exc, HTTPClientError | BotoConnectionError):
            endpoint = self._endpoint_override()
            where = f" at {display_url(endpoint)}" if endpoint else ""
            return BackendUnavailable(
                f"cannot reach AWS Secrets Manager{where} for {what} ({type(exc).__name__}) {tried}"
            ), True
        if isinstance(exc, InvalidRegionError):
            return ConfigError(
                f"invalid AWS region for {what}",
                hints=["check the region setting, AWS_REGION and AWS_DEFAULT_REGION"],
            ), False
        if isinstance(exc, ValueError) and not isinstance(exc, BotoCoreError):
            if "endpoint" not in str(exc).lower():
                raise exc
            return ConfigError(
                f"invalid AWS endpoint URL for {what}",
                hints=["check AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_SECRETS_MANAGER"],
            ), False
        return ConfigError(f"the AWS SDK could not read {what} ({type(exc).__name__})"), False


class _IncompleteResponse(Exception):
    """A 200 answer without SecretString or SecretBinary: a cut or garbled body."""


def _code_of(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        error = response.get("Error")
        if isinstance(error, Mapping):
            code = error.get("Code")
            return str(code) if code else None
    return None


def _status_of(exc: Exception) -> int:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        meta = response.get("ResponseMetadata")
        if isinstance(meta, Mapping):
            status = meta.get("HTTPStatusCode")
            if isinstance(status, int):
                return status
    return 0


def _retry_after_of(exc: Exception, now: float) -> float | None:
    """The seconds AWS's ``Retry-After`` header asks us to wait, if it sent one."""
    response = getattr(exc, "response", None)
    meta = response.get("ResponseMetadata") if isinstance(response, Mapping) else None
    headers = meta.get("HTTPHeaders") if isinstance(meta, Mapping) else None
    if not isinstance(headers, Mapping):
        return None
    return retry_after_seconds(headers.get("retry-after"), now)  # botocore lowercases them


def _bounded_send(client: object) -> Callable[..., object]:
    """A ``before-send`` handler that sends the request through the client's own HTTP
    session (its proxies, TLS settings and timeouts) but reads at most
    :data:`~mlflow_secrets_helper.providers.base.MAX_ANSWER_BYTES` of the answer.

    botocore reads every non-streamed answer whole before any event after the send; a
    ``before-send`` handler that returns a response is the SDK's way (the one its stubs
    use) to take over the send. The endpoint is not public API; a test holds it to this.
    """

    def send(request: Any, **kwargs: object) -> object:
        from botocore.awsrequest import AWSResponse

        http_session = client._endpoint.http_session  # type: ignore[attr-defined]
        request.stream_output = True  # botocore's session then leaves the body unread
        response = http_session.send(request)
        where = f"AWS Secrets Manager ({display_url(request.url)})"
        try:
            body = read_bounded(
                response.raw.stream(READ_CHUNK), response.headers.get("content-length"), where
            )
        except BaseException:
            response.raw.close()  # the rest of the body is never read: the connection goes
            raise
        finally:
            response.raw.release_conn()
        return AWSResponse(response.url, response.status_code, response.headers, _Read(body))

    return send


class _Read:
    """A body already read, in the shape botocore reads ``AWSResponse.raw``."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, *args: object, **kwargs: object) -> Iterator[bytes]:
        yield self._body


def _message_of(exc: Exception) -> str:
    """AWS's message text: used to classify, never shown."""
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        error = response.get("Error")
        if isinstance(error, Mapping):
            return str(error.get("Message") or "")
    return ""


def _denied_hints(code: str) -> list[str]:
    if code.startswith("Expired") or code == "RequestExpired":
        return ["the AWS session has expired: refresh it (for example `aws sso login`)"]
    if code == "DecryptionFailure" or code.startswith("KMS"):
        return ["the caller needs kms:Decrypt on the secret's KMS key"]
    if code in {"AccessDeniedException", "AccessDenied", "NotAuthorized"}:
        return ["the caller needs secretsmanager:GetSecretValue on this secret"]
    return ["check the AWS credentials in use (aws sts get-caller-identity)"]


def _endpoint_variable(env: Mapping[str, str]) -> str:
    return next(n for n in ENDPOINT_VARIABLES if _env(env, n))


def _env(env: Mapping[str, str], *names: str) -> str:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return ""


def _boto3_client(
    *, session: BotocoreSession, config: BotocoreConfig, region_name: str | None
) -> SecretsManagerClient:
    """The production ``client_factory``: boto3's Secrets Manager client."""
    import boto3.session

    boto = boto3.session.Session(botocore_session=session, region_name=region_name)
    return boto.client("secretsmanager", config=config)


SPEC = ProviderSpec(
    name=NAME,
    toggle="MLFLOW_SECRETS_AUTH_ENABLE_AWS_SECRETS_MANAGER",
    env_prefix="MLFLOW_AWS",
    sdk="boto3",
    extra="aws",
    locator="secret_name",
    env_settings=(
        ("MLFLOW_AWS_SECRET_NAME", "secret_name"),
        ("MLFLOW_AWS_SECRET_ID", "secret_name"),
        ("MLFLOW_AWS_SECRET_VERSION", "secret_version"),
    ),
    settings=SETTINGS,
    credential_variables=(
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    ),
    location_variables=(
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    ),
    build=AwsSecretsManagerProvider,
)
