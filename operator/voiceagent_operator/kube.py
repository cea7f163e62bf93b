"""A thin async Kubernetes API client for the few kinds the operator touches.

aiohttp with the credentials Kopf logs in with (`login`): in a pod its ServiceAccount (the token
re-read as the kubelet rotates it), elsewhere $KUBECONFIG or ~/.kube/config through Kopf's own
reader (a token, a client certificate or basic auth) or, for an exec plugin (EKS, GKE, OIDC), the
plugin's credential. Objects are addressed by apiVersion/kind/name, without API discovery. No
generated client: its models alone take about 35 MiB of every replica's memory (see `cli.main`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import kopf
import yaml

from .naming import FIELD_MANAGER

log = logging.getLogger(__name__)

APPLY_PATCH = "application/apply-patch+yaml"
# The operator's own client: at most this many connections to the apiserver (reconciliations in
# flight share them; see handlers.CONCURRENT_RECONCILES).
CONNECTIONS = 32
MERGE_PATCH = "application/merge-patch+json"
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# How often a ServiceAccount token is read again (client-go's interval): the kubelet rotates it.
TOKEN_REFRESH_SECONDS = 60.0
TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10)


class ApiError(Exception):
    def __init__(self, status: int, method: str, path: str, message: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {message}")
        self.status = status
        self.message = message


def plural(kind: str) -> str:
    """Every kind this operator handles pluralises regularly (Deployment -> deployments)."""
    return kind.lower() + "s"


def collection_path(api_version: str, kind: str, namespace: str | None) -> str:
    prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    scope = f"/namespaces/{quote(namespace)}" if namespace else ""
    return f"{prefix}{scope}/{plural(kind)}"


def object_path(api_version: str, kind: str, namespace: str | None, name: str, subresource: str = "") -> str:
    path = f"{collection_path(api_version, kind, namespace)}/{quote(name)}"
    return f"{path}/{subresource}" if subresource else path


def in_cluster(account: Path = SERVICE_ACCOUNT) -> kopf.ConnectionInfo | None:
    """The pod's ServiceAccount and the apiserver's address from the environment (as client-go's
    InClusterConfig), or None outside a pod."""
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    token = account / "token"
    if not (host and port and token.exists()):
        return None
    namespace = account / "namespace"
    return kopf.ConnectionInfo(
        server=f"https://{f'[{host}]' if ':' in host else host}:{port}",
        ca_path=str(account / "ca.crt"),
        token=token.read_text().strip(),
        default_namespace=namespace.read_text().strip() if namespace.exists() else None,
    )


def login(settings: kopf.OperatorSettings) -> tuple[kopf.ConnectionInfo, Path | None]:
    """Credentials for Kopf and for `Kube`: in a pod its ServiceAccount (and the token file to follow
    as it rotates), elsewhere the kubeconfig (and None)."""
    info = in_cluster()
    if info is not None:
        return info, SERVICE_ACCOUNT / "token"
    info = kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise kopf.LoginError("no ServiceAccount token and no kubeconfig: run in a pod or set KUBECONFIG")
    plugin = exec_plugin()
    if plugin is not None:  # Kopf's reader ignores exec plugins (EKS, GKE, OIDC): run it as kubectl does
        info = dataclasses.replace(info, **exec_credential(plugin))
    return info, None


def exec_plugin() -> dict[str, Any] | None:
    """The current kubeconfig user's `exec` entry, if it has one."""
    paths = [os.path.expanduser(p) for p in (os.environ.get("KUBECONFIG") or "~/.kube/config").split(os.pathsep) if p]
    configs = [yaml.safe_load(Path(path).read_text()) or {} for path in paths if Path(path).exists()]
    current = next((c["current-context"] for c in configs if c.get("current-context")), None)
    contexts = {item["name"]: item.get("context") or {} for c in reversed(configs) for item in c.get("contexts") or []}
    users = {item["name"]: item.get("user") or {} for c in reversed(configs) for item in c.get("users") or []}
    user = users.get(contexts.get(current, {}).get("user"), {})
    return user.get("exec")


def exec_credential(plugin: dict[str, Any]) -> dict[str, Any]:
    """Run a client-go credential plugin; its token or client certificate, as ConnectionInfo fields."""
    env = {**os.environ, **{item["name"]: item["value"] for item in plugin.get("env") or []}}
    try:
        done = subprocess.run([plugin["command"], *(plugin.get("args") or [])], env=env, capture_output=True,
                              text=True, timeout=60, check=True)
        status = json.loads(done.stdout).get("status") or {}
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise kopf.LoginError(f"the kubeconfig's exec plugin {plugin.get('command')!r} failed: {exc}") from None
    expires = status.get("expirationTimestamp")
    # Kopf logs in again (and the operator's client follows) when it expires.
    expiration = {"expiration": datetime.datetime.fromisoformat(expires.replace("Z", "+00:00"))} if expires else {}
    if status.get("token"):
        return {"token": status["token"], **expiration}
    if status.get("clientCertificateData") and status.get("clientKeyData"):
        return {"certificate_data": status["clientCertificateData"], "private_key_data": status["clientKeyData"], **expiration}
    raise kopf.LoginError(f"the kubeconfig's exec plugin {plugin.get('command')!r} returned no token or certificate")


class Kube:
    """Requests against one apiserver, authenticated as the operator."""

    def __init__(self, info: kopf.ConnectionInfo, token_file: Path | None = None) -> None:
        self._server = info.server.rstrip("/")
        self._headers = {**info.as_http_headers(), "Accept": "application/json"}  # token or basic auth
        self._session = aiohttp.ClientSession(
            # At most CONNECTIONS requests in flight (one TLS connection each, ~0.3 MiB of buffers): a
            # burst of new VoiceAgents queues for a connection instead of opening one per request.
            connector=aiohttp.TCPConnector(limit=CONNECTIONS, ssl=info.as_ssl_context()),
            timeout=TIMEOUT,
        )
        self._token_file = token_file
        self._token_read_at = time.monotonic()

    async def close(self) -> None:
        await self._session.close()

    def _refresh_token(self) -> None:
        if self._token_file is None or time.monotonic() - self._token_read_at < TOKEN_REFRESH_SECONDS:
            return
        self._token_read_at = time.monotonic()
        try:
            self._headers["Authorization"] = f"Bearer {self._token_file.read_text().strip()}"
        except OSError as exc:
            log.warning("cannot read the ServiceAccount token again (%s); using the last one", exc.strerror)

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        self._refresh_token()
        headers = {**self._headers, "Content-Type": content_type}
        data = json.dumps(body).encode() if body is not None else None
        async with self._session.request(method, self._server + path, params=query or None, data=data,
                                          headers=headers) as response:
            payload = await response.read()
        if not 200 <= response.status < 300:
            try:
                message = json.loads(payload).get("message", "")
            except (ValueError, AttributeError):
                message = payload[:200].decode(errors="replace")
            raise ApiError(response.status, method, path, message)
        return json.loads(payload) if payload else None

    async def get(self, api_version: str, kind: str, namespace: str | None, name: str, *,
                  from_cache: bool = False) -> dict[str, Any] | None:
        """The object, or None. `from_cache`: the apiserver's watch cache may answer (resourceVersion=0:
        no etcd read, possibly a moment old)."""
        query = [("resourceVersion", "0")] if from_cache else None
        try:
            return await self.request("GET", object_path(api_version, kind, namespace, name), query=query)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, api_version: str, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        path = collection_path(api_version, kind, namespace)
        result = await self.request("GET", path, query=[("labelSelector", label_selector)])
        return list(result.get("items", []))

    async def apply(self, manifest: dict[str, Any], *, force: bool) -> dict[str, Any]:
        """Server-side apply under the operator's field manager; `force` takes back fields another manager
        took over (only ever on an object that is ours: see `apply.decide_apply`)."""
        meta = manifest["metadata"]
        path = object_path(manifest["apiVersion"], manifest["kind"], meta.get("namespace"), meta["name"])
        query = [("fieldManager", FIELD_MANAGER), ("force", "true" if force else "false")]
        return await self.request("PATCH", path, body=manifest, query=query, content_type=APPLY_PATCH)

    async def merge_patch(
        self, api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any], subresource: str = ""
    ) -> dict[str, Any]:
        path = object_path(api_version, kind, namespace, name, subresource)
        query = [("fieldManager", FIELD_MANAGER)]
        return await self.request("PATCH", path, body=patch, query=query, content_type=MERGE_PATCH)

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        path = object_path(api_version, kind, namespace, name)
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        try:
            await self.request("DELETE", path, body=body)
        except ApiError as exc:
            if exc.status != 404:
                raise

    async def serves(self, group_version: str, resource: str) -> bool:
        """Whether the apiserver serves a resource now (e.g. ServiceMonitors once Prometheus Operator is in)."""
        try:
            found = await self.request("GET", f"/apis/{group_version}")
        except ApiError as exc:
            if exc.status in (404, 503):
                return False
            raise
        return any(item.get("name") == resource for item in found.get("resources", []))
