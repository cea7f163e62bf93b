{{/* Chart name, truncated to a label's length. */}}
{{- define "agent-worker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped name: the release name when it already contains the chart name. */}}
{{- define "agent-worker.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "agent-worker.operatorName" -}}
{{- printf "%s-operator" (include "agent-worker.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agent-worker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "agent-worker.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "agent-worker.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "agent-worker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: agent-worker
{{- end }}

{{- define "agent-worker.operatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "agent-worker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "agent-worker.operatorLabels" -}}
{{ include "agent-worker.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "agent-worker.operatorImage" -}}
{{- printf "%s:%s" .Values.operator.image.repository (default .Chart.AppVersion .Values.operator.image.tag) }}
{{- end }}

{{/* The Kopf peering this release's replicas share: one per release, so two releases never pause
each other (a ClusterKopfPeering cluster-wide, a KopfPeering of this name in each watched namespace). */}}
{{- define "agent-worker.peeringName" -}}
{{- include "agent-worker.operatorName" . }}
{{- end }}

{{/* The Service label whose value the ServiceMonitor makes the scrape job (its jobLabel), so the
operator's series carry job="voiceagent-operator" in every release, as the alerts expect. */}}
{{- define "agent-worker.jobLabel" -}}
agentworker.io/scrape-job
{{- end }}

{{/*
The operator's rights on namespaced resources, the same cluster-wide (ClusterRole) and per watched
namespace (Role). Each rule says what it is for; the README's "RBAC" section justifies each verb.
Argument: the root context.
*/}}
{{- define "agent-worker.operatorRules" -}}
# VoiceAgents: Kopf watches them and keeps its annotations and finalizer on them (patch).
- apiGroups: [agentworker.io]
  resources: [voiceagents]
  verbs: [get, list, watch, patch]
# Their status: conditions, replicas, the selector `kubectl scale` reads.
- apiGroups: [agentworker.io]
  resources: [voiceagents/status]
  verbs: [get, patch]
# Children carry an ownerReference with blockOwnerDeletion; under the OwnerReferencesPermissionEnforcement
# admission plugin setting it needs update on the owner's finalizers subresource.
- apiGroups: [agentworker.io]
  resources: [voiceagents/finalizers]
  verbs: [update]
# Children, by server-side apply (create + patch), decided from the operator's cache: list + watch
# with a selector on its managed-by label; get before a create; delete for optional ones turned off.
# No update (apply is a patch).
- apiGroups: [""]
  resources: [configmaps, services, persistentvolumeclaims]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [monitoring.coreos.com]
  resources: [servicemonitors]
  verbs: [get, list, watch, create, patch, delete]
# The managed Ollama's model pull Jobs (one per model list): list them by label to delete the
# Jobs of earlier model lists.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch, delete]
# Worker pods: list + watch (by label) to scrape their active rooms; patch their annotations (deletion cost,
# cluster-autoscaler safe-to-evict, karpenter do-not-disrupt) so busy pods go last and are not evicted.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, patch]
# Events on VoiceAgents (what changed and why). Kopf only creates them.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}
