"""Subscriber configuration, from the environment, validated once at start.

Names (all documented in docs/events.md):

``REDIS_URL``                      Redis to read from (default ``redis://127.0.0.1:6379/0``).
``LAMBDA_ENDPOINT_URL``            Lambda Invoke endpoint. Default: ``http://127.0.0.1:3001`` (the
                                   local runner) unless running on AWS (``AWS_EXECUTION_ENV`` or
                                   ``ECS_CONTAINER_METADATA_URI*`` set), where boto3's regional
                                   endpoint is used. Set it to an empty string to force the latter.
``INGEST_FUNCTION_NAME``           Function (name or ARN) to invoke, default ``IngestFunction``.
``SUBSCRIBER_NAME``                Consumer name in the group, default ``<host>-<pid>``.
``SUBSCRIBER_STREAM``              default ``memory.ingest.stream``
``SUBSCRIBER_CHANNEL``             default ``memory.ingest`` (empty: no pub/sub)
``SUBSCRIBER_GROUP``               default ``memory-subscriber``
``SUBSCRIBER_DLQ_STREAM``          default ``memory.ingest.dlq``
``SUBSCRIBER_BATCH_SIZE``          events per invoke, default 100 (max 100)
``SUBSCRIBER_BATCH_WINDOW_MS``     wait at most this long to fill a batch, default 100
``SUBSCRIBER_CLAIM_IDLE_MS``       reclaim entries idle this long on other consumers, default 30000
``SUBSCRIBER_MAX_ATTEMPTS``        deliveries before an event goes to the DLQ, default 8
``SUBSCRIBER_BACKOFF_BASE_MS`` / ``SUBSCRIBER_BACKOFF_MAX_MS``  retry backoff, default 250 / 30000
``SUBSCRIBER_INVOKE_TIMEOUT_S``    read timeout of one invoke, default 120
``SUBSCRIBER_STATS_INTERVAL_S``    how often counters are logged and flushed as metrics, default 30
"""

from __future__ import annotations

import os
import socket

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_LAMBDA_ENDPOINT = "http://127.0.0.1:3001"


def on_aws() -> bool:
    """True inside Lambda, ECS or Fargate (where boto3 finds the real endpoint and credentials)."""
    return any(
        os.environ.get(name)
        for name in (
            "AWS_EXECUTION_ENV",
            "ECS_CONTAINER_METADATA_URI",
            "ECS_CONTAINER_METADATA_URI_V4",
        )
    )


def _default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class SubscriberSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SUBSCRIBER_", extra="ignore", frozen=True, populate_by_name=True)

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "SUBSCRIBER_REDIS_URL"),
    )
    lambda_endpoint_url: str | None = Field(
        None, validation_alias=AliasChoices("LAMBDA_ENDPOINT_URL", "SUBSCRIBER_LAMBDA_ENDPOINT_URL")
    )
    ingest_function_name: str = Field(
        "IngestFunction",
        validation_alias=AliasChoices("INGEST_FUNCTION_NAME", "SUBSCRIBER_INGEST_FUNCTION_NAME"),
    )
    region: str = Field("us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"))
    name: str = Field(default_factory=_default_name, min_length=1, max_length=200)

    stream: str = "memory.ingest.stream"
    channel: str = "memory.ingest"
    group: str = "memory-subscriber"
    dlq_stream: str = "memory.ingest.dlq"

    batch_size: int = Field(100, ge=1, le=100)
    batch_window_ms: int = Field(100, ge=0, le=60_000)
    claim_idle_ms: int = Field(30_000, ge=100)
    claim_interval_ms: int = Field(1_000, ge=50)
    max_attempts: int = Field(8, ge=1, le=1_000)
    backoff_base_ms: int = Field(250, ge=1)
    backoff_max_ms: int = Field(30_000, ge=1)
    invoke_timeout_s: float = Field(120.0, gt=0)
    stats_interval_s: float = Field(30.0, gt=0)
    pubsub_dedup_ttl_s: int = Field(600, ge=1)

    @model_validator(mode="after")
    def _defaults(self) -> SubscriberSettings:
        if self.lambda_endpoint_url is None and not on_aws():
            object.__setattr__(self, "lambda_endpoint_url", LOCAL_LAMBDA_ENDPOINT)
        if self.lambda_endpoint_url == "":
            object.__setattr__(self, "lambda_endpoint_url", None)
        if self.backoff_max_ms < self.backoff_base_ms:
            raise ValueError("SUBSCRIBER_BACKOFF_MAX_MS must be >= SUBSCRIBER_BACKOFF_BASE_MS")
        return self
