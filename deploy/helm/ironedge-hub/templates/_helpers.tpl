{{/* Object name: the release name when it contains the chart name, else `<release>-<chart>`. */}}
{{- define "ironedge-hub.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := .Values.nameOverride | default .Chart.Name -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ironedge-hub.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ironedge-hub.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ironedge-hub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: hub
{{- end -}}

{{- define "ironedge-hub.labels" -}}
{{ include "ironedge-hub.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ironedge
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "ironedge-hub.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* The hub's host name. */}}
{{- define "ironedge-hub.hostname" -}}
{{- .Values.hostname | default (printf "%s.%s.svc" (include "ironedge-hub.fullname" .) .Release.Namespace) -}}
{{- end -}}

{{/* Every name the hub answers to besides its host name: the Service's names and the aliases, as JSON. */}}
{{- define "ironedge-hub.aliases" -}}
{{- $full := include "ironedge-hub.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list $full (printf "%s.%s" $full $ns) (printf "%s.%s.svc" $full $ns) (printf "%s.%s.svc.%s" $full $ns .Values.clusterDomain) -}}
{{- if .Values.websocket.enabled -}}
{{- $ws := printf "%s-websocket" $full -}}
{{- $names = concat $names (list $ws (printf "%s.%s" $ws $ns) (printf "%s.%s.svc" $ws $ns) (printf "%s.%s.svc.%s" $ws $ns .Values.clusterDomain)) -}}
{{- end -}}
{{- $names = without (concat $names .Values.aliases | uniq) (include "ironedge-hub.hostname" .) -}}
{{- toJson $names -}}
{{- end -}}

{{- define "ironedge-hub.tlsSecret" -}}
{{- .Values.tls.existingSecret | default (printf "%s-tls" (include "ironedge-hub.fullname" .)) -}}
{{- end -}}

{{- define "ironedge-hub.ownerSecret" -}}
{{- .Values.ownerKey.existingSecret | default (printf "%s-owner" (include "ironedge-hub.fullname" .)) -}}
{{- end -}}
