{{/* Labels on every object of this chart. */}}
{{- define "ironedge-crds.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ironedge
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.labels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The CRD's metadata block, replacing the bare one of the file. */}}
{{- define "ironedge-crds.metadata" -}}
metadata:
  name: edgedeployments.ironedge.io
  labels:
    {{- include "ironedge-crds.labels" . | nindent 4 }}
  {{- if or .Values.keep .Values.annotations }}
  annotations:
    {{- if .Values.keep }}
    helm.sh/resource-policy: keep
    {{- end }}
    {{- with .Values.annotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
{{ end -}}
