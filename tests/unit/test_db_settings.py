"""Database settings that need no server: the pool size on Lambda, proxy detection, and the
URL read from a secret (plain, ``{"url"}``, or the RDS JSON shape the migration function writes)."""

from __future__ import annotations

import json

import pytest

from coda_memory.aws_secrets import database_url_from_secret
from coda_memory.config import Settings
from coda_memory.db.pool import is_proxy_url


@pytest.mark.parametrize(("lambda_name", "explicit", "expected"), [
    (None, None, 4), ("coda-RetrieveFunction", None, 1), ("coda-RetrieveFunction", "2", 2), (None, "8", 8),
])
def test_pool_is_one_connection_per_lambda_environment(monkeypatch, lambda_name, explicit, expected):
    for name, value in (("AWS_LAMBDA_FUNCTION_NAME", lambda_name), ("MEMORY_DB_POOL_MAX", explicit)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert Settings().db_pool_max == expected


@pytest.mark.parametrize(("url", "proxy"), [
    ("postgresql://coda_app:pw@coda-db.proxy-c0abc123.eu-west-1.rds.amazonaws.com:5432/coda_memory", True),
    ("postgresql://coda_app:pw@coda-db.cluster-c0abc123.eu-west-1.rds.amazonaws.com:5432/coda_memory", False),
    ("postgresql://coda_app@/coda_memory?host=/tmp/pg", False),
    ("not a url", False),
])
def test_rds_proxy_endpoints_are_recognised(url, proxy):
    assert is_proxy_url(url) is proxy


def test_rds_json_secret_becomes_a_url_with_quoted_credentials_and_sslmode():
    secret = {"username": "coda_app", "password": "p@ss/w:rd%", "host": "db.proxy-x.rds.amazonaws.com",
              "port": 5432, "dbname": "coda_memory", "sslmode": "require"}
    url = database_url_from_secret(json.dumps(secret))
    assert url == ("postgresql://coda_app:p%40ss%2Fw%3Ard%25@db.proxy-x.rds.amazonaws.com:5432/coda_memory"
                   "?sslmode=require")
    from psycopg.conninfo import conninfo_to_dict

    assert conninfo_to_dict(url)["password"] == "p@ss/w:rd%"


def test_plain_and_url_shaped_secrets():
    assert database_url_from_secret("  postgresql://a@h/d \n") == "postgresql://a@h/d"
    assert database_url_from_secret(json.dumps({"url": "postgresql://a@h/d"})) == "postgresql://a@h/d"


@pytest.mark.parametrize(("value", "expected"), [("", None), ("true", True), ("false", False), (None, None)])
def test_db_proxy_setting_accepts_the_templates_empty_value(monkeypatch, value, expected):
    """The template sets MEMORY_DB_PROXY to "" for an existing database ("true" for the created
    one): empty means unset (auto-detect), not a validation error that would stop every request."""
    if value is None:
        monkeypatch.delenv("MEMORY_DB_PROXY", raising=False)
    else:
        monkeypatch.setenv("MEMORY_DB_PROXY", value)
    assert Settings().db_proxy is expected
