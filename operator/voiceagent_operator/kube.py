"""A thin async Kubernetes API client for the few kinds the operator touches.

Built on `kubernetes.aio`'s ApiClient (so kubeconfig, in-cluster tokens, exec plugins and TLS
work as with kubectl) but addressing objects by apiVersion/kind/name, without API discovery.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any
from urllib.parse import quote

import kopf
from kubernetes.aio import client as aio_client
from kubernetes.aio import config as aio_config

from .naming import FIELD_MANAGER

log = logging.getLogger(__name__)

APPLY_PATCH = "application/apply-patch+yaml"
# The operator's own client: at most this many connections to the apiserver (reconciliations in
# flight share them; see handlers.CONCURRENT_RECONCILES).
CONNECTIONS = 32
MERGE_PATCH = "application/merge-patch+json"


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


async def load_configuration() -> aio_client.Configuration:
    """In a pod, its ServiceAccount; elsewhere $KUBECONFIG (read now, not at import) or ~/.kube/config.

    Both the operator's own client and Kopf's (see `handlers.handle_login`) use this one result.
    """
    configuration = aio_client.Configuration()
    # At most this many requests in flight (one TLS connection each, ~0.3 MiB of buffers): a burst of
    # new VoiceAgents queues for a connection instead of opening one per request.
    configuration.connection_pool_maxsize = CONNECTIONS
    try:
        aio_config.load_incluster_config(client_configuration=configuration)
    except aio_config.ConfigException:
        path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        await aio_config.load_kube_config(config_file=path, client_configuration=configuration, persist_config=False)
    return configuration


class Kube:
    """Requests against one apiserver, authenticated as the operator."""

    def __init__(self, api_client: aio_client.ApiClient) -> None:
        self._client = api_client

    @classmethod
    def from_configuration(cls, configuration: aio_client.Configuration) -> Kube:
        return cls(aio_client.ApiClient(configuration))

    async def close(self) -> None:
        await self._client.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        serialized = await self._client.param_serialize(
            method, path, query_params=query or [], header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        response = await self._client.call_api(*serialized)
        data = await response.read()
        if not 200 <= response.status < 300:
            try:
                message = json.loads(data).get("message", "")
            except (ValueError, AttributeError):
                message = data[:200].decode(errors="replace")
            raise ApiError(response.status, method, path, message)
        return json.loads(data) if data else None

    async def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return await self.request("GET", object_path(api_version, kind, namespace, name))
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


async def connection_info(configuration: aio_client.Configuration) -> kopf.ConnectionInfo:
    """The same credentials in Kopf's terms."""
    header = await configuration.get_api_key_with_prefix("BearerToken") or ""
    scheme, _, token = header.partition(" ") if " " in header else ("", "", header)
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme or None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )
