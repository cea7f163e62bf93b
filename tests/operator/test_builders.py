"""Builders: from a spec to the children's manifests, with the worker contract wired from agent_worker.config."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest
from va_examples import groq_spec, ollama_spec

from agent_worker.config import API_KEY_ENV, Settings, env_name
from voiceagent_operator.builders import desired_children
from voiceagent_operator.builders.monitoring import service_monitor
from voiceagent_operator.builders.ollama import ollama_deployment, ollama_pvc
from voiceagent_operator.builders.ollama_pull import ollama_pull_job
from voiceagent_operator.builders.worker import worker_deployment, worker_pdb, worker_service
from voiceagent_operator.builders.worker_config import config_data, secret_env, worker_configmap
from voiceagent_operator.naming import CONFIG_HASH_ANNOTATION, Owner
from voiceagent_operator.spec import SpecError, parse_spec


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item for item in container["env"]}


def _worker_container(owner: Owner, raw: dict[str, Any]) -> dict[str, Any]:
    return worker_deployment(owner, parse_spec(raw), replicas=2)["spec"]["template"]["spec"]["containers"][0]


def test_the_configmap_holds_every_non_secret_setting_under_the_workers_variable_names(owner: Owner) -> None:
    data = config_data(owner, parse_spec(groq_spec(pricing={"groq/llama-3.3-70b-versatile": {"inputPerMillionTokens": 0.59}})))
    assert data[env_name("livekit_url")] == "wss://livekit.example"
    assert data[env_name("name")] == "support"
    assert data[env_name("llm_provider")] == "groq"
    assert data[env_name("llm_model")] == "llama-3.3-70b-versatile"
    assert data[env_name("fast_llm_provider")] == "groq"
    assert data[env_name("fast_llm_model")] == "llama-3.1-8b-instant"
    assert data[env_name("preresponse_enabled")] == "true"
    assert data[env_name("metrics_port")] == "9100"
    assert json.loads(data[env_name("prices")]) == {"groq/llama-3.3-70b-versatile": {"inputPerMillionTokens": 0.59}}
    assert not any("KEY" in name or "SECRET" in name for name in data), "secrets never go to a ConfigMap"


def test_the_worker_accepts_the_configmap_and_secret_variables(owner: Owner, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = parse_spec(groq_spec(pricing={"groq/llama-3.3-70b-versatile": {"outputPerMillionTokens": 0.79}}))
    for name, value in config_data(owner, spec).items():
        monkeypatch.setenv(name, value)
    for item in secret_env(owner, spec):
        monkeypatch.setenv(item["name"], "from-secret")
    settings = Settings()
    assert settings.llm_model == "llama-3.3-70b-versatile"
    assert settings.prices["groq/llama-3.3-70b-versatile"].output_per_million_tokens == 0.79
    assert settings.name == "support"


def test_api_keys_come_from_the_named_secrets_by_secret_key_ref(owner: Owner) -> None:
    env = {item["name"]: item["valueFrom"]["secretKeyRef"] for item in secret_env(owner, parse_spec(groq_spec()))}
    assert env == {
        "LIVEKIT_API_KEY": {"name": "livekit", "key": "LIVEKIT_API_KEY"},
        "LIVEKIT_API_SECRET": {"name": "livekit", "key": "LIVEKIT_API_SECRET"},
        API_KEY_ENV["groq"]: {"name": "groq", "key": API_KEY_ENV["groq"]},
        API_KEY_ENV["deepgram"]: {"name": "deepgram", "key": API_KEY_ENV["deepgram"]},
        API_KEY_ENV["openai"]: {"name": "openai", "key": API_KEY_ENV["openai"]},
    }


def test_two_secrets_for_one_provider_key_is_a_spec_error_naming_the_field(owner: Owner) -> None:
    raw = groq_spec(stt={"provider": "openai", "credentialsSecret": "stt-openai"})
    with pytest.raises(SpecError) as caught:
        secret_env(owner, parse_spec(raw))
    assert caught.value.field == "spec.tts.credentialsSecret"
    assert "stt-openai" in caught.value.message


def test_the_local_setup_needs_no_provider_secrets(owner: Owner) -> None:
    raw = groq_spec(
        llm={"provider": "ollama", "baseUrl": "http://127.0.0.1:8000/v1"},
        stt={"provider": "openai", "baseUrl": "http://127.0.0.1:8001/v1"},
        tts={"provider": "openai", "baseUrl": "http://127.0.0.1:8002/v1"},
    )
    spec = parse_spec(raw)
    assert [item["name"] for item in secret_env(owner, spec)] == ["LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"]
    data = config_data(owner, spec)
    assert data[env_name("fast_llm_base_url")] == "http://127.0.0.1:8000/v1", "fast LLM inherits the main base URL"
    assert data[env_name("stt_base_url")] == "http://127.0.0.1:8001/v1"
    assert data[env_name("tts_base_url")] == "http://127.0.0.1:8002/v1"


def test_the_worker_deployment_runs_restricted_with_probes_ports_and_grace(owner: Owner) -> None:
    deployment = worker_deployment(owner, parse_spec(groq_spec(terminationGracePeriodSeconds=900)), replicas=3)
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["spec"]["replicas"] == 3
    assert pod["terminationGracePeriodSeconds"] == 900
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 9100, "health": 8081}
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/", "port": "health"}
    # Ready only once registered with livekit-server, and no longer while draining.
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"}
    assert container["envFrom"] == [{"configMapRef": {"name": "support-worker-config"}}]
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "voiceagent-operator"
    kubernetes_validate.validate(deployment, "1.33", strict=True)


def test_a_rollout_never_takes_a_serving_worker_away_before_its_replacement_is_ready(owner: Owner) -> None:
    deployment = worker_deployment(owner, parse_spec(groq_spec()), replicas=3)
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError", "a crash's last line reaches the status"


@pytest.mark.parametrize(("grace", "drain"), [(600, 585), (3600, 3585), (20, 5), (16, 1)])
def test_the_workers_drain_ends_15_seconds_before_the_pods_grace_period(owner: Owner, grace: int, drain: int) -> None:
    spec = parse_spec(groq_spec(terminationGracePeriodSeconds=grace))
    pod = worker_deployment(owner, spec, replicas=1)["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == grace
    assert config_data(owner, spec)[env_name("drain_timeout")] == str(drain)
    assert pod["automountServiceAccountToken"] is False  # the worker never calls the Kubernetes API


@pytest.mark.parametrize("grace", [15, 10, 0])
def test_a_grace_period_without_room_for_a_drain_and_its_margin_is_refused(grace: int) -> None:
    with pytest.raises(SpecError, match="spec.terminationGracePeriodSeconds: .*greater than or equal to 16"):
        parse_spec(groq_spec(terminationGracePeriodSeconds=grace))


def test_a_settings_change_rolls_the_workers_through_the_config_hash(owner: Owner) -> None:
    def stamp(raw: dict[str, Any]) -> str:
        return worker_deployment(owner, parse_spec(raw), 1)["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]

    assert stamp(groq_spec()) == stamp(groq_spec())
    assert stamp(groq_spec()) != stamp(groq_spec(instructions="Be brief."))


def test_user_env_placement_and_resources_pass_through(owner: Owner) -> None:
    raw = groq_spec(
        env=[{"name": "LOG_LEVEL", "value": "debug"}],
        resources={"requests": {"cpu": "4", "memory": "8Gi"}},
        nodeSelector={"pool": "voice"},
        tolerations=[{"key": "voice", "operator": "Exists"}],
        affinity={"podAntiAffinity": {}},
        imagePullSecrets=[{"name": "regcred"}],
    )
    pod = worker_deployment(owner, parse_spec(raw), 1)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert _env(container)["LOG_LEVEL"] == {"name": "LOG_LEVEL", "value": "debug"}
    assert container["resources"] == {"requests": {"cpu": "4", "memory": "8Gi"}}
    assert pod["nodeSelector"] == {"pool": "voice"}
    assert pod["tolerations"] == [{"key": "voice", "operator": "Exists"}]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert "affinity" in pod


def test_service_and_pdb_select_the_worker_pods(owner: Owner, spec) -> None:
    selector = worker_deployment(owner, spec, 1)["spec"]["selector"]["matchLabels"]
    service, pdb = worker_service(owner, spec), worker_pdb(owner, spec)
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"][0]["name"] == "metrics"
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}
    for manifest in (service, pdb, worker_configmap(owner, spec)):
        kubernetes_validate.validate(manifest, "1.33", strict=True)


def test_ollama_gets_gpus_node_placement_and_its_pvc_and_no_model_in_its_pod(owner: Owner) -> None:
    spec = parse_spec(ollama_spec())
    deployment = ollama_deployment(owner, spec)
    pod = deployment["spec"]["template"]["spec"]
    (serve,) = pod["containers"]
    assert serve["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert pod["nodeSelector"] == {"gpu": "a100"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "initContainers" not in pod  # the models come by the pull Job (test_ollama_pull.py)
    assert "llama3.1" not in json.dumps(deployment)
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "support-ollama-models"
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert serve["securityContext"]["allowPrivilegeEscalation"] is False
    assert serve["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    kubernetes_validate.validate(deployment, "1.33", strict=True)


def test_the_worker_is_wired_to_the_managed_ollama(owner: Owner) -> None:
    data = config_data(owner, parse_spec(ollama_spec()))
    assert data[env_name("llm_base_url")] == "http://support-ollama.voice.svc:11434/v1"
    assert data[env_name("fast_llm_base_url")] == "http://support-ollama.voice.svc:11434/v1"


@pytest.mark.parametrize(("policy", "owned"), [("Retain", False), ("Delete", True)])
def test_the_model_volume_follows_its_retention_policy(owner: Owner, policy: str, owned: bool) -> None:
    pvc = ollama_pvc(owner, parse_spec(ollama_spec(ollama={"enabled": True, "storage": {"retentionPolicy": policy}})))
    assert ("ownerReferences" in pvc["metadata"]) is owned
    kubernetes_validate.validate(pvc, "1.33", strict=True)


def test_the_service_monitor_scrapes_the_metrics_port_with_extra_labels(owner: Owner) -> None:
    raw = groq_spec(monitoring={"serviceMonitor": {"interval": "30s", "labels": {"release": "kube-prometheus"}}})
    monitor = service_monitor(owner, parse_spec(raw))
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]


def _kinds(manifests: list[dict[str, Any]]) -> list[str]:
    return [f"{m['kind']}/{m['metadata']['name']}" for m in manifests]


def test_desired_children_without_ollama_or_monitoring_api(owner: Owner, spec) -> None:
    children = desired_children(owner, spec, 1, monitoring_api=False)
    assert _kinds(children.present) == [
        "ConfigMap/support-worker-config",
        "Service/support-worker",
        "PodDisruptionBudget/support-worker",
        "Deployment/support-worker",
    ]
    assert _kinds(children.absent) == [
        "PersistentVolumeClaim/support-ollama-models",
        "Service/support-ollama",
        "Deployment/support-ollama",
        f"Job/{ollama_pull_job(owner, spec)['metadata']['name']}",
    ]


def test_desired_children_with_ollama_and_monitoring(owner: Owner) -> None:
    spec = parse_spec(ollama_spec())
    children = desired_children(owner, spec, 1, monitoring_api=True)
    assert _kinds(children.present)[:4] == [
        "PersistentVolumeClaim/support-ollama-models",
        "Service/support-ollama",
        "Deployment/support-ollama",
        f"Job/{ollama_pull_job(owner, spec)['metadata']['name']}",
    ]
    assert _kinds(children.present)[-1] == "ServiceMonitor/support-worker"
    assert children.absent == []


def test_a_disabled_service_monitor_is_removed_when_the_api_exists(owner: Owner) -> None:
    spec = parse_spec(groq_spec(monitoring={"serviceMonitor": {"enabled": False}}))
    assert _kinds(desired_children(owner, spec, 1, monitoring_api=True).absent)[-1] == "ServiceMonitor/support-worker"


def test_the_worker_caps_its_sessions_at_twice_the_target_the_autoscaler_aims_for(owner: Owner) -> None:
    raw = groq_spec()
    raw["scaling"]["targetActiveRoomsPerReplica"] = 6
    assert config_data(owner, parse_spec(raw))[env_name("max_sessions")] == "12"
    assert config_data(owner, parse_spec({**raw, "scaling": {}}))[env_name("max_sessions")] == "8", "the default target 4"


def test_a_session_cap_in_spec_env_at_or_above_the_target_wins(owner: Owner) -> None:
    for cap in ("4", "20"):  # target 4: the target itself, or more than the default of twice it
        raw = groq_spec(env=[{"name": env_name("max_sessions"), "value": cap}])
        assert config_data(owner, parse_spec(raw))[env_name("max_sessions")] == cap
        assert _env(_worker_container(owner, raw))[env_name("max_sessions")] == {"name": env_name("max_sessions"), "value": cap}


@pytest.mark.parametrize("entry", [{"value": "3"}, {"value": "many"}, {"valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}])
def test_a_session_cap_in_spec_env_below_the_target_or_not_a_number_is_refused(owner: Owner, entry: dict[str, Any]) -> None:
    raw = groq_spec(env=[{"name": env_name("max_sessions"), **entry}])  # target 4
    with pytest.raises(SpecError) as refused:
        worker_configmap(owner, parse_spec(raw))
    assert refused.value.field == "spec.env"
    assert "targetActiveRoomsPerReplica" in refused.value.message and env_name("max_sessions") in refused.value.message


def test_without_resources_the_worker_requests_what_the_default_target_of_4_calls_measured(owner: Owner) -> None:
    raw = groq_spec()
    del raw["scaling"]
    container = _worker_container(owner, raw)
    assert parse_spec(raw).scaling.target_active_rooms_per_replica == 4
    # README "Sizing": 0.17-0.25 core per call; 280 MB + 4 x 180 MB + 2 idle processes x 125 MB.
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "1280Mi"}, "limits": {"memory": "2Gi"}}
