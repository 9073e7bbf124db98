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
    value = secret_value(settings.database_url_secret)
    if not value.startswith("{"):
        return value
    data = json.loads(value)
    if "url" in data:
        return str(data["url"])
    from urllib.parse import quote

    return (
        f"postgresql://{quote(str(data['username']), safe='')}:{quote(str(data['password']), safe='')}"
        f"@{data['host']}:{data.get('port', 5432)}/{data.get('dbname', 'coda_memory')}"
    )
