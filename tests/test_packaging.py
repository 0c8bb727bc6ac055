"""The Dockerfile, docker-compose.yaml and Kubernetes manifests, parsed and checked (containers cannot run here)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluicegate.config import load_config

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
#: what ${VAR}s in the shipped configs expand to for validation
ENV = {
    "SLUICEGATE_MASTER_KEY": "sk-admin",
    "SLUICEGATE_DATABASE_URL": "postgresql://sluicegate@postgres:5432/sluicegate",
    "SLUICEGATE_REDIS_URL": "redis://redis:6379/0",
    "OPENAI_API_KEY": "sk-test",
}


def manifests() -> dict[str, dict[str, Any]]:
    """Every Kubernetes object in deploy/kubernetes, by kind."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBE.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") != "Kustomization":
                found[document["kind"]] = document
    return found


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def drain_budget(config_path: Path) -> float:
    server = load_config(config_path, environ=ENV).server
    return server.drain_delay + server.shutdown_grace


def test_the_kubernetes_manifests_cover_what_a_cluster_needs() -> None:
    kinds = manifests()
    expected = {"Deployment", "Service", "ConfigMap", "Secret", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    assert expected <= set(kinds)
    listed = yaml.safe_load((KUBE / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in KUBE.glob("*.yaml") if p.name != "kustomization.yaml")


def test_the_deployment_probes_runs_non_root_and_drains(tmp_path: Path) -> None:
    kinds = manifests()
    deployment = kinds["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/readiness"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/liveness"
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["port"] in ports
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    # the keys come from the Secret, the YAML from the ConfigMap
    assert {"secretRef": {"name": kinds["Secret"]["metadata"]["name"]}} in container["envFrom"]
    assert set(kinds["Secret"]["stringData"]) >= {"SLUICEGATE_MASTER_KEY", "SLUICEGATE_DATABASE_URL"}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == kinds["ConfigMap"]["metadata"]["name"]
    # the ConfigMap's YAML is a valid gateway config, and Kubernetes waits for its whole drain before SIGKILL
    config_file = tmp_path / "config.yaml"
    config_file.write_text(kinds["ConfigMap"]["data"]["config.yaml"])
    args = container["args"]
    assert args[args.index("--config") + 1] == "/etc/sluicegate/config.yaml"
    assert pod["terminationGracePeriodSeconds"] > drain_budget(config_file)
    assert load_config(config_file, environ=ENV).redis_url  # replicas share state


def test_service_hpa_and_pdb_select_the_deployment() -> None:
    kinds = manifests()
    deployment = kinds["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert kinds["Service"]["spec"]["selector"].items() <= labels.items()
    assert kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert kinds["PodDisruptionBudget"]["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    target = kinds["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert kinds["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_builds_the_manifests() -> None:
    built = subprocess.run(["kubectl", "kustomize", str(KUBE)], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    assert len([doc for doc in yaml.safe_load_all(built.stdout) if doc]) == len(manifests())


def test_the_image_is_pinned_from_the_lock_and_runs_as_non_root() -> None:
    instructions = dockerfile_instructions()
    installs = [args for op, args in instructions if op == "RUN" and "requirements/runtime.lock" in args]
    assert installs and "--require-hashes" in installs[0]
    # every pinned requirement in the lock carries a hash, so --require-hashes can install it
    lock = (ROOT / "requirements" / "runtime.lock").read_text()
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==", lock, flags=re.M)
    assert pins and lock.count("--hash=sha256:") >= len(pins)
    assert {"redis", "asyncpg"} <= set(pins)  # replica mode (redis_url, database_url) works in the image
    # the package itself is added without resolving anything outside the lock
    assert any("pip install --no-deps /wheels/" in args for op, args in instructions if op == "RUN")
    final = final_stage(instructions)
    users = [args for op, args in final if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert json.loads(dict(final)["ENTRYPOINT"])[:2] == ["sluicegate", "serve"]
    assert dict(final)["STOPSIGNAL"] == "SIGTERM"
    assert not any(op == "RUN" and "apt-get install" in args for op, args in final)  # small: nothing built in it


def test_compose_runs_three_replicas_behind_nginx() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    services = compose["services"]
    gateways = sorted(name for name, service in services.items() if service.get("build") == ".")
    assert gateways == ["gateway-1", "gateway-2", "gateway-3"]
    assert {"nginx", "redis", "postgres", "prometheus"} <= set(services)
    for name in gateways:
        environment = services[name]["environment"]
        assert environment["SLUICEGATE_REDIS_URL"].startswith("redis://redis:")
        assert environment["SLUICEGATE_DATABASE_URL"].startswith("postgresql://")
        assert "/health/readiness" in " ".join(services[name]["healthcheck"]["test"])
        grace = float(services[name]["stop_grace_period"].rstrip("s"))
        assert grace > drain_budget(ROOT / "deploy" / "sluicegate.yaml")
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    upstream = re.search(r"upstream sluicegate \{(.*?)\}", nginx, flags=re.S)
    assert upstream is not None
    assert re.findall(r"server (gateway-\d):4000", upstream.group(1)) == gateways
    assert "proxy_buffering off" in nginx  # streams pass through
    mounted = services["nginx"]["volumes"][0].split(":")[0]
    assert (ROOT / mounted).resolve() == (ROOT / "deploy" / "nginx.conf")
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"{name}:4000" for name in gateways]
