{{/*
Names. Kubernetes limits most names, and every label value, to 63 characters (DNS-1123 labels),
so every name is cut to fit before a suffix is added, never after: cutting after would drop the
suffix and make two objects share a name.
*/}}

{{/* latchkey.name is the chart name, or nameOverride. */}}
{{- define "latchkey.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
latchkey.fullname is the prefix of every object name: fullnameOverride, or "<release>-<chart>"
(just "<release>" when the release name already contains the chart name).
*/}}
{{- define "latchkey.fullname" -}}
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

{{/*
latchkey.suffixed is "<fullname>-<suffix>", with the fullname cut so the whole stays within
.max characters (default 63). Call it with (dict "ctx" $ "suffix" "redis") or add "max" 52.
*/}}
{{- define "latchkey.suffixed" -}}
{{- $max := .max | default 63 | int }}
{{- $room := sub $max (add1 (len .suffix)) | int }}
{{- printf "%s-%s" (include "latchkey.fullname" .ctx | trunc $room | trimSuffix "-") .suffix }}
{{- end }}

{{/* latchkey.chart is "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "latchkey.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* latchkey.labels go on every object the chart creates. */}}
{{- define "latchkey.labels" -}}
helm.sh/chart: {{ include "latchkey.chart" . }}
app.kubernetes.io/name: {{ include "latchkey.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: latchkey
{{- end }}

{{/* latchkey.selectorLabels select the Latchkey pods. They never change across upgrades. */}}
{{- define "latchkey.selectorLabels" -}}
app.kubernetes.io/name: {{ include "latchkey.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{/* latchkey.redis.selectorLabels select the evaluation Redis pod. */}}
{{- define "latchkey.redis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "latchkey.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end }}

{{/* latchkey.serviceAccountName is the ServiceAccount the Latchkey pods run as. */}}
{{- define "latchkey.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "latchkey.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* latchkey.image is the Latchkey image reference; a digest wins over the tag. */}}
{{- define "latchkey.image" -}}
{{- include "latchkey.imageRef" (dict "image" .Values.image "defaultTag" .Chart.AppVersion) }}
{{- end }}

{{/* latchkey.imageRef renders repository[:tag][@digest] from (dict "image" ... "defaultTag" ...). */}}
{{- define "latchkey.imageRef" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .defaultTag .image.tag) }}
{{- end }}
{{- end }}

{{/* latchkey.leaderElectionNamespace holds the leader-election Lease. */}}
{{- define "latchkey.leaderElectionNamespace" -}}
{{- default .Release.Namespace .Values.leaderElection.namespace }}
{{- end }}

{{/*
Redis. Exactly one source of the Redis URL: the evaluation Redis (redis.enabled), redis.url or
redis.existingSecret. latchkey.redis.urlSecretName and latchkey.redis.urlSecretKey name the Secret
and key the Deployment reads LATCHKEY_REDIS_URL from.
*/}}
{{- define "latchkey.redis.validate" -}}
{{- $sources := 0 }}
{{- if .Values.redis.enabled }}{{ $sources = add1 $sources }}{{ end }}
{{- if .Values.redis.url }}{{ $sources = add1 $sources }}{{ end }}
{{- if .Values.redis.existingSecret }}{{ $sources = add1 $sources }}{{ end }}
{{- if eq $sources 0 }}
{{- fail "latchkey: no Redis. Set redis.enabled=true (a single Redis for evaluation), redis.url, or redis.existingSecret (a Secret whose key redis.existingSecretKey holds the URL)." }}
{{- end }}
{{- if gt $sources 1 }}
{{- fail "latchkey: give one Redis only: redis.url and redis.existingSecret each need redis.enabled=false, and exclude each other." }}
{{- end }}
{{- end }}

{{- define "latchkey.redis.fullname" -}}
{{- /* 52, not 63: the StatefulSet controller labels each pod "<name>-<10-character hash>". */ -}}
{{- include "latchkey.suffixed" (dict "ctx" . "suffix" "redis" "max" 52) }}
{{- end }}

{{- define "latchkey.redis.urlSecretName" -}}
{{- if .Values.redis.existingSecret }}
{{- .Values.redis.existingSecret }}
{{- else }}
{{- include "latchkey.suffixed" (dict "ctx" . "suffix" "redis-url") }}
{{- end }}
{{- end }}

{{- define "latchkey.redis.urlSecretKey" -}}
{{- if .Values.redis.existingSecret }}
{{- .Values.redis.existingSecretKey }}
{{- else -}}
redis-url
{{- end }}
{{- end }}

{{/*
latchkey.issuer is .Values.issuer, required, and without the mistakes the binary would refuse at
start-up (so they fail at `helm install` instead of in a crash-looping pod).
*/}}
{{- define "latchkey.issuer" -}}
{{- $issuer := required "latchkey: issuer is required: the external https URL of the token server, e.g. --set issuer=https://auth.example.com" .Values.issuer }}
{{- if hasSuffix "/" $issuer }}
{{- fail (printf "latchkey: issuer %q must not end with a slash" $issuer) }}
{{- end }}
{{- if not (or (hasPrefix "https://" $issuer) (hasPrefix "http://127.0.0.1" $issuer) (hasPrefix "http://localhost" $issuer) (hasPrefix "http://[::1]" $issuer)) }}
{{- fail (printf "latchkey: issuer %q must be an https URL (RFC 8414 §2); http is only for loopback" $issuer) }}
{{- end }}
{{- $issuer }}
{{- end }}

{{/*
latchkey.args is the Latchkey container's command line. The flags are main.go's (docs in
values.yaml). The Redis URL is not among them: it comes from a Secret as LATCHKEY_REDIS_URL, and
the namespace from the downward API as POD_NAMESPACE.
*/}}
{{- define "latchkey.args" -}}
- --listen=:8080
- {{ printf "--issuer=%s" (include "latchkey.issuer" .) | quote }}
- --mode=all
- {{ printf "--signing-key=%s" .Values.signingKey.name | quote }}
- {{ printf "--users-secret=%s" .Values.users.secretName | quote }}
{{- with .Values.watchNamespaces }}
- {{ printf "--watch-namespaces=%s" (join "," .) | quote }}
{{- end }}
- {{ printf "--leader-elect=%t" .Values.leaderElection.enabled | quote }}
{{- if .Values.leaderElection.enabled }}
- {{ printf "--leader-election-namespace=%s" (include "latchkey.leaderElectionNamespace" .) | quote }}
{{- end }}
{{- if .Values.metrics.enabled }}
- --metrics-bind-address=:9090
{{- else }}
- --metrics-bind-address=0
{{- end }}
- --health-probe-bind-address=:8081
- {{ printf "--client-secret-grace-period=%s" .Values.clientSecretGracePeriod | quote }}
{{- with .Values.trustedProxies }}
- {{ printf "--trusted-proxies=%s" (join "," .) | quote }}
{{- end }}
- {{ printf "--zap-log-level=%v" .Values.logLevel | quote }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/* latchkey.redis.conf is the evaluation Redis's configuration, from (dict "ctx" $ "password" ...). */}}
{{- define "latchkey.redis.conf" -}}
port 6379
dir /data
requirepass {{ .password }}
# Token state must survive a Redis restart when persistence is on: log every write, sync each second.
appendonly {{ ternary "yes" "no" .ctx.Values.redis.persistence.enabled }}
appendfsync everysec
save ""
# Refresh tokens and sessions are state, not cache: refuse writes rather than evict them.
maxmemory-policy noeviction
{{- end }}

{{/*
latchkey.clientSecretRules are what the OAuthClient controller needs where OAuthClients live:
read every client Secret (Generated and External; RBAC cannot narrow to the labelled ones, the
manager's cache does), write Generated ones, and record Events on OAuthClients.
*/}}
{{- define "latchkey.clientSecretRules" -}}
# Generated client Secrets: created, rotated (on the rotate-secret annotation) and re-created if
# deleted. External ones are only read.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# A Generated Secret is owned by its OAuthClient with blockOwnerDeletion, which the
# OwnerReferencesPermissionEnforcement admission plugin allows only with this.
- apiGroups: ["auth.latchkey.dev"]
  resources: ["oauthclients/finalizers"]
  verbs: ["update"]
# Events on OAuthClients (InvalidSpec, ClientIDConflict, SecretMissing) land in their namespace.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
