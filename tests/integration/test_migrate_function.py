"""The ``DatabaseSchema`` custom resource's function (functions/migrate) against moto's Secrets
Manager and the real PostgreSQL: on a fresh database it applies every migration as the "master"
user, gives the app role the generated password (only a SCRAM verifier reaches the server), and
completes the app secret so that the functions connect with it; a second deploy changes nothing;
failures answer FAILED to CloudFormation without leaking a secret; Delete leaves the data."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace
from typing import Any

import boto3
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from coda_memory.aws_secrets import database_url_from_secret
from coda_memory.db.migrate import BASELINE_VERSION, discover
from functions.migrate import app as migrate_app
from tests.conftest import AWS_REGION


class _CloudFormation:
    """Stands in for CloudFormation's pre-signed response URL: records each PUT body."""

    def __init__(self) -> None:
        self.responses: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                outer.responses.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/response"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def cfn() -> Iterator[_CloudFormation]:
    server = _CloudFormation()
    yield server
    server.close()


@pytest.fixture()
def fresh_db(postgres, admin_conn) -> Iterator[dict[str, str]]:
    """An empty database on the test server plus a throwaway login role standing in for
    coda_app (the shared test role's password is left alone)."""
    name = f"coda_prov_{uuid.uuid4().hex[:8]}"
    role = f"coda_app_{uuid.uuid4().hex[:8]}"
    admin_conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    admin_conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    params = conninfo_to_dict(postgres.admin_url)
    yield {"dbname": name, "role": role, "host": str(params["host"]), "user": str(params.get("user", "postgres"))}
    admin_conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    admin_conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _secrets() -> Any:
    return boto3.client("secretsmanager", region_name=AWS_REGION)


def _event(request_type: str, cfn: _CloudFormation, props: dict[str, Any], physical: str | None = None) -> dict:
    event = {"RequestType": request_type, "ResponseURL": cfn.url, "StackId": "arn:aws:cloudformation:stack/x",
             "RequestId": uuid.uuid4().hex, "LogicalResourceId": "DatabaseSchema",
             "ResourceType": "Custom::DatabaseSchema", "ResourceProperties": {"ServiceToken": "arn", **props}}
    if physical:
        event["PhysicalResourceId"] = physical
    return event


def _stack(fresh_db: dict[str, str]) -> dict[str, Any]:
    """What CloudFormation would create before the custom resource: the RDS-managed master
    secret and the generated app secret (template: AppDatabaseSecret)."""
    sm = _secrets()
    admin = sm.create_secret(Name=f"rds!cluster-{uuid.uuid4().hex[:6]}", SecretString=json.dumps(
        {"username": fresh_db["user"], "password": "master-pw-not-checked-by-trust-auth"}))["ARN"]
    app_password = sm.get_random_password(PasswordLength=40, ExcludePunctuation=True)["RandomPassword"]
    app = sm.create_secret(Name=f"coda-app-{uuid.uuid4().hex[:6]}", SecretString=json.dumps(
        {"username": fresh_db["role"], "password": app_password}))["ARN"]
    return {"AdminSecretArn": admin, "AppSecretArn": app, "ClusterHost": fresh_db["host"],
            "ProxyHost": fresh_db["host"], "Port": "5432", "DatabaseName": fresh_db["dbname"],
            "SslMode": "prefer", "SharedLayerVersion": "arn:aws:lambda:layer:shared:1"}


def _scram_matches(verifier: str, password: str) -> bool:
    """RFC 5803 / PostgreSQL: SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>."""
    method, rest = verifier.split("$", 1)
    iter_salt, keys = rest.split("$")
    iterations, salt = iter_salt.split(":")
    stored_key, server_key = keys.split(":")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return (method == "SCRAM-SHA-256"
            and base64.b64encode(hashlib.sha256(client_key).digest()).decode() == stored_key
            and base64.b64encode(hmac.new(salted, b"Server Key", "sha256").digest()).decode() == server_key)


CONTEXT = SimpleNamespace(log_stream_name="2026/11/28/[$LATEST]abc", get_remaining_time_in_millis=lambda: 900_000)


def test_create_migrates_sets_the_password_and_completes_the_app_secret(aws, cfn, fresh_db, admin_conn):
    props = _stack(fresh_db)
    out = migrate_app.handler(_event("Create", cfn, props), CONTEXT)

    (response,) = cfn.responses
    assert response["Status"] == "SUCCESS", response["Reason"]
    assert response["PhysicalResourceId"] == migrate_app.PHYSICAL_ID
    versions = [BASELINE_VERSION, *(m.version for m in discover())]  # a new database starts at the baseline
    latest = max(versions)
    assert response["Data"] == out["Data"] == {
        "MigrationsApplied": ",".join(map(str, versions)), "SchemaVersion": str(latest)}
    fresh_url = admin_conn.info.dsn.replace(admin_conn.info.dbname, fresh_db["dbname"])
    with psycopg.connect(fresh_url) as conn:
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (latest,)
        assert conn.execute("SELECT to_regclass('memories') IS NOT NULL").fetchone() == (True,)

    secret = json.loads(_secrets().get_secret_value(SecretId=props["AppSecretArn"])["SecretString"])
    assert secret["host"] == props["ProxyHost"] and secret["port"] == 5432
    assert secret["dbname"] == fresh_db["dbname"] and secret["sslmode"] == "prefer"
    verifier, can_login = admin_conn.execute(
        "SELECT rolpassword, rolcanlogin FROM pg_authid WHERE rolname = %s", (fresh_db["role"],)).fetchone()
    assert can_login and _scram_matches(verifier, secret["password"])
    assert not _scram_matches(verifier, secret["password"] + "x")

    # the functions' view: DATABASE_URL_SECRET is this secret; its URL reaches the database
    with psycopg.connect(database_url_from_secret(json.dumps(secret)), connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (
            fresh_db["role"], fresh_db["dbname"])


def test_a_second_deploy_applies_nothing_and_leaves_the_secret_alone(aws, cfn, fresh_db):
    props = _stack(fresh_db)
    migrate_app.handler(_event("Create", cfn, props), CONTEXT)
    versions = _secrets().list_secret_version_ids(SecretId=props["AppSecretArn"])["Versions"]
    migrate_app.handler(_event("Update", cfn, {**props, "SharedLayerVersion": "v2"}, migrate_app.PHYSICAL_ID),
                        CONTEXT)
    assert cfn.responses[-1]["Status"] == "SUCCESS"
    assert cfn.responses[-1]["Data"]["MigrationsApplied"] == "none"
    assert _secrets().list_secret_version_ids(SecretId=props["AppSecretArn"])["Versions"] == versions


def test_failures_answer_failed_without_the_secret(aws, cfn, fresh_db):
    props = _stack(fresh_db)
    _secrets().put_secret_value(SecretId=props["AppSecretArn"],
                                SecretString=json.dumps({"username": fresh_db["role"]}))  # no password
    migrate_app.handler(_event("Create", cfn, props), CONTEXT)
    failed = cfn.responses[-1]
    assert failed["Status"] == "FAILED"
    assert "username and password" in failed["Reason"]

    migrate_app.handler(_event("Create", cfn, {**props, "ClusterHost": ""}), CONTEXT)
    assert cfn.responses[-1]["Status"] == "FAILED"
    assert "ClusterHost" in cfn.responses[-1]["Reason"]

    wrong_db = {**props, "DatabaseName": "no_such_database_" + uuid.uuid4().hex[:6]}
    migrate_app.handler(_event("Create", cfn, wrong_db), CONTEXT)
    assert cfn.responses[-1]["Status"] == "FAILED"
    assert "master-pw" not in json.dumps(cfn.responses)


def test_delete_leaves_the_database_alone(aws, cfn, fresh_db, admin_conn):
    props = _stack(fresh_db)
    migrate_app.handler(_event("Delete", cfn, props, migrate_app.PHYSICAL_ID), CONTEXT)
    assert cfn.responses[-1]["Status"] == "SUCCESS"
    assert admin_conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (fresh_db["dbname"],)).fetchone()


def test_a_hanging_provisioning_is_answered_failed_before_the_function_times_out(aws, cfn, fresh_db, monkeypatch):
    """The database accepts the connection and never answers (libpq waits for ever): the
    handler still answers FAILED, REPLY_MARGIN_S before the function's timeout, instead of
    leaving CloudFormation to wait its hour."""
    silent = socket.create_server(("127.0.0.1", 0))  # the kernel accepts; nobody ever answers
    try:
        props = {**_stack(fresh_db), "ClusterHost": "127.0.0.1", "Port": str(silent.getsockname()[1])}
        monkeypatch.setattr(migrate_app, "REPLY_MARGIN_S", 899.0)  # the function "times out" in 1 s
        out = migrate_app.handler(_event("Create", cfn, props), CONTEXT)
        (response,) = cfn.responses
        assert out["Status"] == response["Status"] == "FAILED"
        assert response["Reason"].startswith("Create did not finish before the function's timeout")
        assert response["RequestId"] and response["LogicalResourceId"] == "DatabaseSchema"
    finally:
        silent.close()  # the worker's connection fails and its thread ends
