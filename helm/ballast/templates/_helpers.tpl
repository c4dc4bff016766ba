{{/* Names, labels and the settings more than one template needs. */}}

{{- define "ballast.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every resource name: the release name, with the chart name
appended unless the release name already contains it. Truncated so that
"-operator"/"-agent-config" suffixes still fit in 63 characters.
*/}}
{{- define "ballast.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 48 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 48 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 48 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ballast.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every resource. */}}
{{- define "ballast.labels" -}}
helm.sh/chart: {{ include "ballast.chart" . }}
app.kubernetes.io/name: {{ include "ballast.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ballast
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: include "ballast.selectorLabels" (list . "operator") */}}
{{- define "ballast.selectorLabels" -}}
{{- $ctx := index . 0 -}}
app.kubernetes.io/name: {{ include "ballast.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "ballast.operator.fullname" -}}
{{- printf "%s-operator" (include "ballast.fullname" .) -}}
{{- end -}}

{{- define "ballast.agent.fullname" -}}
{{- printf "%s-agent" (include "ballast.fullname" .) -}}
{{- end -}}

{{- define "ballast.operator.serviceAccountName" -}}
{{- default (include "ballast.operator.fullname" .) .Values.operator.serviceAccount.name -}}
{{- end -}}

{{- define "ballast.agent.serviceAccountName" -}}
{{- default (include "ballast.agent.fullname" .) .Values.agent.serviceAccount.name -}}
{{- end -}}

{{- define "ballast.test.fullname" -}}
{{- printf "%s-test" (include "ballast.fullname" .) -}}
{{- end -}}

{{/*
The annotations of a `helm test` hook of the given weight (lower runs first):
include "ballast.test.hook" "-3". The ServiceAccount, Role and RoleBinding
are deleted when the test passes, kept when it fails, and replaced by the
next `helm test`; the Pod (weight "0") is kept either way, so that `helm test
--logs` can read it after it passed (helm reads the logs after deleting
hook-succeeded hooks), until the next `helm test` replaces it.
*/}}
{{- define "ballast.test.hook" -}}
helm.sh/hook: test
helm.sh/hook-weight: {{ . | quote }}
helm.sh/hook-delete-policy: {{ if eq . "0" }}before-hook-creation{{ else }}before-hook-creation,hook-succeeded{{ end }}
{{- end -}}

{{- define "ballast.agent.configMapName" -}}
{{- printf "%s-agent-config" (include "ballast.fullname" .) -}}
{{- end -}}

{{/* image reference: include "ballast.image" (list . .Values.operator.image) */}}
{{- define "ballast.image" -}}
{{- $ctx := index . 0 -}}
{{- $img := index . 1 -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default $ctx.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The object store's location string, or "" for none: objectStore.location
as given, else s3://BUCKET[/PREFIX][?endpoint=...&region=...&path_style=...&create_mode=...].
*/}}
{{- define "ballast.objectStore.location" -}}
{{- $o := .Values.objectStore -}}
{{- if and $o.location $o.bucket -}}
{{- fail "objectStore: set either location or bucket (with prefix, endpoint, region), not both" -}}
{{- end -}}
{{- if $o.location -}}
{{- $o.location -}}
{{- else if $o.bucket -}}
{{- $q := list -}}
{{- if $o.endpoint }}{{ $q = append $q (printf "endpoint=%s" $o.endpoint) }}{{ end -}}
{{- if $o.region }}{{ $q = append $q (printf "region=%s" $o.region) }}{{ end -}}
{{- if kindIs "bool" $o.pathStyle }}{{ $q = append $q (printf "path_style=%t" $o.pathStyle) }}{{ end -}}
{{- if $o.createMode }}{{ $q = append $q (printf "create_mode=%s" $o.createMode) }}{{ end -}}
{{- $prefix := trimAll "/" $o.prefix -}}
{{- printf "s3://%s" $o.bucket -}}{{- if $prefix }}/{{ $prefix }}{{ end -}}
{{- if $q }}?{{ join "&" $q }}{{ end -}}
{{- else if or $o.endpoint $o.prefix $o.region -}}
{{- fail "objectStore: endpoint, prefix or region is set but bucket is empty" -}}
{{- end -}}
{{- end -}}

{{/* Whether the chart creates the object-store Secret. */}}
{{- define "ballast.objectStore.createSecret" -}}
{{- $c := .Values.objectStore.credentials -}}
{{- if and $c.existingSecret (or $c.accessKeyId $c.secretAccessKey $c.sessionToken) -}}
{{- fail "objectStore.credentials: set either existingSecret or accessKeyId/secretAccessKey, not both" -}}
{{- end -}}
{{- if or $c.accessKeyId $c.secretAccessKey $c.sessionToken -}}
{{- if not (and $c.accessKeyId $c.secretAccessKey) -}}
{{- fail "objectStore.credentials: accessKeyId and secretAccessKey must both be set" -}}
{{- end -}}
{{- if not (include "ballast.objectStore.location" .) -}}
{{- fail "objectStore.credentials are set but there is no object store (objectStore.bucket or objectStore.location)" -}}
{{- end -}}
true
{{- end -}}
{{- end -}}

{{/*
Fails when an S3 store has no credentials: the daemons refuse to start
without them. Credentials from operator.extraEnv / agent.extraEnv (an
injector, say) count.
*/}}
{{- define "ballast.objectStore.checkCredentials" -}}
{{- $location := include "ballast.objectStore.location" . -}}
{{- if hasPrefix "s3://" $location -}}
{{- $have := include "ballast.objectStore.secretName" . -}}
{{- range $who := list "operator" "agent" -}}
{{- $v := index $.Values $who -}}
{{- $env := list -}}
{{- range $v.extraEnv }}{{ $env = append $env .name }}{{ end -}}
{{- $secret := $have -}}
{{- if eq $who "agent" }}{{ $secret = default $have $.Values.objectStore.agentExistingSecret }}{{ end -}}
{{- if not (or $secret (has "AWS_ACCESS_KEY_ID" $env)) -}}
{{- fail (printf "objectStore: the %s needs S3 credentials: set objectStore.credentials.existingSecret (or accessKeyId and secretAccessKey)" $who) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The Secret with the operator's object-store credentials, or "". */}}
{{- define "ballast.objectStore.secretName" -}}
{{- if .Values.objectStore.credentials.existingSecret -}}
{{- .Values.objectStore.credentials.existingSecret -}}
{{- else if include "ballast.objectStore.createSecret" . -}}
{{- printf "%s-object-store" (include "ballast.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
AWS_* environment variables from a Secret:
include "ballast.objectStore.env" (list . SECRETNAME)
*/}}
{{- define "ballast.objectStore.env" -}}
{{- $ctx := index . 0 -}}
{{- $secret := index . 1 -}}
{{- $c := $ctx.Values.objectStore.credentials -}}
{{- if $secret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $c.accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $c.secretAccessKeyKey }}
- name: AWS_SESSION_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $c.sessionTokenKey }}
      optional: true
{{- end }}
{{- end -}}

{{/* The agents' local configuration file (docs/agent-cache.md). */}}
{{- define "ballast.agent.config" -}}
{{- $a := .Values.agent -}}
{{- $root := clean $a.rootDir -}}
{{- $cache := clean $a.cacheDir -}}
{{- if or (eq $root $cache) (hasPrefix (printf "%s/" $cache) $root) (hasPrefix (printf "%s/" $root) $cache) (eq $root "/") (eq $cache "/") -}}
{{- fail (printf "agent.rootDir (%s) and agent.cacheDir (%s) must not overlap" $root $cache) -}}
{{- end -}}
rootDir: {{ $root | quote }}
cacheDir: {{ $cache | quote }}
pollInterval: {{ $a.pollInterval | quote }}
heartbeatInterval: {{ $a.heartbeatInterval | quote }}
cacheKeep: {{ $a.cacheKeep }}
{{- if $a.reloadActions }}
reloadActions:
{{- range $name, $action := $a.reloadActions }}
  {{ $name | quote }}:
{{- range $k, $v := $action }}
{{- if kindIs "slice" $v }}
    {{ $k }}:
{{- range $v }}
      - {{ toString . | quote }}
{{- end }}
{{- else if kindIs "string" $v }}
    {{ $k }}: {{ $v | quote }}
{{- else }}
    {{ $k }}: {{ $v }}
{{- end }}
{{- end }}
{{- end }}
{{- else }}
reloadActions: {}
{{- end }}
{{- end -}}

{{/* Whether the agents mount the host's D-Bus system bus. */}}
{{- define "ballast.agent.mountSystemdBus" -}}
{{- $m := .Values.agent.systemdBus.mount -}}
{{- if eq $m "always" -}}
true
{{- else if eq $m "auto" -}}
{{- range $name, $action := .Values.agent.reloadActions -}}
{{- if hasKey $action "systemdUnit" }}true{{ end -}}
{{- end -}}
{{- end -}}
{{- end -}}
