"""The VoiceAgent CustomResourceDefinition, generated from the models in `spec.py`.

`python -m voiceagent_operator crd` prints it; `make generate` writes the chart's and the plain
manifests' copies, and a test fails when they drift from this code.
"""

from __future__ import annotations

from typing import Any

import yaml

from .spec import GROUP, KIND, MAX_NAME_LENGTH, PLURAL, SHORT_NAMES, VERSION, VoiceAgentSpec

CONDITION_TYPES = ("Ready", "Progressing", "Degraded", "RoomsObserved", "OllamaReady", "MonitoringReady")

NAME_LENGTH_RULE = {
    "rule": f"size(self.metadata.name) <= {MAX_NAME_LENGTH}",
    "message": f"metadata.name must be at most {MAX_NAME_LENGTH} characters: the operator names children "
    f"<name>-worker-config and <name>-ollama-models, and pod names add suffixes; choose a shorter name",
}

_DROPPED_KEYS = {"title", "additionalProperties", "$defs", "anyOf", "$ref"}


def structural(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Turn a pydantic JSON schema into a Kubernetes structural schema.

    Inlines `$ref`s, collapses `Optional[X]` (anyOf with null) to X, drops titles and null
    defaults, and maps free-form objects (`additionalProperties: true`) to preserved unknown fields.
    """
    if "$ref" in schema:
        target = defs[schema["$ref"].split("/")[-1]]
        return structural({**target, **{k: v for k, v in schema.items() if k != "$ref"}}, defs)
    if "anyOf" in schema:
        options = [option for option in schema["anyOf"] if option.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express a union of {options} in a structural schema")
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        return structural({**options[0], **rest}, defs)

    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROPPED_KEYS or (key == "default" and value is None):
            continue
        if key == "properties":
            out[key] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key == "const":
            out["enum"] = [value]
        elif key == "items":
            out[key] = structural(value, defs)
        else:
            out[key] = value
    extra = schema.get("additionalProperties")
    if extra is True:
        out["x-kubernetes-preserve-unknown-fields"] = True
    elif isinstance(extra, dict):
        out["additionalProperties"] = structural(extra, defs)
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("x-kubernetes-preserve-unknown-fields") and "type" not in out:
        out["type"] = "array" if "items" in out else "object"
    return out


def spec_schema() -> dict[str, Any]:
    raw = VoiceAgentSpec.model_json_schema(by_alias=True)
    return structural(raw, raw.get("$defs", {}))


def status_schema() -> dict[str, Any]:
    condition = {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": {"type": "string", "enum": list(CONDITION_TYPES)},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string"},
            "message": {"type": "string"},
            "observedGeneration": {"type": "integer"},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
        },
    }
    count = {"type": "integer", "minimum": 0}
    return {
        "type": "object",
        "properties": {
            "observedGeneration": {"type": "integer"},
            "conditions": {
                "type": "array",
                "items": condition,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "replicas": {**count, "description": "Worker pods that exist"},
            "readyReplicas": {**count, "description": "Worker pods that are ready"},
            "desiredReplicas": {**count, "description": "Worker pods the operator wants"},
            "activeRooms": {**count, "description": "Rooms served by the ready worker pods at the last observation"},
            "lastScaleTime": {"type": "string", "format": "date-time"},
            "selector": {"type": "string", "description": "Label selector of the worker pods (for the scale subresource)"},
            "scalingHistory": {
                "type": "string",
                "maxLength": 16384,
                "description": "The autoscaler's recent recommendations (bounded), so that a restart or a new leader keeps the stabilization windows",
            },
        },
    }


def printer_columns() -> list[dict[str, Any]]:
    return [
        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Replicas", "type": "integer", "jsonPath": ".status.replicas"},
        {"name": "Desired", "type": "integer", "jsonPath": ".status.desiredReplicas"},
        {"name": "Rooms", "type": "integer", "jsonPath": ".status.activeRooms"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def crd_manifest() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "agent-worker"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": SHORT_NAMES,
                "categories": ["all", "agentworker"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A fleet of LiveKit voice-agent workers, autoscaled on active rooms.",
                            "required": ["spec"],
                            "x-kubernetes-validations": [NAME_LENGTH_RULE],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                        }
                    },
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": printer_columns(),
                }
            ],
        },
    }


def kopf_peering_crds() -> list[dict[str, Any]]:
    """Kopf's peering resources, through which two operator replicas agree who is active."""
    crds = []
    for kind, scope in (("ClusterKopfPeering", "Cluster"), ("KopfPeering", "Namespaced")):
        plural = kind.lower() + "s"
        crds.append(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{plural}.kopf.dev"},
                "spec": {
                    "group": "kopf.dev",
                    "scope": scope,
                    "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
                    "versions": [
                        {
                            "name": "v1",
                            "served": True,
                            "storage": True,
                            "schema": {
                                "openAPIV3Schema": {
                                    "type": "object",
                                    "properties": {
                                        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                                    },
                                }
                            },
                        }
                    ],
                },
            }
        )
    return crds


def render(documents: list[dict[str, Any]]) -> str:
    header = "# Generated by `make generate` from operator/voiceagent_operator/spec.py; do not edit.\n"
    return header + yaml.safe_dump_all(documents, sort_keys=False, width=120)
