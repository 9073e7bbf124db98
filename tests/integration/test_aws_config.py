"""Configuration from AWS, as the deployed stack provides it -- with moto for the AWS APIs
(Secrets Manager, SSM, Lambda) and the real PostgreSQL behind them.

* the database URL and service key from Secrets Manager (what the template's
  ``DATABASE_URL_SECRET`` / ``MEMORY_API_KEY_SECRET`` point at), through the real handlers;
* the template's SSM-typed parameter (``RedisUrl``) resolved like CloudFormation does;
* the template's function definitions accepted by the Lambda API (runtime, handler, memory,
  timeout, environment).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import boto3
import pytest

from coda_memory import runtime
from local.template import DEFAULT_TEMPLATE, load
from tests.conftest import AWS_REGION as REGION
from tests.dbrows import insert_memory


@pytest.fixture()
def clean_settings(monkeypatch):
    from aws_lambda_powertools.utilities import parameters

    from coda_memory import runtime

    for name in ("DATABASE_URL", "MEMORY_API_KEY", "DATABASE_URL_SECRET", "MEMORY_API_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    parameters.clear_caches()
    runtime.reset()
    yield
    parameters.clear_caches()
    runtime.reset()


def _secret(name: str, value: str) -> str:
    return boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name=name, SecretString=value)["ARN"]


# --- Secrets Manager ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["plain", "json-url", "rds-json"])
def test_database_url_from_secrets_manager(aws, clean_settings, monkeypatch, postgres, shape):
    from coda_memory.aws_secrets import database_url
    from coda_memory.config import get_settings

    url = postgres.app_url
    value = {"plain": url, "json-url": json.dumps({"url": url}),
             "rds-json": json.dumps({"username": "coda_app", "password": "pw", "host": "db.internal",
                                     "port": 5432, "dbname": "coda_memory"})}[shape]
    monkeypatch.setenv("DATABASE_URL", "")  # what the template sets in AWS
    monkeypatch.setenv("DATABASE_URL_SECRET", _secret(f"db-{shape}", value))
    resolved = database_url(get_settings())
    if shape == "rds-json":
        assert resolved == "postgresql://coda_app:pw@db.internal:5432/coda_memory"
    else:
        assert resolved == url


def test_scheduled_job_runs_with_the_database_url_from_its_secret(aws, clean_settings, monkeypatch,
                                                                  postgres, admin_conn):
    from functions.jobs import app

    user = f"aws-{uuid.uuid4().hex[:10]}"
    insert_memory(admin_conn, user, "x", deleted=True, deleted_at=datetime.now(UTC) - timedelta(days=90))
    monkeypatch.setenv("DATABASE_URL_SECRET", _secret("coda/db", postgres.app_url))
    runtime.reset()
    try:
        out = app.retention_purge_handler(
            {"source": "aws.events"},
            SimpleNamespace(aws_request_id="r1", get_remaining_time_in_millis=lambda: 60_000))
    finally:
        runtime.reset()
    assert out["complete"] is True
    assert admin_conn.execute("SELECT count(*) FROM memories WHERE user_id=%s", (user,)).fetchone()[0] == 0


def test_api_handlers_take_database_url_and_service_key_from_secrets(aws, clean_settings, monkeypatch,
                                                                     postgres, redis_server):
    """The deployed configuration: no DATABASE_URL / MEMORY_API_KEY in the environment, only the
    secrets' ARNs (the service key secret is also the API Gateway key's value)."""
    from functions.retrieve.app import handler
    from tests.apigw import invoke

    key = "svc-" + uuid.uuid4().hex
    monkeypatch.setenv("DATABASE_URL_SECRET", _secret("coda/db-url", postgres.app_url))
    monkeypatch.setenv("MEMORY_API_KEY_SECRET", _secret("coda/service-key", key))
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    ok = invoke(handler, "POST", "/search", body={"query": "q", "user_id": "aws-user", "top_k": 1}, api_key=key)
    assert ok.status == 200, ok.body
    denied = invoke(handler, "POST", "/search", body={"query": "q", "user_id": "u", "top_k": 1}, api_key="nope")
    assert denied.status == 401


def test_api_handlers_ignore_the_templates_empty_database_url(aws, clean_settings, monkeypatch,
                                                              postgres, redis_server):
    from functions.retrieve.app import handler
    from tests.apigw import invoke

    key = "svc-" + uuid.uuid4().hex
    monkeypatch.setenv("DATABASE_URL", "")
    monkeypatch.setenv("MEMORY_API_KEY", "")
    monkeypatch.setenv("MEMORY_DB_PROXY", "")  # the template's value with an existing database
    monkeypatch.setenv("DATABASE_URL_SECRET", _secret("coda/db-url-2", postgres.app_url))
    monkeypatch.setenv("MEMORY_API_KEY_SECRET", _secret("coda/service-key-2", key))
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    r = invoke(handler, "POST", "/search", body={"query": "q", "user_id": "aws-user", "top_k": 1}, api_key=key)
    assert r.status == 200, r.body


# --- SSM ----------------------------------------------------------------------------------------


def test_ssm_typed_template_parameters_resolve_like_cloudformation(aws):
    """CloudFormation resolves ``AWS::SSM::Parameter::Value<String>`` parameters from SSM at
    deploy time; the bootstrap step of docs/deploy.md creates them. Resolve them the same way."""
    import redis
    from samcli.yamlhelper import yaml_parse

    raw = yaml_parse(DEFAULT_TEMPLATE.read_text())
    ssm = boto3.client("ssm", region_name=REGION)
    ssm_params = {k: v for k, v in raw["Parameters"].items() if v["Type"].startswith("AWS::SSM::Parameter::Value")}
    assert set(ssm_params) == {"RedisUrl"}
    ssm.put_parameter(Name=ssm_params["RedisUrl"]["Default"], Type="String",
                      Value="rediss://master.coda.abc123.use1.cache.amazonaws.com:6379/0")
    for spec in ssm_params.values():
        value = ssm.get_parameter(Name=spec["Default"])["Parameter"]["Value"]
        client = redis.Redis.from_url(value)  # the URL the functions and the subscriber get
        assert client.connection_pool.connection_kwargs["host"].endswith("amazonaws.com")
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    assert parameters.get_parameter("/coda-memory/redis-url").startswith("rediss://")


# --- Lambda -------------------------------------------------------------------------------------


def test_template_functions_are_valid_lambda_configurations(aws):
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName="coda-fn", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
    lam = boto3.client("lambda", region_name=REGION)
    import io
    import zipfile

    template = load(DEFAULT_TEMPLATE)
    for spec in template.functions.values():
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for path in spec.code_dir.glob("*.py"):
                zf.write(path, path.name)
        env = {k: v for k, v in spec.environment.items() if v != ""}
        created = lam.create_function(
            FunctionName=spec.function_name, Runtime=spec.sam_function.runtime, Role=role,
            Handler=spec.handler, Code={"ZipFile": buf.getvalue()}, Timeout=spec.timeout_s,
            MemorySize=spec.memory_mb, Environment={"Variables": env}, Architectures=["x86_64"],
        )
        assert created["Runtime"] == "python3.12"
        assert 1 <= created["Timeout"] <= 900 and 128 <= created["MemorySize"] <= 10240
        assert sum(len(k) + len(v) for k, v in env.items()) < 4096  # Lambda's environment limit
    names = {f["FunctionName"] for f in lam.list_functions()["Functions"]}
    assert names == set(template.functions)
    # The subscriber invokes the ingest function with boto3's invoke: the same call works
    # against moto here and against the local runner's endpoint (tests/integration/test_local_runtime.py).
    resp = lam.invoke(FunctionName="IngestFunction", Payload=json.dumps({"kind": "ingest_events", "events": []}))
    assert resp["StatusCode"] == 200


def test_no_aws_credentials_leak_into_the_local_runner_env():
    from local.run import template_environment

    env = template_environment(load(DEFAULT_TEMPLATE))
    assert not [k for k in env if k.startswith("AWS_")]


# --- RDS: the created database's resources, with the template's properties ---------------------


def test_template_database_resources_are_accepted_by_the_rds_api(aws):
    """Aurora Serverless v2 cluster + writer, the generated app secret, RDS Proxy and its target
    group, created through the RDS API (moto) with the properties the template gives them; the
    custom resource's properties resolve from what these calls return."""
    from samcli.yamlhelper import yaml_parse

    from coda_memory.provision import Target, _json_secret

    raw = yaml_parse(DEFAULT_TEMPLATE.read_text())
    res, params = raw["Resources"], raw["Parameters"]
    ec2 = boto3.client("ec2", region_name=REGION)
    rds = boto3.client("rds", region_name=REGION)
    sm = boto3.client("secretsmanager", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24", AvailabilityZone=f"{REGION}{az}")
               ["Subnet"]["SubnetId"] for i, az in ((1, "a"), (2, "b"))]
    rds.create_db_subnet_group(DBSubnetGroupName="coda-db", SubnetIds=subnets,
                               DBSubnetGroupDescription=res["DatabaseSubnetGroup"]["Properties"]["DBSubnetGroupDescription"])

    c = res["DatabaseCluster"]["Properties"]
    cluster = rds.create_db_cluster(
        DBClusterIdentifier="coda-db", Engine=c["Engine"], EngineVersion=params["DatabaseEngineVersion"]["Default"],
        DatabaseName=c["DatabaseName"], MasterUsername=c["MasterUsername"],
        ManageMasterUserPassword=c["ManageMasterUserPassword"], StorageEncrypted=c["StorageEncrypted"],
        BackupRetentionPeriod=c["BackupRetentionPeriod"], DeletionProtection=c["DeletionProtection"],
        ServerlessV2ScalingConfiguration={"MinCapacity": float(params["DatabaseMinCapacity"]["Default"]),
                                          "MaxCapacity": float(params["DatabaseMaxCapacity"]["Default"])},
        DBSubnetGroupName="coda-db")["DBCluster"]
    assert cluster["ServerlessV2ScalingConfiguration"] == {"MinCapacity": 0.5, "MaxCapacity": 8.0}
    w = res["DatabaseWriter"]["Properties"]
    writer = rds.create_db_instance(DBInstanceIdentifier="coda-db-writer", DBClusterIdentifier="coda-db",
                                    DBInstanceClass=w["DBInstanceClass"], Engine=w["Engine"],
                                    PubliclyAccessible=w["PubliclyAccessible"])["DBInstance"]
    assert writer["DBInstanceClass"] == "db.serverless"

    gen = res["AppDatabaseSecret"]["Properties"]["GenerateSecretString"]
    password = sm.get_random_password(PasswordLength=gen["PasswordLength"],
                                      ExcludePunctuation=gen["ExcludePunctuation"])["RandomPassword"]
    app_secret = sm.create_secret(Name="coda-app", SecretString=json.dumps(
        {**json.loads(gen["SecretStringTemplate"]), gen["GenerateStringKey"]: password}))["ARN"]

    p = res["DatabaseProxy"]["Properties"]
    auth = [{**a, "SecretArn": app_secret} for a in p["Auth"]]
    proxy = rds.create_db_proxy(DBProxyName="coda-db", EngineFamily=p["EngineFamily"], Auth=auth,
                                RoleArn="arn:aws:iam::123456789012:role/coda-proxy", VpcSubnetIds=subnets,
                                RequireTLS=p["RequireTLS"], IdleClientTimeout=p["IdleClientTimeout"])["DBProxy"]
    tg = res["DatabaseProxyTargetGroup"]["Properties"]
    rds.register_db_proxy_targets(DBProxyName="coda-db", TargetGroupName=tg["TargetGroupName"],
                                  DBClusterIdentifiers=["coda-db"])
    pool = rds.modify_db_proxy_target_group(DBProxyName="coda-db", TargetGroupName=tg["TargetGroupName"],
                                            ConnectionPoolConfig=tg["ConnectionPoolConfigurationInfo"])
    assert pool["DBProxyTargetGroup"]["ConnectionPoolConfig"]["MaxConnectionsPercent"] == 90

    # DatabaseSchema's properties, resolved from the created resources: what the function gets
    target = Target.from_properties({
        "AdminSecretArn": cluster["MasterUserSecret"]["SecretArn"], "AppSecretArn": app_secret,
        "ClusterHost": cluster["Endpoint"], "ProxyHost": proxy["Endpoint"],
        "Port": res["DatabaseSchema"]["Properties"]["Port"],
        "DatabaseName": res["DatabaseSchema"]["Properties"]["DatabaseName"]})
    assert target.sslmode == "require" and target.dbname == "coda_memory"
    master = _json_secret(sm, target.admin_secret_id)  # the RDS-managed secret has the shape read
    assert _json_secret(sm, target.app_secret_id)["username"] == "coda_app"
    from psycopg.conninfo import conninfo_to_dict

    from coda_memory.provision import admin_url

    assert conninfo_to_dict(admin_url(target, master))["password"] == master["password"]  # quoted intact
