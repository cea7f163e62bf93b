"""The operator's own API client: in-cluster credentials from the pod, a rotated token followed,
the apiserver's errors raised with their message."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import kopf
import pytest
import yaml
from aiohttp import web

from voiceagent_operator import kube
from voiceagent_operator.kube import ApiError, Kube, in_cluster, login


def service_account(folder: Path, token: str = "token-1") -> Path:
    folder.mkdir()
    (folder / "token").write_text(token + "\n")
    (folder / "ca.crt").write_text("unused")
    (folder / "namespace").write_text("voice\n")
    return folder


def test_in_a_pod_the_service_account_and_the_service_address_are_used(tmp_path, monkeypatch):
    account = service_account(tmp_path / "sa")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    info = in_cluster(account)
    assert (info.server, info.token, info.ca_path, info.default_namespace) == (
        "https://10.96.0.1:443", "token-1", str(account / "ca.crt"), "voice")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    assert in_cluster(account).server == "https://[fd00::1]:443"


def test_outside_a_pod_there_are_no_in_cluster_credentials(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert in_cluster(service_account(tmp_path / "sa")) is None


async def test_a_rotated_token_is_read_again_and_errors_carry_the_apiservers_message(tmp_path, monkeypatch):
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        if request.path.endswith("/missing"):
            return web.json_response({"kind": "Status", "message": 'configmaps "missing" is forbidden'}, status=403)
        return web.json_response({"kind": "ConfigMap", "metadata": {"name": request.path.rsplit("/", 1)[1]}})

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/voice/configmaps/{name}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    account = service_account(tmp_path / "sa")
    monkeypatch.setattr(kube, "TOKEN_REFRESH_SECONDS", 0.0)
    client = Kube(kopf.ConnectionInfo(server=f"http://127.0.0.1:{port}", token="token-1"), account / "token")
    try:
        assert (await client.get("v1", "ConfigMap", "voice", "a"))["metadata"]["name"] == "a"
        (account / "token").write_text("token-2\n")  # the kubelet rotated it
        await client.get("v1", "ConfigMap", "voice", "b")
        with pytest.raises(ApiError) as failure:
            await client.get("v1", "ConfigMap", "voice", "missing")
    finally:
        await client.close()
        await runner.cleanup()
    assert seen == ["Bearer token-1", "Bearer token-2", "Bearer token-2"]
    assert failure.value.status == 403 and failure.value.message == 'configmaps "missing" is forbidden'


def test_a_kubeconfig_with_an_exec_plugin_logs_in_with_the_plugins_token(tmp_path, monkeypatch):
    plugin = tmp_path / "credential-plugin"
    plugin.write_text(f"#!{sys.executable}\nimport json, os\nprint(json.dumps({{'apiVersion': "
                      "'client.authentication.k8s.io/v1', 'kind': 'ExecCredential', 'status': {'token': "
                      "os.environ['CLUSTER'] + '-token', 'expirationTimestamp': '2030-01-02T03:04:05Z'}}))\n")
    plugin.chmod(0o755)
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "eks",
        "clusters": [{"name": "eks", "cluster": {"server": "https://eks.example:443"}}],
        "contexts": [{"name": "eks", "context": {"cluster": "eks", "user": "iam"}}],
        "users": [{"name": "iam", "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                                                    "command": str(plugin), "env": [{"name": "CLUSTER", "value": "prod"}]}}}],
    }
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    info, token_file = login(kopf.OperatorSettings())
    assert (info.server, info.token, token_file) == ("https://eks.example:443", "prod-token", None)
    assert info.expiration == datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    plugin.write_text("#!/bin/sh\nexit 1\n")
    with pytest.raises(kopf.LoginError, match="exec plugin .*credential-plugin.* failed"):
        login(kopf.OperatorSettings())
