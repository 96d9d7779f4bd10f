"""The S3 client of an ``s3://bucket/prefix`` repository, and what its errors mean to a user.

boto3 (the ``s3`` extra) is imported here only, and only when an s3:// repository is used: it costs
about 250 ms, which no other command pays. Errors become one line and an exit code, never the secret:

- wrong or missing credentials (InvalidAccessKeyId, SignatureDoesNotMatch, no credentials), a missing
  bucket, a read that is refused (AccessDenied): ConfigError, exit 3;
- a bucket in another region than ``backup.s3.region`` (AuthorizationHeaderMalformed "expecting
  'eu-west-1'", PermanentRedirect): ConfigError, exit 3, naming the region when the server says it;
- an endpoint that does not answer within ``backup.s3.timeout`` (after 3 tries): exit 4;
- a write the server refuses (AccessDenied, a quota): NotWritableError, exit 73; a write that fails
  part way (the server out of space, 5xx after the retries): WriteFailedError, exit 74.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dbcli.config.model import S3Config
from dbcli.errors import (
    ConfigError,
    DbcliError,
    NotWritableError,
    UnreachableError,
    UsageError,
    WriteFailedError,
)

_URL = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{0,62})(?:/(.*))?$")
_CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
                "AuthorizationHeaderMalformed", "InvalidSecurity", "TokenRefreshRequired"}
# the bucket is in another region than the one requests are signed for (AWS answers one of these)
_REGION = {"PermanentRedirect", "IllegalLocationConstraintException", "AuthorizationQueryParametersError",
           "InvalidRegion"}
_REFUSED = {"AccessDenied", "AllAccessDisabled", "QuotaExceeded", "EntityTooLarge", "InvalidStorageClass"}


def is_url(text: str) -> bool:
    return text.startswith("s3://")


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # without a trailing '/'; "" for the bucket's top level

    @classmethod
    def parse(cls, url: str) -> S3Location:
        found = _URL.match(url.rstrip("/"))
        if found is None:
            raise UsageError(f"not a repository URL: {url!r} (s3://bucket/prefix)")
        return cls(found.group(1), (found.group(2) or "").strip("/"))

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, *parts: str) -> str:
        """The object key of ``parts`` (joined with '/') under the prefix."""
        return "/".join([p for p in (self.prefix, *parts) if p])


def connect(cfg: S3Config) -> Any:
    """A boto3 S3 client for ``cfg``: every call has a timeout, at most 3 tries."""
    try:
        # boto3 only for s3:// repositories (~250 ms of imports)
        import boto3
        from botocore.config import Config as BotoConfig
    except ImportError:
        raise ConfigError("s3:// backup repositories need boto3",
                          hint="pip install 'dbcli[s3]' (or pip install boto3)") from None
    options = BotoConfig(
        region_name=cfg.region, connect_timeout=cfg.timeout, read_timeout=cfg.timeout,
        retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=8,
        s3={"addressing_style": cfg.addressing_style})
    session = boto3.session.Session()
    client = session.client("s3", endpoint_url=cfg.endpoint_url, aws_access_key_id=cfg.access_key_id,
                            aws_secret_access_key=cfg.secret_access_key, config=options)
    _fail_fast_once_down(client)
    return client


def _fail_fast_once_down(client: Any) -> None:
    """Once a request has found the endpoint unreachable (after its retries), every later one fails at once.

    A run that lost its endpoint still tries to clean up (abort the upload, drop the parts, write a
    failed manifest, release the lock): each would wait out its own timeouts and retries, turning
    one ``timeout`` into minutes. The run exits 4 anyway, and the next run cleans what is left.
    """
    unreachable = unreachable_errors()
    down: list[BaseException] = []

    def remember(exception: BaseException, **_: Any) -> None:
        if isinstance(exception, unreachable):
            down.append(exception)

    def refuse(**_: Any) -> None:
        if down:
            raise down[0]

    client.meta.events.register("after-call-error.s3", remember)
    client.meta.events.register("before-call.s3", refuse)


def unreachable_errors() -> tuple[type[Exception], ...]:
    """The botocore exceptions that mean the endpoint did not answer (exit 4)."""
    from botocore import exceptions as be  # loaded already: only a client's errors are looked at

    return (be.EndpointConnectionError, be.ConnectTimeoutError, be.ReadTimeoutError, be.ConnectionClosedError,
            be.ResponseStreamingError)


def error_code(e: BaseException) -> str | None:
    """The S3 error code of a ClientError (``NoSuchKey``, ``PreconditionFailed``...), else None."""
    response = getattr(e, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    if code is None:
        return None
    return {"404": "NoSuchKey", "412": "PreconditionFailed", "403": "AccessDenied"}.get(str(code), str(code))


def expected_region(e: BaseException) -> str | None:
    """The region the server says the bucket is in (AWS: the error's ``Region``, the
    ``x-amz-bucket-region`` header, or "expecting 'eu-west-1'" in the message); None if it does not say."""
    response = getattr(e, "response", None)
    if not isinstance(response, dict):
        return None
    error = response.get("Error") or {}
    headers = (response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    found = error.get("Region") or headers.get("x-amz-bucket-region")
    if not found:
        said = re.search(r"expecting '([a-z0-9-]+)'", str(error.get("Message") or ""))
        found = said.group(1) if said else None
    return str(found) if found else None


def status(e: BaseException) -> int | None:
    response = getattr(e, "response", None)
    return response.get("ResponseMetadata", {}).get("HTTPStatusCode") if isinstance(response, dict) else None


def translate(e: BaseException, where: str, *, writing: bool = False) -> DbcliError | None:
    """The DbcliError for a boto3/botocore exception (see the module docstring); None for any other."""
    from botocore import exceptions as be  # loaded already: the client raised it

    if isinstance(e, be.NoCredentialsError | be.PartialCredentialsError):
        return ConfigError(f"{where}: no S3 credentials",
                           hint="set backup.s3.access_key_id and secret_access_key (or secret_access_key_file)")
    if isinstance(e, unreachable_errors()):
        return UnreachableError(f"{where}: the S3 endpoint does not answer ({type(e).__name__})",
                                hint="check backup.s3.endpoint_url and that the server is up")
    if isinstance(e, be.ClientError):
        code, http = error_code(e) or "?", status(e)
        region = expected_region(e)
        if code in _REGION or (region is not None and (code in _CREDENTIALS or http == 301)):
            if region is None:
                return ConfigError(f"{where}: the S3 server refused the region ({code})", hint="check backup.s3.region")
            return ConfigError(f"{where}: the bucket is in region {region}, not in the one configured ({code})",
                               hint=f"set backup.s3.region: {region}")
        if code in _CREDENTIALS:
            return ConfigError(f"{where}: the S3 server refused the credentials ({code})",
                               hint="check backup.s3.access_key_id and secret_access_key")
        if code == "NoSuchBucket":
            return ConfigError(f"{where}: bucket does not exist", hint="create it, or fix backup.dir")
        if code in _REFUSED or http == 403:
            if writing:
                return NotWritableError(f"{where}: the S3 server refused the upload ({code})")
            return ConfigError(f"{where}: the S3 server refused access ({code})",
                               hint="the credentials need list, read, write and delete rights on the prefix")
        if writing and (http is None or http >= 500):
            return WriteFailedError(f"{where}: the upload failed ({code}, HTTP {http})")
        if http is not None and http >= 500:
            return UnreachableError(f"{where}: the S3 server failed ({code}, HTTP {http})")
        return DbcliError(f"{where}: S3 error {code} (HTTP {http})")
    if isinstance(e, be.BotoCoreError):
        return DbcliError(f"{where}: S3 client error: {type(e).__name__}")
    return None


@contextmanager
def translated(where: str, *, writing: bool = False) -> Iterator[None]:
    """Turn the S3 client's exceptions into DbcliErrors (see ``translate``)."""
    try:
        yield
    except DbcliError:
        raise
    except Exception as e:
        mapped = translate(e, where, writing=writing)
        if mapped is None:
            raise
        raise mapped from None
