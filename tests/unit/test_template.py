"""infra/template.yaml, checked from the template itself: the API contract's routes (read by
SAM CLI's own providers, as `sam local start-api` and the local runner read them), schedules,
layers, the subscriber, secrets, network, alarms; and the linters pass."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from local.scheduler import next_fire
from local.template import DEFAULT_TEMPLATE, REPO_ROOT, load

JOB_FUNCTIONS = {
    "ArchivalFunction": "app.archival_handler",
    "QuotaResetFunction": "app.quota_reset_handler",
    "RetentionPurgeFunction": "app.retention_purge_handler",
    "ConsolidationFunction": "app.consolidation_handler",
}
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def tpl():
    return load(DEFAULT_TEMPLATE)


@pytest.fixture(scope="module")
def raw() -> dict:
    from samcli.yamlhelper import yaml_parse

    return yaml_parse(DEFAULT_TEMPLATE.read_text())


def _resources(raw: dict, type_: str) -> dict:
    return {k: v for k, v in raw["Resources"].items() if v["Type"] == type_}


def _fastapi_routes(handler_module: str) -> set[tuple[str, str]]:
    import importlib

    app = importlib.import_module(handler_module).app
    return {(m, re.sub(r"\{\w+\}", "{}", r.path)) for r in app.routes for m in getattr(r, "methods", ())
            if m not in ("HEAD", "OPTIONS") and not r.path.startswith(("/openapi", "/docs", "/redoc"))}


def test_each_function_serves_exactly_the_routes_the_template_gives_it(tpl):
    """The template is the route table: every route it sends to a function is one that
    function's app serves, and the app serves nothing the template does not route to it."""
    assert all(r.event_type == "Api" for r in tpl.api.routes)  # REST (v1 proxy events)
    by_function: dict[str, set[tuple[str, str]]] = {}
    static = {(r.method, r.path) for r in tpl.open_routes()}
    for route in tpl.routes:
        if (route.method, route.path) in static:
            continue  # the console's files (test_console_function.py)
        by_function.setdefault(route.function, set()).add((route.method, re.sub(r"\{\w+\}", "{}", route.path)))
    assert {"IngestFunction", "RetrieveFunction"} <= set(by_function)
    for function, routes in by_function.items():
        module = tpl.functions[function].dotted_module
        assert module is not None
        assert _fastapi_routes(module) == routes, function


def test_api_requires_a_key_with_usage_plan_throttling_and_access_logs(raw, tpl):
    assert tpl.api_key_required()
    (api_id, api), = _resources(raw, "AWS::Serverless::Api").items()
    props = api["Properties"]
    assert props["Auth"]["ApiKeyRequired"] is True
    assert props["AccessLogSetting"]["DestinationArn"]
    assert "$context.requestId" in props["AccessLogSetting"]["Format"]
    (setting,) = props["MethodSettings"]
    assert {"ThrottlingRateLimit", "ThrottlingBurstLimit"} <= set(setting)
    (plan,) = _resources(raw, "AWS::ApiGateway::UsagePlan").values()
    assert plan["Properties"]["ApiStages"][0]["ApiId"] == {"Ref": api_id}
    assert {"RateLimit", "BurstLimit"} <= set(plan["Properties"]["Throttle"])
    assert plan["Properties"]["Quota"]["Period"] == "DAY"
    (key,) = _resources(raw, "AWS::ApiGateway::ApiKey").values()
    assert "resolve:secretsmanager" in str(key["Properties"]["Value"])  # the service key's value
    assert _resources(raw, "AWS::ApiGateway::UsagePlanKey")


def test_functions_runtime_handlers_and_code(tpl, raw):
    assert raw["Globals"]["Function"]["Runtime"] == "python3.12"
    expected = {"IngestFunction": "app.handler", "RetrieveFunction": "app.handler", "McpFunction": "app.handler",
                **JOB_FUNCTIONS, "AccessFoldFunction": "app.access_fold_handler", "MigrationFunction": "app.handler",
                "ConsoleFunction": "app.handler"}
    assert {k: v.handler for k, v in tpl.functions.items()} == expected
    assert tpl.functions["MigrationFunction"].module_file == REPO_ROOT / "functions" / "migrate" / "app.py"
    for spec in tpl.functions.values():
        assert spec.sam_function.runtime == "python3.12"
    for name in ("IngestFunction", "RetrieveFunction", "McpFunction"):
        spec = tpl.functions[name]
        assert spec.timeout_s <= 29  # API Gateway's integration limit
        assert spec.memory_mb >= 1024  # CPU share for the ONNX model
        assert spec.dotted_module == f"functions.{name[:-8].lower()}.app"
    for name in JOB_FUNCTIONS:
        assert tpl.functions[name].module_file == REPO_ROOT / "functions" / "jobs" / "app.py"
        assert tpl.functions[name].module_file.is_file()


def test_concurrency_is_parameterised(raw):
    params = raw["Parameters"]
    for name in ("IngestReservedConcurrency", "RetrieveReservedConcurrency", "RetrieveProvisionedConcurrency"):
        assert params[name]["Type"] == "Number"
    fns = raw["Resources"]
    assert "Fn::If" in fns["IngestFunction"]["Properties"]["ReservedConcurrentExecutions"]
    assert "Fn::If" in fns["RetrieveFunction"]["Properties"]["ProvisionedConcurrencyConfig"]


def test_both_layers_on_every_function_and_buildable_with_make(raw):
    layers = _resources(raw, "AWS::Serverless::LayerVersion")
    assert set(layers) == {"SharedLayer", "ModelLayer"}
    assert raw["Globals"]["Function"]["Layers"] == [{"Ref": "SharedLayer"}, {"Ref": "ModelLayer"}]
    for logical_id, layer in layers.items():
        assert layer["Metadata"]["BuildMethod"] == "makefile"
        assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
        content = (DEFAULT_TEMPLATE.parent / layer["Properties"]["ContentUri"]).resolve()
        makefile = (content / "Makefile").read_text()
        assert re.search(rf"^build-{logical_id}:", makefile, re.M), f"{content}/Makefile lacks build-{logical_id}"
    model_make = (REPO_ROOT / "layers/model/sam/Makefile").read_text()
    assert "build/model" in model_make and "LIMIT_MB" in model_make
    assert "src/coda_memory" in (REPO_ROOT / "layers/shared/Makefile").read_text()


def _requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):  # -c: the lock
            names.add(re.split(r"[\[<>=!~ ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def test_layers_cover_every_runtime_dependency():
    deps = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = {re.split(r"[\[<>=!~ ]", d, maxsplit=1)[0].lower().replace("_", "-") for d in deps}
    provided = (_requirement_names(REPO_ROOT / "layers/shared/requirements.txt")
                | _requirement_names(REPO_ROOT / "layers/model/sam/requirements.txt")
                | {"boto3"})  # part of the Lambda python3.12 runtime
    assert wanted <= provided, f"not in any layer: {sorted(wanted - provided)}"


def test_three_daily_schedules_with_failure_destinations(tpl, raw):
    schedules = {s.function: s for s in tpl.schedules}
    assert set(schedules) == {*JOB_FUNCTIONS, "AccessFoldFunction"}
    # the access statistics counted in Redis reach the database within a minute
    fold = schedules.pop("AccessFoldFunction")
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert next_fire(fold.expression, next_fire(fold.expression, now, now), now) - next_fire(
        fold.expression, now, now) == timedelta(minutes=1)
    assert raw["Resources"]["AccessFoldFunction"]["Properties"]["ReservedConcurrentExecutions"] == 1
    assert schedules["QuotaResetFunction"].expression == "cron(0 0 * * ? *)"  # UTC midnight
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    for s in schedules.values():
        assert s.enabled
        first = next_fire(s.expression, now, now)
        second = next_fire(s.expression, first, now)
        assert second - first == timedelta(days=1), s  # daily
    queue = {"Fn::GetAtt": ["JobsDeadLetterQueue", "Arn"]}
    for name in JOB_FUNCTIONS:
        props = raw["Resources"][name]["Properties"]
        assert props["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]["Destination"] == queue
        (event,) = props["Events"].values()
        assert event["Type"] == "Schedule"
        assert event["Properties"]["DeadLetterConfig"]["Arn"] == queue
        assert props["ReservedConcurrentExecutions"] == 1  # never two runs at once
    env = raw["Globals"]["Function"]["Environment"]["Variables"]
    for var in ("MEMORY_ARCHIVE_AFTER_DAYS", "MEMORY_ARCHIVE_MAX_ACCESS_COUNT", "MEMORY_PURGE_AFTER_DAYS",
                "MEMORY_JOB_BATCH_SIZE"):
        assert var in env
        from coda_memory.config import Settings

        assert var.removeprefix("MEMORY_").lower() in Settings.model_fields


def test_subscriber_runs_on_fargate_and_may_invoke_ingest(raw):
    (task,) = _resources(raw, "AWS::ECS::TaskDefinition").values()
    assert task["Properties"]["RequiresCompatibilities"] == ["FARGATE"]
    assert task["Properties"]["NetworkMode"] == "awsvpc"
    (container,) = task["Properties"]["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["INGEST_FUNCTION_NAME"] == {"Ref": "IngestFunction.Alias"}
    assert "REDIS_URL" in env
    (service,) = _resources(raw, "AWS::ECS::Service").values()
    assert service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"
    role = raw["Resources"][task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]]
    statements = [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert any(s["Action"] == "lambda:InvokeFunction"
               and {"Fn::GetAtt": ["IngestFunction", "Arn"]} in s["Resource"] for s in statements)


def test_secrets_and_network(raw):
    params = raw["Parameters"]
    assert params["RedisUrl"]["Type"] == "AWS::SSM::Parameter::Value<String>"
    assert params["PrivateSubnetIds"]["Type"] == "List<AWS::EC2::Subnet::Id>"
    env = raw["Globals"]["Function"]["Environment"]["Variables"]
    assert env["DATABASE_URL_SECRET"] == {
        "Fn::If": ["CreateDb", {"Ref": "AppDatabaseSecret"}, {"Ref": "DatabaseUrlSecretArn"}]}
    assert "MEMORY_API_KEY_SECRET" in env
    assert env["DATABASE_URL"] == "" and env["MEMORY_API_KEY"] == ""  # set only locally (env.json)
    assert raw["Globals"]["Function"]["VpcConfig"]["SubnetIds"] == {"Ref": "PrivateSubnetIds"}
    for ingress in _resources(raw, "AWS::EC2::SecurityGroupIngress").values():
        assert "CidrIp" not in ingress["Properties"]  # no public database or Redis port
        assert ingress["Properties"]["SourceSecurityGroupId"] == {"Ref": "ServiceSecurityGroup"}
    for group in _resources(raw, "AWS::EC2::SecurityGroup").values():
        for rule in group["Properties"].get("SecurityGroupIngress", []):
            assert "CidrIp" not in rule and "SourceSecurityGroupId" in rule


def test_alarms_and_dashboard(raw):
    alarms = _resources(raw, "AWS::CloudWatch::Alarm").values()
    metrics = {(a["Properties"]["Namespace"], a["Properties"]["MetricName"]) for a in alarms}
    assert ("AWS/ApiGateway", "5XXError") in metrics
    assert ("AWS/Lambda", "Throttles") in metrics
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible") in metrics
    assert any(a["Properties"].get("ExtendedStatistic") == "p95" for a in alarms)
    assert _resources(raw, "AWS::CloudWatch::Dashboard")


def test_cfn_lint_with_serverless_rules_passes():
    # .cfnlintrc appends the cfn-lint-serverless rules (a dev dependency).
    pytest.importorskip("cfn_lint_serverless", reason="pip install cfn-lint-serverless (dev extra)")
    proc = subprocess.run([str(VENV_BIN / "cfn-lint")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cfn_lint_serverless.rules" in (REPO_ROOT / ".cfnlintrc").read_text()


def test_sam_validate_lint_passes():
    proc = subprocess.run(
        [str(VENV_BIN / "sam"), "validate", "--lint", "--template-file", str(DEFAULT_TEMPLATE)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is a valid SAM Template" in proc.stdout + proc.stderr


# --- the created database (CreateDatabase=true) and SnapStart ---------------------------------

DB_RESOURCES = {
    "DatabaseSubnetGroup", "ProxySecurityGroup", "MigrationSecurityGroup", "DatabaseClusterSecurityGroup",
    "DatabaseCluster", "DatabaseWriter", "AppDatabaseSecret", "DatabaseProxyRole", "DatabaseProxy",
    "DatabaseProxyTargetGroup", "MigrationFunction", "MigrationLogGroup", "DatabaseSchema",
}


def test_database_choice_is_one_condition_and_the_existing_path_is_unchanged(raw):
    params, res = raw["Parameters"], raw["Resources"]
    assert params["CreateDatabase"]["Default"] == "false"  # existing deployments keep their database
    assert raw["Conditions"]["CreateDb"] == {"Fn::Equals": [{"Ref": "CreateDatabase"}, "true"]}
    assert {k for k, v in res.items() if v.get("Condition") == "CreateDb"} == DB_RESOURCES
    assert res["DatabaseIngressFromServices"]["Condition"] == "UseExistingDb"
    (rule,) = raw["Rules"].values()  # the existing path still needs its secret and security group
    asserted = str(rule["Assertions"])
    assert "DatabaseUrlSecretArn" in asserted and "DatabaseSecurityGroupId" in asserted
    for name, fn in res.items():  # every function may read whichever connection secret is in use
        # (the migration function reads the master secret; the console's reads none)
        if fn["Type"] == "AWS::Serverless::Function" and name not in ("MigrationFunction", "ConsoleFunction"):
            arns = [p["AWSSecretsManagerGetSecretValuePolicy"]["SecretArn"] for p in fn["Properties"]["Policies"]
                    if "AWSSecretsManagerGetSecretValuePolicy" in p]
            assert {"Fn::If": ["CreateDb", {"Ref": "AppDatabaseSecret"}, {"Ref": "DatabaseUrlSecretArn"}]} in arns


def test_aurora_serverless_v2_postgresql_16_in_private_subnets_with_generated_credentials(raw):
    params, res = raw["Parameters"], raw["Resources"]
    cluster = res["DatabaseCluster"]["Properties"]
    assert cluster["Engine"] == "aurora-postgresql"
    assert int(params["DatabaseEngineVersion"]["Default"].split(".")[0]) >= 16
    assert cluster["ServerlessV2ScalingConfiguration"] == {
        "MinCapacity": {"Ref": "DatabaseMinCapacity"}, "MaxCapacity": {"Ref": "DatabaseMaxCapacity"}}
    assert cluster["ManageMasterUserPassword"] is True and "MasterUserPassword" not in cluster
    assert cluster["StorageEncrypted"] is True
    assert res["DatabaseCluster"]["DeletionPolicy"] == "Snapshot"
    assert res["DatabaseWriter"]["Properties"]["DBInstanceClass"] == "db.serverless"
    assert res["DatabaseWriter"]["Properties"]["PubliclyAccessible"] is False
    assert res["DatabaseSubnetGroup"]["Properties"]["SubnetIds"] == {"Ref": "PrivateSubnetIds"}
    generated = res["AppDatabaseSecret"]["Properties"]["GenerateSecretString"]
    assert generated["GenerateStringKey"] == "password" and '"coda_app"' in generated["SecretStringTemplate"]


def test_functions_reach_the_cluster_only_through_the_proxy(raw):
    res = raw["Resources"]
    proxy = res["DatabaseProxy"]["Properties"]
    assert proxy["EngineFamily"] == "POSTGRESQL" and proxy["RequireTLS"] is True
    assert proxy["Auth"][0]["SecretArn"] == {"Ref": "AppDatabaseSecret"}
    role = res[proxy["RoleArn"]["Fn::GetAtt"][0]]["Properties"]
    (statement,) = role["Policies"][0]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "secretsmanager:GetSecretValue"
    assert statement["Resource"] == {"Ref": "AppDatabaseSecret"}
    sources = {r["SourceSecurityGroupId"]["Ref"]
               for r in res["DatabaseClusterSecurityGroup"]["Properties"]["SecurityGroupIngress"]}
    assert sources == {"ProxySecurityGroup", "MigrationSecurityGroup"}  # not ServiceSecurityGroup
    (into_proxy,) = res["ProxySecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert into_proxy["SourceSecurityGroupId"] == {"Ref": "ServiceSecurityGroup"}
    target = res["DatabaseProxyTargetGroup"]["Properties"]
    assert target["DBClusterIdentifiers"] == [{"Ref": "DatabaseCluster"}]


def test_schema_is_applied_on_deploy_by_a_custom_resource(raw):
    res = raw["Resources"]
    schema = res["DatabaseSchema"]
    assert schema["Type"].startswith("Custom::")
    props = schema["Properties"]
    assert props["ServiceToken"] == {"Fn::GetAtt": ["MigrationFunction", "Arn"]}
    assert props["SharedLayerVersion"] == {"Ref": "SharedLayer"}  # re-run whenever the migrations may change
    assert props["ProxyHost"] == {"Fn::GetAtt": ["DatabaseProxy", "Endpoint"]}
    assert props["ClusterHost"] == {"Fn::GetAtt": ["DatabaseCluster", "Endpoint.Address"]}
    assert "DatabaseWriter" in schema["DependsOn"]
    from coda_memory.provision import Target
    from functions.migrate.app import handler

    assert callable(handler)
    Target.from_properties(props)  # the handler accepts exactly these properties
    fn = res["MigrationFunction"]["Properties"]
    assert fn["VpcConfig"]["SecurityGroupIds"] == [{"Ref": "MigrationSecurityGroup"}]


def test_snapstart_on_the_api_functions(raw):
    res = raw["Resources"]
    assert raw["Globals"]["Function"]["Runtime"] >= "python3.12"  # SnapStart for Python needs 3.12+
    assert res["IngestFunction"]["Properties"]["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    # Lambda refuses SnapStart together with provisioned concurrency
    assert res["RetrieveFunction"]["Properties"]["SnapStart"] == {
        "ApplyOn": {"Fn::If": ["HasRetrieveProvisioned", "None", "PublishedVersions"]}}
    assert res["McpFunction"]["Properties"]["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    for name in ("IngestFunction", "RetrieveFunction", "McpFunction"):
        assert res[name]["Properties"]["AutoPublishAlias"] == "live"  # SnapStart applies to versions
    assert "coda_memory.api.lambda_handler" in (REPO_ROOT / "functions/ingest/app.py").read_text()
