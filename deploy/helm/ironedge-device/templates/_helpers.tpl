{{/*
Object names are fixed per namespace: the workload-proxy sidecars dial `ironedge-agent`, modules get
`edgehub` as their gateway host name, and the agent issues the edge hub's certificate for the
`edgehub` Service names. So one release per namespace (one device per namespace). The chart's other
objects start with `ironedge-`, apart from the names the controller gives modules.
*/}}
{{- define "ironedge-device.agentName" -}}ironedge-agent{{- end -}}
{{- define "ironedge-device.edgeHubName" -}}ironedge-edgehub{{- end -}}
{{- define "ironedge-device.edgeHubService" -}}edgehub{{- end -}}
{{- define "ironedge-device.provisioningSecret" -}}ironedge-provisioning{{- end -}}
{{- define "ironedge-device.hubCaConfigMap" -}}ironedge-hub-ca{{- end -}}
{{- define "ironedge-device.storeClaim" -}}ironedge-edgehub-store{{- end -}}
{{/* Secrets the agent writes and the edge hub mounts (crates/agent/src/labels.rs, identities.rs). */}}
{{- define "ironedge-device.edgeHubTlsSecret" -}}ironedge-edgehub-tls{{- end -}}
{{- define "ironedge-device.edgeHubIdentitiesSecret" -}}ironedge-edgehub-identities{{- end -}}

{{/* Labels on every object, beside the selector labels. */}}
{{- define "ironedge-device.labels" -}}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ironedge
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Selector labels of a component. `component` keeps these pods apart from the pods the controller
makes for modules, which carry `app.kubernetes.io/name` and `instance` too.
*/}}
{{- define "ironedge-device.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of a component's objects: `dict "root" $ "name" … "component" …`. */}}
{{- define "ironedge-device.componentLabels" -}}
{{ include "ironedge-device.labels" .root }}
{{ include "ironedge-device.selectorLabels" . }}
{{- end -}}

{{/* The image reference. */}}
{{- define "ironedge-device.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end -}}

{{/*
The device as JSON: deviceId, hostName, gateway (GatewayHostName or ""), hasKey (whether the edge
hub can get the device key) and keyRef (Secret name and key of it). Parses provisioning.connectionString,
or takes provisioning.deviceId/hubHostName with provisioning.existingSecret; fails with what to fix.
*/}}
{{- define "ironedge-device.device" -}}
{{- $p := .Values.provisioning -}}
{{- $out := dict "deviceId" $p.deviceId "hostName" $p.hubHostName "gateway" "" "hasKey" false "keyRef" (dict) -}}
{{- if and $p.connectionString $p.existingSecret -}}
{{- fail "provisioning: set provisioning.connectionString or provisioning.existingSecret, not both" -}}
{{- else if $p.connectionString -}}
{{- $fields := dict -}}
{{- range (splitList ";" (trim $p.connectionString)) -}}
{{- if trim . -}}
{{- $kv := regexSplit "=" . 2 -}}
{{- if lt (len $kv) 2 -}}
{{- fail (printf "provisioning.connectionString: %q is not Name=value; give the edge device's connection string (HostName=…;DeviceId=…;SharedAccessKey=…)" (trim (index $kv 0))) -}}
{{- end -}}
{{- $_ := set $fields (trim (index $kv 0)) (trim (index $kv 1)) -}}
{{- end -}}
{{- end -}}
{{- if or (hasKey $fields "ModuleId") (hasKey $fields "SharedAccessKeyName") -}}
{{- fail "provisioning.connectionString is not a device connection string (it has a ModuleId or SharedAccessKeyName); use the edge device's own connection string" -}}
{{- end -}}
{{- range list "HostName" "DeviceId" "SharedAccessKey" -}}
{{- if not (get $fields .) -}}
{{- fail (printf "provisioning.connectionString has no %s; give the edge device's connection string (HostName=…;DeviceId=…;SharedAccessKey=…)" .) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $out "deviceId" (get $fields "DeviceId") -}}
{{- $_ := set $out "hostName" (get $fields "HostName") -}}
{{- $_ := set $out "gateway" (get $fields "GatewayHostName" | default "") -}}
{{- $_ := set $out "hasKey" true -}}
{{- $_ := set $out "keyRef" (dict "name" (include "ironedge-device.provisioningSecret" .) "key" "sharedAccessKey") -}}
{{- else if $p.existingSecret -}}
{{- if .Values.edgeHub.enabled -}}
{{- if not $p.deviceId -}}
{{- fail "provisioning.deviceId is required with provisioning.existingSecret (the edge hub needs the device id)" -}}
{{- end -}}
{{- if not $p.hubHostName -}}
{{- fail "provisioning.hubHostName is required with provisioning.existingSecret (the edge hub needs the hub's host name)" -}}
{{- end -}}
{{- end -}}
{{- if $p.sharedAccessKeyKey -}}
{{- $_ := set $out "hasKey" true -}}
{{- $_ := set $out "keyRef" (dict "name" $p.existingSecret "key" $p.sharedAccessKeyKey) -}}
{{- end -}}
{{- else -}}
{{- fail "provisioning: set provisioning.connectionString (the edge device's connection string) or provisioning.existingSecret (a Secret holding it)" -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* The hub's MQTT address as the agent and the edge hub dial it. */}}
{{- define "ironedge-device.hubMqtt" -}}
{{- $d := include "ironedge-device.device" . | fromJson -}}
{{- .Values.hub.mqtt | default $d.gateway | default $d.hostName -}}
{{- end -}}

{{/* The hub's REST base URL. */}}
{{- define "ironedge-device.hubRestUrl" -}}
{{- $d := include "ironedge-device.device" . | fromJson -}}
{{- .Values.hub.restUrl | default (printf "https://%s" $d.hostName) -}}
{{- end -}}

{{/* Whether a hub CA is configured (else the system bundle); fails on more than one source. */}}
{{- define "ironedge-device.hasHubCa" -}}
{{- $ca := .Values.hub.ca -}}
{{- $n := 0 -}}
{{- range list $ca.pem $ca.existingConfigMap $ca.existingSecret -}}
{{- if . }}{{ $n = add1 $n }}{{ end -}}
{{- end -}}
{{- if gt $n 1 -}}
{{- fail "hub.ca: give at most one of pem, existingConfigMap and existingSecret" -}}
{{- end -}}
{{- if gt $n 0 }}true{{ end -}}
{{- end -}}

{{/* Path of the hub CA bundle inside the containers. */}}
{{- define "ironedge-device.hubCaPath" -}}
{{- if include "ironedge-device.hasHubCa" . -}}
/etc/ironedge/hub-ca/{{ .Values.hub.ca.key }}
{{- else -}}
/etc/ssl/certs/ca-certificates.crt
{{- end -}}
{{- end -}}

{{/* The hub CA volume (only when one is configured). */}}
{{- define "ironedge-device.hubCaVolume" -}}
{{- $ca := .Values.hub.ca -}}
- name: hub-ca
{{- if $ca.existingSecret }}
  secret:
    secretName: {{ $ca.existingSecret }}
    items:
      - key: {{ $ca.key }}
        path: {{ $ca.key }}
{{- else }}
  configMap:
    name: {{ $ca.existingConfigMap | default (include "ironedge-device.hubCaConfigMap" .) }}
    items:
      - key: {{ $ca.key }}
        path: {{ $ca.key }}
{{- end }}
{{- end -}}

{{/* The agent's and the edge hub's common logging env. */}}
{{- define "ironedge-device.logEnv" -}}
- name: RUST_LOG
  value: {{ .level | quote }}
- name: IRONEDGE_LOG_FORMAT
  value: {{ .root.Values.logFormat | quote }}
{{- end -}}

{{/* The SharedAccessKey of provisioning.connectionString, as JSON {"key": …} (the key is base64). */}}
{{- define "ironedge-device.sharedAccessKey" -}}
{{- $key := "" -}}
{{- range (splitList ";" (trim .Values.provisioning.connectionString)) -}}
{{- $kv := regexSplit "=" . 2 -}}
{{- if and (eq (len $kv) 2) (eq (trim (index $kv 0)) "SharedAccessKey") }}{{ $key = trim (index $kv 1) }}{{ end -}}
{{- end -}}
{{- toJson (dict "key" $key) -}}
{{- end -}}
