"""deploy/: the compose file against the compose specification and the Kubernetes manifests
against the Kubernetes schemas (offline: check-jsonschema's bundled compose schema,
kubernetes-validate's bundled schemas), Prometheus' configuration and rules with promtool, the
collector's and Grafana's configuration by their structure; and what the files must agree on
with the code: every service and lane runs, each gets exactly the secrets it reads in
deployment mode, the topic plan covers every topic, the audit database's service role may only
read and add rows."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

import devstack as local_stack
from contracts import topics
from devstack import postgres as local_postgres
from ocsea.runner import SERVICES, prepare_local
from ocsea.runtime.kafka import ensure_topics, project_topics
from ocsea.runtime.settings import Settings
from ocsea.topic_plan import TopicSpec, apply_plan, load_plan
from services.audit.adapters.ledger import Ledger
from services.audit.adapters.schema import SchemaMissingError, expect_schema
from services.audit.entrypoints.schema import create_schema
from testkit.system import free_port
from testkit.waiting import wait_for

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
TOOLS = Path(sys.executable).parent
Doc = dict[str, Any]


def run(*argv: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, check=False
    )


def compose() -> Doc:
    loaded: Doc = yaml.safe_load(COMPOSE.read_text())
    return loaded


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def manifests() -> list[Doc]:
    return [d for p in manifest_files() for d in yaml.safe_load_all(p.read_text()) if d]


def of_kind(kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] == kind}


def ocsea_services() -> dict[str, Doc]:
    """The compose services that run an ocsea service (`ocsea serve-one …`)."""
    return {
        name: spec
        for name, spec in compose()["services"].items()
        if spec.get("command", [None])[0] == "serve-one"
    }


def lane_of(argv: list[str]) -> str:
    return argv[argv.index("--lanes") + 1] if "--lanes" in argv else "all"


def port_of_healthcheck(spec: Doc) -> int:
    found = re.search(r"127\.0\.0\.1:(\d+)/readyz", " ".join(spec["healthcheck"]["test"]))
    assert found, spec["healthcheck"]
    return int(found.group(1))


def container(deployment: Doc) -> Doc:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    result: Doc = only
    return result


# -- the validators -----------------------------------------------------------------------------


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return run(TOOLS / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", path)


def check_kubernetes(*paths: Path) -> subprocess.CompletedProcess[str]:
    return run(TOOLS / "kubernetes-validate", "--strict", "--quiet", *paths)


def test_the_compose_file_meets_the_compose_specification() -> None:
    done = check_compose(COMPOSE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_compose_check_catches_a_key_the_specification_lacks(tmp_path: Path) -> None:
    broken = compose()
    broken["services"]["intake"]["replicaz"] = 2
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    done = check_compose(path)
    assert done.returncode != 0
    assert "replicaz" in done.stdout + done.stderr


def test_the_kubernetes_manifests_meet_the_kubernetes_schemas() -> None:
    done = check_kubernetes(*manifest_files())
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_kubernetes_check_catches_a_wrong_field(tmp_path: Path) -> None:
    broken = copy.deepcopy(of_kind("Deployment")["ocsea-intake"])
    broken["spec"]["replicas"] = "two"
    container(broken)["livenessProbe"]["httpGet"]["pathh"] = "/healthz"
    path = tmp_path / "intake.yaml"
    path.write_text(yaml.safe_dump(broken))
    done = check_kubernetes(path)
    assert done.returncode != 0
    assert "replicas" in done.stdout + done.stderr


def test_the_kustomization_applies_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in manifest_files())


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: install Debian's prometheus package (./dev does)"
    return found


def test_prometheus_loads_its_configuration_and_the_alert_rules() -> None:
    done = run(promtool(), "check", "config", DEPLOY / "prometheus" / "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    # `check config` loads the rule files too: the one the compose file mounts is among them.
    assert "alerts.yml" in done.stdout
    rules = run(promtool(), "check", "rules", DEPLOY / "prometheus" / "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    broken = tmp_path / "alerts.yml"
    broken.write_text("groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: rate(\n")
    assert run(promtool(), "check", "rules", broken).returncode != 0


def test_prometheus_scrapes_every_service_and_lane_the_compose_file_runs() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    scraped = {
        (name, sd["port"])
        for job in config["scrape_configs"]
        for sd in job.get("dns_sd_configs", [])
        for name in sd["names"]
    }
    wanted = {
        (name, port_of_healthcheck(spec))
        for name, spec in ocsea_services().items()
        if name != "console"  # pages for people: no /metrics
    }
    assert scraped == wanted


def test_the_collector_configuration_is_whole() -> None:
    """`otelcol-contrib validate` cannot be installed here (no Debian, PyPI or Go-proxy
    package of it): its rules are checked by structure instead."""
    config = yaml.safe_load((DEPLOY / "otel" / "collector.yaml").read_text())
    service = config["service"]
    for extension in service.get("extensions", []):
        assert extension in config["extensions"]
    assert service["pipelines"], "no pipeline"
    for name, pipeline in service["pipelines"].items():
        assert name.split("/")[0] in {"traces", "metrics", "logs"}
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in config[kind], f"{name}: {kind} {component} is not defined"
        # The memory limiter goes first, the batch processor last (the collector's advice).
        assert pipeline["processors"][0] == "memory_limiter"
        assert pipeline["processors"][-1] == "batch"
    # The services' OTLP endpoint (HTTP) is the collector's receiver.
    http = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    endpoint = ocsea_services()["intake"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert endpoint == f"http://otel-collector:{http.rsplit(':', 1)[1]}"
    # Traces go to the tracing backend the compose file runs.
    exporter = config["exporters"]["otlp/jaeger"]["endpoint"]
    assert exporter.split(":")[0] in compose()["services"]
    deleted = {a["key"] for a in config["processors"]["attributes/no-payloads"]["actions"]}
    assert {"messaging.message.body", "http.request.body"} <= deleted


def test_grafana_provisions_the_dashboard_and_its_data_sources() -> None:
    grafana = DEPLOY / "grafana"
    provider = yaml.safe_load((grafana / "provisioning/dashboards/dashboards.yml").read_text())
    [files] = provider["providers"]
    mounts = compose()["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{files['options']['path']}:ro" in mounts
    dashboard = json.loads((grafana / "dashboards" / "ocsea.json").read_text())
    assert dashboard["uid"]
    assert dashboard["title"]
    sources = yaml.safe_load((grafana / "provisioning/datasources/datasources.yml").read_text())
    uids = {s["uid"] for s in sources["datasources"]}

    def used(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            source = node.get("datasource")
            if isinstance(source, dict) and isinstance(source.get("uid"), str):
                yield source["uid"]
            for value in node.values():
                yield from used(value)
        elif isinstance(node, list):
            for value in node:
                yield from used(value)

    # Every data source the dashboard names is provisioned, built in, or a dashboard variable.
    built_in = {"grafana", "-- Grafana --", "-- Mixed --", "-- Dashboard --"}
    for uid in used(dashboard):
        assert uid in uids | built_in or uid.startswith("$"), uid


# -- the compose file and the code --------------------------------------------------------------


def test_compose_runs_every_service_and_each_lane_in_its_own_container() -> None:
    running = {
        (spec["command"][1], lane_of(spec["command"])): name
        for name, spec in ocsea_services().items()
    }
    for name, service in SERVICES.items():
        lanes = {"live", "bulk"} if service.bulk_lane else {"all"}
        assert {lane for svc, lane in running if svc == name} == lanes, name
    for (service, lane), name in running.items():
        env = ocsea_services()[name]["environment"]
        assert env["OCSEA_DEPLOYMENT"] == "true"
        if lane != "all":
            assert env["OCSEA_SERVE_LANES"] == lane, name
        port = port_of_healthcheck(ocsea_services()[name])
        assert port == SERVICES[service].port(Settings()), name
        if lane == "bulk":
            # Its probes and scrapes find it on the service's port, in a container of its own.
            assert env["OCSEA_BULK_LANE_PORT"] == str(port)
            assert "ports" not in ocsea_services()[name]


def test_the_audit_ledger_has_one_writer_and_a_role_that_cannot_create_tables() -> None:
    services = compose()["services"]
    audits = [n for n, s in ocsea_services().items() if s["command"][1] == "audit"]
    assert audits == ["audit"]
    assert services["audit"]["environment"]["OCSEA_AUDIT_DB_CREATE_SCHEMA"] == "false"
    assert "audit-schema" in services["audit"]["depends_on"]
    schema = services["audit-schema"]
    assert schema["entrypoint"] == ["python", "-m", "services.audit.entrypoints.schema"]
    assert schema["command"] == ["--grant-to", "ocsea_audit"]
    assert {s["target"] for s in schema["secrets"]} == {"OCSEA_AUDIT_DB_URL"}
    assert [s["source"] for s in schema["secrets"]] == ["audit_db_owner_url"]


def test_kafka_runs_in_kraft_mode_at_the_local_stacks_version_on_three_nodes() -> None:
    nodes = {n: s for n, s in compose()["services"].items() if n.startswith("kafka-")}
    nodes.pop("kafka-topics")
    assert len(nodes) == 3
    for spec in nodes.values():
        assert spec["image"] == f"apache/kafka:{local_stack.DEFAULT_KAFKA_VERSION}"
        env = spec["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == 2
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    voters = next(iter(nodes.values()))["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert len(voters.split(",")) == 3
    bootstrap = ocsea_services()["intake"]["environment"]["OCSEA_KAFKA_BOOTSTRAP"]
    assert {b.split(":")[0] for b in bootstrap.split(",")} == set(nodes)
    topics_job = compose()["services"]["kafka-topics"]
    argv = topics_job["entrypoint"] + topics_job["command"]
    assert argv == ["python", "-m", "ocsea.topic_plan", "deploy/kafka/topics.toml"]
    for spec in ocsea_services().values():
        assert spec["depends_on"]["kafka-topics"]["condition"] == "service_completed_successfully"


def pinned(image: str) -> bool:
    name, _, tag = image.partition("@")[0].rpartition(":")
    return "@sha256:" in image or (bool(name) and bool(tag) and tag != "latest" and "/" not in tag)


def test_every_image_is_pinned() -> None:
    images = [s["image"] for s in compose()["services"].values()]
    images += [
        c["image"]
        for d in manifests()
        if d["kind"] in {"Deployment", "Job"}
        for c in d["spec"]["template"]["spec"].get("initContainers", [])
        + d["spec"]["template"]["spec"]["containers"]
    ]
    images += re.findall(r"^FROM (\S+)", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    unpinned = [image for image in images if not pinned(image)]
    assert not unpinned
    assert not pinned("redis:latest")
    assert not pinned("redis")
    assert pinned("redis:7.4.2")


def test_ocsea_containers_run_unprivileged_on_a_read_only_root() -> None:
    for name, spec in ocsea_services().items():
        assert spec["read_only"] is True, name
        assert spec["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in spec["security_opt"], name
        assert not spec["user"].startswith("0"), name
        assert "/app/var" in spec["tmpfs"], name


def test_every_file_the_compose_file_mounts_is_there() -> None:
    spec = compose()
    for config in spec["configs"].values():
        assert (DEPLOY / config["file"]).is_file(), config
    for service in spec["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), volume
    for name in ("10-roles.sh",):
        assert os.access(DEPLOY / "postgres" / name, os.X_OK)


@pytest.fixture(scope="module")
def made_secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/make-secrets.sh's files, plus the deployment's own principals (none here)."""
    where = tmp_path_factory.mktemp("deploy") / "secrets"
    done = run("sh", DEPLOY / "make-secrets.sh", where)
    assert done.returncode == 0, done.stderr
    (where / "principals.json").write_text(json.dumps({"principals": []}))
    return where


def test_make_secrets_makes_every_secret_the_compose_file_names(made_secrets: Path) -> None:
    for name, secret in compose()["secrets"].items():
        assert (DEPLOY / secret["file"]).parent == DEPLOY / "secrets", name
        assert (made_secrets / Path(secret["file"]).name).is_file(), name
    assert len((made_secrets / "master.key").read_bytes()) == 32
    assert len((made_secrets / "matching.key").read_bytes()) == 32
    # Redis' own password and the one in the services' URL are the same one.
    password = (made_secrets / "redis-password").read_text()
    assert (made_secrets / "redis-auth.conf").read_text() == f"requirepass {password}\n"
    assert (made_secrets / "redis-url").read_text() == f"redis://:{password}@redis:6379/0"
    assert "include /run/secrets/redis-auth.conf" in (DEPLOY / "redis/redis.conf").read_text()
    # Run again, it keeps every key (a new one would make sealed data unreadable).
    before = {p.name: p.read_bytes() for p in made_secrets.iterdir()}
    assert run("sh", DEPLOY / "make-secrets.sh", made_secrets).returncode == 0
    assert {p.name: p.read_bytes() for p in made_secrets.iterdir()} == before


def test_secrets_are_never_committed() -> None:
    assert (DEPLOY / "secrets" / ".gitignore").read_text().split() == ["*", "!.gitignore"]
    assert not of_kind("Secret"), "Secret values belong out of band, never in the manifests"


def build_in_deployment_mode(
    monkeypatch: pytest.MonkeyPatch, service: str, env: dict[str, str], secrets_dir: Path
) -> FastAPI:
    """Build the service as its container would, from exactly `env` and `secrets_dir`."""
    for name in list(os.environ):
        if name.startswith("OCSEA_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OCSEA_VAR_DIR", str(secrets_dir.parent / "var"))
    settings = Settings(_secrets_dir=secrets_dir)
    assert settings.deployment
    return SERVICES[service].build(settings)


def compose_container(spec: Doc, made: Path, root: Path, only: set[str] | None = None) -> Doc:
    """`spec`'s environment with /run/secrets/ under `root`, and its secrets put there."""
    files = {name: Path(s["file"]).name for name, s in compose()["secrets"].items()}
    secrets = root / "run-secrets"
    secrets.mkdir(parents=True)
    for secret in spec["secrets"]:
        if only is None or secret["source"] in only:
            shutil.copy(made / files[secret["source"]], secrets / secret["target"])
    env = {
        name: str(value).replace("/run/secrets", str(secrets))
        for name, value in spec["environment"].items()
        if name.startswith("OCSEA_")
    }
    return {"env": env, "secrets": secrets}


@pytest.mark.parametrize("name", sorted(ocsea_services()))
def test_compose_gives_each_service_the_secrets_it_reads_and_no_other(
    name: str, made_secrets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = ocsea_services()[name]
    service = spec["command"][1]
    given = compose_container(spec, made_secrets, tmp_path / "all")
    build_in_deployment_mode(monkeypatch, service, given["env"], given["secrets"])
    # Each secret it is given is one it cannot start without.
    for left_out in {s["source"] for s in spec["secrets"]}:
        rest = {s["source"] for s in spec["secrets"]} - {left_out}
        partial = compose_container(spec, made_secrets, tmp_path / left_out, only=rest)
        with pytest.raises(Exception):  # noqa: B017, PT011 - a key error or a settings error
            build_in_deployment_mode(monkeypatch, service, partial["env"], partial["secrets"])


# -- the Kubernetes manifests and the code ------------------------------------------------------


def test_every_service_and_lane_has_a_deployment() -> None:
    running = {
        (c["args"][1], lane_of(c["args"])): name
        for name, d in of_kind("Deployment").items()
        if (c := container(d))["args"][0] == "serve-one"
    }
    for name, service in SERVICES.items():
        lanes = {"live", "bulk"} if service.bulk_lane else {"all"}
        assert {lane for svc, lane in running if svc == name} == lanes, name
    for (service, lane), name in running.items():
        c = container(of_kind("Deployment")[name])
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        port = SERVICES[service].port(Settings())
        assert c["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        if lane != "all":
            assert env["OCSEA_SERVE_LANES"] == lane
        if lane == "bulk":
            assert env["OCSEA_BULK_LANE_PORT"] == str(port)


def test_every_deployment_is_probed_bounded_and_restricted() -> None:
    for name, deployment in of_kind("Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod.get("initContainers", []) + pod["containers"]:
            context = c["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["runAsNonRoot"] is True, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert set(c["resources"]) == {"requests", "limits"}, name
            for bound in ("requests", "limits"):
                assert set(c["resources"][bound]) == {"cpu", "memory"}, name
        c = container(deployment)
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}, name
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}, name
        assert c["startupProbe"]["httpGet"]["path"] == "/healthz", name


def test_every_deployment_has_a_disruption_budget_and_the_ledger_one_writer() -> None:
    deployments, autoscalers = of_kind("Deployment"), of_kind("HorizontalPodAutoscaler")
    budgets = of_kind("PodDisruptionBudget")
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert budgets[name]["spec"]["selector"]["matchLabels"].items() <= labels.items()
        if container(deployment)["args"][1] == "audit":
            # One writer appends to one tree: one pod, never two at once, no autoscaler.
            assert deployment["spec"]["replicas"] == 1
            assert deployment["spec"]["strategy"] == {"type": "Recreate"}
            assert name not in autoscalers
            continue
        scaler = autoscalers[name]["spec"]
        target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert scaler["scaleTargetRef"] == target
        assert 1 <= scaler["minReplicas"] <= scaler["maxReplicas"]


def test_services_reach_the_live_pods_only() -> None:
    deployments = of_kind("Deployment")
    for name, service in of_kind("Service").items():
        selector = service["spec"]["selector"]
        [target] = [
            d
            for d in deployments.values()
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert lane_of(container(target)["args"]) != "bulk", name
        assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert not [n for n in deployments if n.endswith("-bulk") and n in of_kind("Service")]


def k8s_container_env(deployment: Doc) -> dict[str, str]:
    maps = of_kind("ConfigMap")
    c = container(deployment)
    env: dict[str, str] = {}
    for source in c["envFrom"]:
        env |= maps[source["configMapRef"]["name"]]["data"]
    env |= {e["name"]: e["value"] for e in c.get("env", [])}
    return env


K8S_SECRET_FILES = {
    "principals.json": "principals.json",
    "OCSEA_REDIS_URL": "redis-url",
    "master.key": "master.key",
    "matching.key": "matching.key",
    "audit-signing.key": "audit-signing.key",
    "OCSEA_AUDIT_DB_URL": "audit-db-url",
    "OCSEA_KEYSTORE_DB_URL": "keystore-db-url",
}


@pytest.mark.parametrize("name", sorted(of_kind("Deployment")))
def test_kubernetes_gives_each_pod_its_secrets_and_no_more_replicas_than_partitions(
    name: str, made_secrets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = of_kind("Deployment")[name]
    pod = deployment["spec"]["template"]["spec"]
    [mount] = [m for m in container(deployment)["volumeMounts"] if m["name"] == "secrets"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "secrets"]
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for source in volume["projected"]["sources"]:
        for item in source["secret"]["items"]:
            shutil.copy(made_secrets / K8S_SECRET_FILES[item["key"]], secrets / item["path"])
    env = {
        k: v.replace(mount["mountPath"], str(secrets))
        for k, v in k8s_container_env(deployment).items()
        if k.startswith("OCSEA_")
    }
    assert env["OCSEA_SECRETS_DIR"] == str(secrets)
    app = build_in_deployment_mode(monkeypatch, container(deployment)["args"][1], env, secrets)
    # The replicas of a consumer group share its topics' partitions: past the fewest
    # partitions among the topics this pod consumes, a replica would sit idle.
    context = getattr(app.state, "context", None)
    consumed = {t for c in (context.consumers if context else []) for t in c.topics}
    assert consumed or name == "ocsea-console"
    scaler = of_kind("HorizontalPodAutoscaler").get(name)
    if consumed and scaler:
        plan = load_plan(DEPLOY / "kafka" / "topics.toml")
        fewest = min(plan[topic].partitions for topic in consumed)
        assert scaler["spec"]["maxReplicas"] <= fewest, sorted(consumed)


def test_every_secret_the_manifests_use_is_in_the_guide() -> None:
    guide = (DEPLOY / "README.md").read_text()
    names: set[str] = set()
    for deployment in of_kind("Deployment").values():
        for volume in deployment["spec"]["template"]["spec"]["volumes"]:
            for source in volume.get("projected", {}).get("sources", []):
                names.add(source["secret"]["name"])
            if "secret" in volume:
                names.add(volume["secret"]["secretName"])
    assert "ocsea-audit-db-owner" in names
    for name in names:
        assert f"secret generic {name} " in guide, name


# -- topics -------------------------------------------------------------------------------------


def test_the_topic_plan_covers_exactly_the_topics_the_services_use() -> None:
    plan = load_plan(DEPLOY / "kafka" / "topics.toml")
    assert sorted(plan) == sorted(project_topics())


def test_every_topic_has_three_replicas_two_in_sync_and_room_to_scale() -> None:
    for name, spec in load_plan(DEPLOY / "kafka" / "topics.toml").items():
        assert spec.replication_factor == 3, name
        assert spec.config["min.insync.replicas"] == "2", name
        assert spec.config["unclean.leader.election.enable"] == "false", name
        assert spec.partitions >= 3, name
    plan = load_plan(DEPLOY / "kafka" / "topics.toml")
    for lane in topics.Lane:
        assert plan[topics.RECEIVED_BY_LANE[lane]].partitions >= 12
        assert plan[topics.TRIAGED_BY_LANE[lane]].partitions >= 12


@pytest.mark.integration
async def test_the_topic_plan_creates_configures_and_reports_on_a_real_broker(
    stack_env: dict[str, str],
) -> None:
    bootstrap = stack_env["OCSEA_KAFKA_BOOTSTRAP"]
    prefix = f"ocsea-test-plan-{uuid.uuid4().hex[:8]}"
    # One broker here: one replica, one in sync (the plan's 3 and 2 need a cluster).
    config = {"min.insync.replicas": "1", "retention.ms": "-1"}
    plan = {
        f"{prefix}.a": TopicSpec(partitions=4, replication_factor=1, config=config),
        f"{prefix}.b": TopicSpec(partitions=2, replication_factor=1, config=config),
    }
    try:
        checked = await apply_plan(bootstrap, plan, check_only=True)
        assert checked.matched == [f"{prefix}.a: missing", f"{prefix}.b: missing"]
        assert (await apply_plan(bootstrap, plan, check_only=True)).matched == checked.matched

        created = await apply_plan(bootstrap, plan)
        assert created.matched == [f"{prefix}.a: created", f"{prefix}.b: created"]
        assert not created.by_hand
        again = await apply_plan(bootstrap, plan)
        assert (again.matched, again.by_hand) == ([], [])

        # A config changed on the cluster is set back; a larger partition count is left to people.
        changed = {**plan, f"{prefix}.a": TopicSpec(partitions=8, replication_factor=1, config={})}
        drift = await apply_plan(bootstrap, changed)
        assert drift.matched == [f"{prefix}.a: config {config} set to {{}}"]
        assert drift.by_hand == [
            f"{prefix}.a: 4 partitions, the plan asks 8 "
            "(add them with producers stopped and consumers drained)"
        ]
        restored = await apply_plan(bootstrap, plan)
        assert restored.matched == [f"{prefix}.a: config {{}} set to {config}"]
        assert (await apply_plan(bootstrap, plan)).matched == []
    finally:
        await delete_topics(bootstrap, list(plan))


@pytest.mark.integration
async def test_checking_the_shipped_plan_reports_a_single_broker_without_changing_it(
    stack_env: dict[str, str],
) -> None:
    """The local stack's one broker holds one replica of each topic: checking the deployment's
    plan against it names the difference and leaves it be."""
    bootstrap = stack_env["OCSEA_KAFKA_BOOTSTRAP"]
    await ensure_topics(Settings(kafka_bootstrap=bootstrap), project_topics())  # as services do
    env = {**os.environ, "OCSEA_KAFKA_BOOTSTRAP": bootstrap}
    outputs = []
    for _ in range(2):
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "ocsea.topic_plan", "deploy/kafka/topics.toml", "--check"),
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 1, err.decode()
        outputs.append(out.decode())
    assert outputs[0] == outputs[1]
    line = f"by hand: {topics.REPORTS_RECEIVED}: replication factor 1, the plan asks 3"
    assert line in outputs[0]


async def delete_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


# -- the audit database's roles -----------------------------------------------------------------


@pytest.fixture
def superuser(stack_env: dict[str, str]) -> tuple[str, str]:
    """psql and the socket directory of the local PostgreSQL's superuser."""
    del stack_env  # the stack is up
    bindir = local_postgres.find_bindir()
    assert bindir is not None
    sockets = local_postgres.paths(local_stack.StackSettings()).sockets
    return str(bindir / "psql"), str(sockets)


@pytest.mark.integration
async def test_the_audit_service_role_may_only_read_and_add_rows(
    superuser: tuple[str, str], tmp_path: Path
) -> None:
    from testkit.audit import entry, event

    psql, sockets = superuser
    tag = uuid.uuid4().hex[:8]
    database, owner, service = f"ocsea_roles_{tag}", f"ocsea_owner_{tag}", f"ocsea_audit_{tag}"
    (tmp_path / "owner").write_text(f"owner-{tag}-secret")
    (tmp_path / "service").write_text(f"service-{tag}-secret")

    def as_superuser(*args: str, db: str = "postgres") -> None:
        done = run(psql, "-X", "-q", "-h", sockets, "-U", "postgres", "-d", db, *args)
        assert done.returncode == 0, done.stderr

    as_superuser("-c", f'CREATE DATABASE "{database}"')
    try:
        as_superuser(
            "-v", f"database={database}", "-v", f"owner_role={owner}",
            "-v", f"service_role={service}",
            "-v", f"owner_password_file={tmp_path / 'owner'}",
            "-v", f"service_password_file={tmp_path / 'service'}",
            "-f", str(DEPLOY / "postgres" / "roles.sql"),
            db=database,
        )  # fmt: skip
        url = "postgresql+asyncpg://{}:{}@127.0.0.1:5432/" + database
        owner_url = url.format(owner, f"owner-{tag}-secret")
        service_url = url.format(service, f"service-{tag}-secret")

        # The service role cannot make the tables itself, and finds them missing.
        ledger = Ledger(service_url)
        try:
            with pytest.raises(SchemaMissingError, match="audit_entries"):
                await expect_schema(ledger)
            with pytest.raises(DBAPIError, match="permission denied"):
                await ledger.create()
        finally:
            await ledger.close()

        await create_schema(owner_url, grant_to=service)
        await create_schema(owner_url, grant_to=service)  # again: nothing changes

        ledger = Ledger(service_url)
        try:
            await expect_schema(ledger)
            case = uuid.uuid4()
            first, second = event(case), event(case)
            await ledger.append_batch([entry(first, 0)], {("t", 0): 1})
            await ledger.append_batch([entry(second, 1)], {("t", 0): 2})  # the offset advances
            assert [e.leaf_index for e in await ledger.case_trail(str(case))] == [0, 1]
            await ledger.add_checkpoint(
                tree_size=2, key_id="k", signed_at=first.occurred_at, checkpoint="{}"
            )
            assert await ledger.latest_checkpoint() == "{}"
            assert await ledger.next_offsets([("t", 0)]) == {("t", 0): 2}
            refused = [
                "UPDATE audit_entries SET action = 'x'",
                "DELETE FROM audit_entries",
                "TRUNCATE audit_nodes",
                "UPDATE audit_offsets SET topic = 'x'",
                "DELETE FROM audit_offsets",
                "DROP TRIGGER audit_entries_append_only ON audit_entries",
                "CREATE TABLE extra (id int)",
            ]
            for statement in refused:
                with pytest.raises(DBAPIError, match=r"permission denied|must be owner"):
                    async with ledger.engine.begin() as conn:
                        await conn.execute(text(statement))
        finally:
            await ledger.close()
    finally:
        as_superuser("-c", f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        as_superuser(
            "-c", f'DROP ROLE IF EXISTS "{service}"', "-c", f'DROP ROLE IF EXISTS "{owner}"'
        )


# -- a bulk lane in a container of its own ----------------------------------------------------


@pytest.mark.integration
async def test_a_bulk_lane_serves_its_probes_on_the_port_it_is_given(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OCSEA_", "OTEL_"))},
        **stack_env,
        "OCSEA_VAR_DIR": str(tmp_path / "var"),
        "OCSEA_CONSUMER_GROUP_PREFIX": f"ocsea-test-{uuid.uuid4().hex[:8]}",
        "OCSEA_CONSUMER_NEW_GROUP_START": "now",
        "OCSEA_TRIAGE_PORT": str(free_port()),
        "OCSEA_BULK_LANE_PORT": str(port),
    }
    # Local run: principals and the master key made for it first, as `ocsea run` does.
    prepare_local(Settings(var_dir=tmp_path / "var"))
    log = tmp_path / "bulk.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "ocsea.cli", "serve-one", "triage", "--lanes", "bulk"),
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:

        async def ready() -> bool:
            assert process.returncode is None, log.read_text()[-3000:]
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    answer = await client.get(f"http://127.0.0.1:{port}/readyz")
                    return answer.status_code == 200
            except httpx.HTTPError:
                return False

        await wait_for(ready, within=90, interval=0.2, what="the bulk lane's /readyz")
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
            metrics = await client.get(f"http://127.0.0.1:{port}/metrics")
        assert metrics.status_code == 200
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), timeout=30)


# -- the image and the guide -------------------------------------------------------------------


def test_the_image_is_built_from_the_lock_file_and_runs_unprivileged() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "uv sync --frozen --no-dev" in dockerfile
    user = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert user
    assert user[-1] not in {"root", "0"}
    packages = ["ocsea", "contracts", "services"]
    for package in packages:
        assert f"COPY {package} ./{package}" in dockerfile
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    rules = [line for line in ignored if line and not line.startswith("#")]
    assert rules[0] == "**"  # nothing goes in but what is named
    for needed in [*packages, "pyproject.toml", "uv.lock", "README.md"]:
        assert f"!{needed}" in ignored or f"!{needed}/" in ignored, needed
    assert "!deploy/kafka/topics.toml" in ignored
    assert "**/secrets" in ignored


def test_the_guide_links_only_to_files_in_the_repository() -> None:
    guide = (DEPLOY / "README.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", guide)
    assert links
    for link in links:
        assert "://" not in link, link
        assert (DEPLOY / link.split("#")[0]).resolve().exists(), link
