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
