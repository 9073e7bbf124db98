"""Deploy-time provisioning of a database the stack created (``CreateDatabase=true``): apply
the migrations as the master user, set the service role's password from its generated secret,
and complete that secret so that it is the functions' connection secret.

Run by the ``DatabaseSchema`` custom resource through ``functions/migrate``. Idempotent: every
deploy that changes the shared layer runs it again; applied migrations are skipped, the password
is set to the secret's current value, and the secret is written only when it changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from .db.migrate import apply_migrations
from .db.roles import grant_login, owner_url


class SecretStore(Protocol):
    """The two Secrets Manager calls used (a boto3 ``secretsmanager`` client)."""

    def get_secret_value(self, *, SecretId: str) -> dict[str, Any]: ...

    def put_secret_value(self, *, SecretId: str, SecretString: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Target:
    """Where the database is, as the custom resource's properties say."""

    admin_secret_id: str  # RDS-managed master secret: {"username", "password"}
    app_secret_id: str  # generated: {"username": "coda_app", "password"}; completed here
    cluster_host: str  # the writer endpoint (the migration connects directly)
    proxy_host: str  # what the functions connect to
    port: int = 5432
    dbname: str = "coda_memory"
    sslmode: str = "require"

    @classmethod
    def from_properties(cls, props: dict[str, Any]) -> Target:
        missing = [k for k in ("AdminSecretArn", "AppSecretArn", "ClusterHost", "ProxyHost") if not props.get(k)]
        if missing:
            raise ValueError(f"custom resource properties missing: {', '.join(missing)}")
        return cls(
            admin_secret_id=str(props["AdminSecretArn"]), app_secret_id=str(props["AppSecretArn"]),
            cluster_host=str(props["ClusterHost"]), proxy_host=str(props["ProxyHost"]),
            port=int(props.get("Port") or 5432), dbname=str(props.get("DatabaseName") or "coda_memory"),
            sslmode=str(props.get("SslMode") or "require"),
        )


def _json_secret(store: SecretStore, secret_id: str) -> dict[str, Any]:
    data = json.loads(store.get_secret_value(SecretId=secret_id)["SecretString"])
    if not isinstance(data, dict) or not data.get("username") or not data.get("password"):
        raise ValueError(f"secret {secret_id} is not JSON with username and password")
    return data


def admin_url(target: Target, admin: dict[str, Any]) -> str:
    """Connection string of the master user on the writer (libpq quoting, any host form)."""
    return owner_url(host=target.cluster_host, port=target.port, dbname=target.dbname,
                     user=str(admin["username"]), password=str(admin["password"]), sslmode=target.sslmode)


def provision(target: Target, store: SecretStore, *, url: str | None = None) -> dict[str, Any]:
    """Migrate, set the app role's password, complete the app secret. ``url`` overrides the
    admin URL built from the master secret (tests, or a one-off run from a bastion)."""
    url = url or admin_url(target, _json_secret(store, target.admin_secret_id))
    applied = apply_migrations(url)
    app = _json_secret(store, target.app_secret_id)
    schema_version = grant_login(url, str(app["username"]), str(app["password"]))
    wanted = {**app, "host": target.proxy_host, "port": target.port, "dbname": target.dbname,
              "sslmode": target.sslmode}
    if wanted != app:
        store.put_secret_value(SecretId=target.app_secret_id, SecretString=json.dumps(wanted))
    return {"MigrationsApplied": ",".join(str(v) for v in applied) or "none",
            "SchemaVersion": str(schema_version)}
