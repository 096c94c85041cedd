{{/* Names and labels shared by every template. */}}

{{- define "jwt-trust.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: the release name alone when it already contains the chart's name. */}}
{{- define "jwt-trust.fullname" -}}
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

{{- define "jwt-trust.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jwt-trust.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "jwt-trust.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "jwt-trust.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: jwt-trust
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "jwt-trust.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "jwt-trust.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "jwt-trust.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The discovery service: its own name, so that neither Deployment's selector matches the other's pods. */}}
{{- define "jwt-trust.discovery.fullname" -}}
{{- printf "%s-discovery" (include "jwt-trust.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "jwt-trust.discovery.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-discovery" (include "jwt-trust.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "jwt-trust.discovery.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "jwt-trust.discovery.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: discovery
app.kubernetes.io/part-of: jwt-trust
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Where consumers reach the discovery service: discovery.url, or the Service's cluster DNS name. */}}
{{- define "jwt-trust.discovery.url" -}}
{{- if .Values.discovery.url }}
{{- .Values.discovery.url | trimSuffix "/" }}
{{- else }}
{{- printf "https://%s.%s.svc:%d" (include "jwt-trust.discovery.fullname" .) .Release.Namespace (int .Values.discovery.port) }}
{{- end }}
{{- end }}
