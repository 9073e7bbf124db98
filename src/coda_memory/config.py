"""Service configuration, read from the environment and validated once per process.

Every name is documented in docs/configuration.md. Defaults are safe for production
(limits on, secrets never logged) and still let a person try the API by hand.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_CONTENT_TYPES = ("conversation", "fact", "preference", "event")


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """All knobs of the service. Environment names are upper case (``MEMORY_*`` plus a few
    conventional ones such as ``DATABASE_URL`` and ``REDIS_URL``)."""

    model_config = SettingsConfigDict(
        env_prefix="MEMORY_", extra="ignore", frozen=True, populate_by_name=True
    )

    # --- connections and secrets -------------------------------------------------------
    database_url: SecretStr | None = Field(
        None, validation_alias=_env("DATABASE_URL", "MEMORY_DATABASE_URL")
    )
    database_url_secret: str | None = Field(
        None,
        validation_alias=_env("DATABASE_URL_SECRET", "MEMORY_DATABASE_URL_SECRET"),
        description="Secrets Manager id whose value is the database URL (used when "
        "DATABASE_URL is unset).",
    )
    redis_url: str | None = Field(None, validation_alias=_env("REDIS_URL", "MEMORY_REDIS_URL"))
    search_database_url: SecretStr | None = Field(
        None,
        description="Where searches run (read-only transactions), e.g. an Aurora reader endpoint. "
        "Unset: the database of DATABASE_URL.",
    )
    search_database_url_secret: str | None = Field(
        None, description="Secrets Manager id whose value is the search database URL."
    )
    access_stats: Literal["transaction", "redis"] = Field(
        "transaction",
        description="How a search records access_count/accessed_at: `transaction` writes them in the "
        "search's own transaction; `redis` counts them in Redis (REDIS_URL) and the access-fold job "
        "adds them to the database every minute, so the search is a read-only transaction. "
        "`redis` without REDIS_URL falls back to `transaction`.",
    )
    api_key: SecretStr | None = Field(None, validation_alias=_env("MEMORY_API_KEY"))
    api_key_secret: str | None = Field(
        None,
        validation_alias=_env("MEMORY_API_KEY_SECRET"),
        description="Secrets Manager id holding service key(s): a string, or a JSON list.",
    )
    db_pool_max: int = Field(default_factory=lambda: default_pool_max(), ge=1, le=64)
    db_proxy: bool | None = Field(
        None,
        description="The database URL points at a connection-multiplexing proxy (RDS Proxy): "
        "no server-side prepared statements. Unset: true when the host looks like an RDS Proxy "
        "endpoint (`*.proxy-*.rds.amazonaws.com`).",
    )
    db_connect_timeout_s: float = Field(5.0, gt=0, le=60)
    db_statement_timeout_ms: int = Field(10_000, ge=100, le=600_000)

    # --- abuse limits ------------------------------------------------------------------
    rate_limit_per_second: float = Field(50.0, ge=0)
    rate_limit_burst: int = Field(100, ge=0)
    default_max_memories: int = Field(50_000, ge=0)
    default_max_daily_ingestions: int = Field(1_000, ge=0)

    # --- input limits ------------------------------------------------------------------
    max_body_bytes: int = Field(1_048_576, ge=1_024)
    max_content_chars: int = Field(32_000, ge=1)
    max_tags: int = Field(32, ge=0)
    max_tag_chars: int = Field(64, ge=1)
    max_metadata_bytes: int = Field(16_384, ge=2)
    max_batch_items: int = Field(100, ge=1, le=1_000)
    max_top_k: int = Field(100, ge=1)
    # export pages stay below Lambda's 6 MB response limit: this counts the NDJSON as it will be
    # escaped into the function's JSON response
    export_page_bytes: int = Field(5_000_000, ge=10_000, le=5_500_000)
    max_import_lines: int = Field(500, ge=1, le=10_000)
    max_context_tokens: int = Field(32_000, ge=1)
    content_types: tuple[str, ...] = DEFAULT_CONTENT_TYPES

    # --- ranking -----------------------------------------------------------------------
    weight_similarity: float = Field(0.6, ge=0)
    weight_importance: float = Field(0.3, ge=0)
    weight_recency: float = Field(0.1, ge=0)
    recency_decay: float = Field(0.01, ge=0, description="per day: recency = 1/(1+age_days*decay)")
    search_mode: Literal["vector", "hybrid"] = "hybrid"
    # hybrid: match = a*cos/max_cos + (1-a)*bm25/max_bm25 (convex) or weighted RRF; see db/search.py
    fusion: Literal["convex", "rrf"] = "convex"
    fusion_vector_weight: float = Field(0.5, ge=0, le=1)
    rrf_k: int = Field(20, ge=1)
    candidate_pool: int = Field(50, ge=1, le=1_000)
    # neighbouring evidence: a memory next to one of the best few hits (same context_id, at most
    # neighbour_span before/after it in time, within the window) is lifted toward that hit, never
    # above it, unless it is a long memory (then not at all); 0 seeds: off. Measured on LoCoMo
    # and BEAM, see docs/retrieval.md
    neighbour_seeds: int = Field(4, ge=0, le=50)
    neighbour_span: int = Field(3, ge=1, le=20)
    neighbour_window_seconds: float = Field(3600, gt=0, le=31 * 86_400)
    neighbour_weight: float = Field(0.3, ge=0, le=1)
    # ...except the reply to a hit that asks a question (the short memory right after it):
    # it gets w_sim * this * the hit's match, not capped, so it may pass the question; 0: off
    neighbour_reply_weight: float = Field(0.5, ge=0, le=1)
    # the long-memory factor: a memory of more than long_memory_lexemes distinct words has its
    # match multiplied by (long_memory_lexemes / its count) ** long_memory_power, never below
    # long_memory_floor; 0 lexemes: off. Long texts matched many questions loosely and crowded
    # out the short statements that hold the facts; see docs/retrieval.md
    long_memory_lexemes: int = Field(60, ge=0, le=100_000)
    long_memory_power: float = Field(1.0, gt=0, le=4)
    long_memory_floor: float = Field(0.25, ge=0, le=1)
    # vectors per memory at most: a text longer than the model reads (256 tokens) is also
    # embedded in overlapping windows, and search scores a memory by its best piece. 1 (only
    # the opening) by default: pieces did not win on the BEAM chat measured; see docs/retrieval.md
    embedding_pieces: int = Field(1, ge=1, le=64)
    token_estimator: Literal["chars4", "words"] = "chars4"  # noqa: S105 - not a secret
    # /context leaves out memories whose cosine similarity to the query is below this (a request's
    # min_relevance overrides it); measured on LoCoMo dev, see docs/retrieval.md
    context_min_relevance: float = Field(0.2, ge=0, le=1)
    # return_similar on ingest: live memories at or above this cosine similarity to the new one
    # are returned. 0.5 lists every BEAM dev knowledge update next to the fact it replaces (18/18)
    # and 6.8% of unrelated same-speaker LoCoMo turn pairs (bench.similar_threshold, docs/api.md)
    similar_min: float = Field(0.5, ge=0, le=1)

    # --- retention jobs ----------------------------------------------------------------
    archive_after_days: int = Field(365, ge=1)
    archive_max_access_count: int = Field(5, ge=0)
    # memories at least this important are never archived automatically (PATCH can still)
    archive_keep_importance: float = Field(0.8, ge=0, le=1)
    purge_after_days: int = Field(30, ge=0)
    job_batch_size: int = Field(1_000, ge=1, le=100_000)
    # consolidation: near-duplicates of the same content type at or above this cosine similarity
    # are merged into the earliest (measured on LoCoMo dev, see docs/api.md "Memory lifecycle")
    consolidate_similarity: float = Field(0.95, ge=0.8, le=1.0)
    consolidate_batch_size: int = Field(200, ge=1, le=10_000)
    # a user with at least this many searchable memories gets a vector graph of its own (built by
    # the archival job; below it a search scans the user's vectors exactly; see docs/capacity.md)
    vector_graph_min_memories: int = Field(2_000, ge=100)

    # --- model -------------------------------------------------------------------------
    model_dir: Path | None = None
    embed_threads: int = Field(1, ge=1, le=64)
    embed_parallel: int | None = Field(None, ge=1, le=64, description="texts embedded at once in a batch call")

    @field_validator(
        "database_url", "database_url_secret", "redis_url", "api_key", "api_key_secret", "model_dir", "db_proxy",
        "search_database_url", "search_database_url_secret", mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # The SAM template sets some of these to "" so local/env.json can override them.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("content_types", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if not self.content_types:
            raise ValueError("MEMORY_CONTENT_TYPES must name at least one content type")
        if self.weight_similarity + self.weight_importance + self.weight_recency <= 0:
            raise ValueError("at least one ranking weight must be positive")
        return self


def on_lambda() -> bool:
    """True inside an AWS Lambda execution environment (the runtime sets this variable)."""
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def default_pool_max() -> int:
    """Connections per process when ``MEMORY_DB_POOL_MAX`` is unset. A Lambda execution
    environment serves one request at a time and a request uses one connection (the search's
    BM25 helper runs on the request's own connection), so 1 there: 1,000 concurrent
    environments then ask the database (or its proxy) for 1,000 connections, not 4,000. A local
    process serves many threads at once."""
    return 1 if on_lambda() else 4


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (validated on first use)."""
    return Settings()


def reset_settings() -> None:
    """Forget cached settings (tests change the environment between cases)."""
    get_settings.cache_clear()
