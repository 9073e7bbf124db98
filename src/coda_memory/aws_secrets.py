"""Secrets from AWS Secrets Manager (cached 5 minutes by Powertools), and the one place that
turns settings into a database URL -- for the API handlers, the jobs and the CLIs alike."""

from __future__ import annotations

import json

from .config import Settings
from .errors import ServiceUnavailable


def secret_value(secret_id: str) -> str:
    """The secret's string value (Powertools caches it for 5 minutes)."""
    from aws_lambda_powertools.utilities.parameters import get_secret

    value = get_secret(secret_id, max_age=300)
    return (value.decode() if isinstance(value, bytes) else str(value)).strip()


def database_url(settings: Settings) -> str:
    """``DATABASE_URL``, else the secret named by ``DATABASE_URL_SECRET``: a plain URL, a JSON
    ``{"url": ...}``, or an RDS-style JSON secret (``username``, ``password``, ``host``,
    ``port``, ``dbname``). Raises :class:`ServiceUnavailable` when neither is set."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    if not settings.database_url_secret:
        raise ServiceUnavailable("database is not configured (set DATABASE_URL or DATABASE_URL_SECRET)")
    return database_url_from_secret(secret_value(settings.database_url_secret))


def search_database_url(settings: Settings) -> str | None:
    """Where searches run: ``MEMORY_SEARCH_DATABASE_URL``, else the secret named by
    ``MEMORY_SEARCH_DATABASE_URL_SECRET`` (same shapes as :func:`database_url`); None when
    neither is set (searches then use the database of :func:`database_url`)."""
    if settings.search_database_url is not None:
        return settings.search_database_url.get_secret_value()
    if settings.search_database_url_secret:
        return database_url_from_secret(secret_value(settings.search_database_url_secret))
    return None


def database_url_from_secret(value: str) -> str:
    """The PostgreSQL URL in a secret's value: a plain URL, ``{"url": ...}``, or the RDS shape
    ``{"username", "password", "host", "port", "dbname"[, "sslmode"]}`` (what the stack's
    migration function writes for the app role, and what rotation functions keep). Every part
    is percent-encoded, so a password with ``@``/``:`` or a socket-directory host stays intact."""
    from urllib.parse import quote, urlencode

    value = value.strip()
    if not value.startswith("{"):
        return value
    data = json.loads(value)
    if "url" in data:
        return str(data["url"])
    user, password, host, dbname = (quote(str(data.get(k, d)), safe="") for k, d in (
        ("username", ""), ("password", ""), ("host", ""), ("dbname", "coda_memory")))
    url = f"postgresql://{user}:{password}@{host}:{data.get('port', 5432)}/{dbname}"
    if data.get("sslmode"):
        url += "?" + urlencode({"sslmode": data["sslmode"]})
    return url
