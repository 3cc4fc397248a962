{{/* Chart name, overridable. */}}
{{- define "certctl.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fullname F = <release>-certctl unless the release name already contains the chart name. */}}
{{- define "certctl.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "certctl.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels shared by every object. */}}
{{- define "certctl.labels" -}}
helm.sh/chart: {{ include "certctl.chart" . }}
app.kubernetes.io/name: {{ include "certctl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: call with (dict "ctx" $ "component" "server"). */}}
{{- define "certctl.selectorLabels" -}}
app.kubernetes.io/name: {{ include "certctl.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Full labels of one component. */}}
{{- define "certctl.componentLabels" -}}
{{ include "certctl.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "certctl.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "certctl.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* image reference: call with (dict "image" .Values.server.image "ctx" $). */}}
{{- define "certctl.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag | toString) -}}
{{- end -}}

{{/* Name of the Secret holding the server's tls.crt, tls.key and ca.crt. */}}
{{- define "certctl.tlsSecretName" -}}
{{- if .Values.server.tls.existingSecret -}}
{{- .Values.server.tls.existingSecret -}}
{{- else -}}
{{- default (printf "%s-server-tls" (include "certctl.fullname" .)) .Values.server.tls.certManager.secretName -}}
{{- end -}}
{{- end -}}

{{/* In-cluster DNS name the server certificate must be valid for. */}}
{{- define "certctl.serverHost" -}}
{{- printf "%s-server.%s.svc" (include "certctl.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/* The API keys as a list, blanks dropped. */}}
{{- define "certctl.apiKeys" -}}
{{- $keys := list -}}
{{- range (splitList "," (.Values.server.auth.apiKey | toString)) -}}
{{- if trim . }}{{ $keys = append $keys (trim .) }}{{ end -}}
{{- end -}}
{{- join "," $keys -}}
{{- end -}}

{{/* Bundled database URL (the password comes separately, from the postgres Secret). */}}
{{- define "certctl.bundledDatabaseUrl" -}}
{{- $pg := .Values.postgresql.auth -}}
{{- printf "postgres://%s@%s-postgres:5432/%s?sslmode=disable" $pg.username (include "certctl.fullname" .) $pg.database -}}
{{- end -}}

{{/* Where the server reads its external database URL: (secret name, key). */}}
{{- define "certctl.externalDatabaseSecretName" -}}
{{- default (printf "%s-server" (include "certctl.fullname" .)) .Values.externalDatabase.existingSecret -}}
{{- end -}}
{{- define "certctl.externalDatabaseSecretKey" -}}
{{- if .Values.externalDatabase.existingSecret -}}{{ .Values.externalDatabase.existingSecretKey }}{{- else -}}database-url{{- end -}}
{{- end -}}

{{/*
securityContext split. Operators write ONE map; the Kubernetes API accepts some fields
only on the pod and others only on the container, and silently drops a field at the wrong
scope. Call with the operator map.
*/}}
{{- define "certctl.podSecurityContext" -}}
{{- $podKeys := list "runAsNonRoot" "runAsUser" "runAsGroup" "fsGroup" "fsGroupChangePolicy" "supplementalGroups" "seLinuxOptions" "seccompProfile" "sysctls" -}}
{{- $out := dict -}}
{{- range $k, $v := . -}}
{{- if has $k $podKeys }}{{ $_ := set $out $k $v }}{{ end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{- define "certctl.containerSecurityContext" -}}
{{- $containerKeys := list "readOnlyRootFilesystem" "allowPrivilegeEscalation" "capabilities" "privileged" "procMount" -}}
{{- $out := dict -}}
{{- range $k, $v := . -}}
{{- if has $k $containerKeys }}{{ $_ := set $out $k $v }}{{ end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/*
Extra env as list entries. Accepts a map NAME: value (an object value becomes valueFrom)
or a list of EnvVar objects. Upstream inserted the map itself into the list, which is
not a valid env list.
*/}}
{{- define "certctl.extraEnv" -}}
{{- if kindIs "map" . -}}
{{- $env := . -}}
{{- range $name := keys $env | sortAlpha }}
{{- $value := get $env $name }}
- name: {{ $name }}
{{- if kindIs "map" $value }}
  valueFrom:
    {{- toYaml $value | nindent 4 }}
{{- else }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- else if . }}
{{ toYaml . }}
{{- end -}}
{{- end -}}

{{/*
Template-time refusals. Each message says exactly what to set.
*/}}
{{- define "certctl.validate" -}}
{{- $tls := .Values.server.tls -}}
{{- if and $tls.existingSecret $tls.certManager.enabled -}}
{{- fail "server TLS: server.tls.existingSecret and server.tls.certManager.enabled are both set; choose EXACTLY ONE TLS ownership path: unset one with --set server.tls.existingSecret= or --set server.tls.certManager.enabled=false" -}}
{{- end -}}
{{- if not (or $tls.existingSecret $tls.certManager.enabled) -}}
{{- fail "server TLS: no certificate source; set EXACTLY ONE TLS ownership path: --set server.tls.existingSecret=NAME (a Secret with tls.crt, tls.key and ca.crt) or --set server.tls.certManager.enabled=true --set server.tls.certManager.issuerRef.name=ISSUER" -}}
{{- end -}}
{{- if and $tls.certManager.enabled (not $tls.certManager.issuerRef.name) -}}
{{- fail "server TLS: server.tls.certManager.enabled=true needs an issuer: --set server.tls.certManager.issuerRef.name=ISSUER (kind defaults to ClusterIssuer; --set server.tls.certManager.issuerRef.kind=Issuer for a namespaced one)" -}}
{{- end -}}
{{- $auth := .Values.server.auth.type | toString -}}
{{- if eq $auth "jwt" -}}
{{- fail "server.auth.type=jwt is not supported: certctl does not validate JWTs itself. Put an authenticating gateway (for example oauth2-proxy or your API gateway) in front of the server to validate JWTs, and keep --set server.auth.type=api-key between the gateway and the server" -}}
{{- else if not (has $auth (list "api-key" "none")) -}}
{{- fail (printf "server.auth.type=%q is not supported: use --set server.auth.type=api-key (or none behind an authenticating gateway)" $auth) -}}
{{- end -}}
{{- if and (eq $auth "api-key") (not (include "certctl.apiKeys" .)) -}}
{{- fail "server.auth.apiKey is required with server.auth.type=api-key: --set server.auth.apiKey=$(openssl rand -hex 32)" -}}
{{- end -}}
{{- if .Values.postgresql.enabled -}}
{{- if not .Values.postgresql.auth.password -}}
{{- fail "postgresql.auth.password is required with the bundled PostgreSQL (there is no default password): --set postgresql.auth.password=$(openssl rand -hex 24). It is bound at first start; see the chart README before changing it later" -}}
{{- end -}}
{{- else if not (or .Values.externalDatabase.url .Values.externalDatabase.existingSecret) -}}
{{- fail "externalDatabase.url is required with postgresql.enabled=false: --set externalDatabase.url='postgres://USER:PASSWORD@HOST:5432/DB?sslmode=require' (or --set externalDatabase.existingSecret=NAME holding key database-url)" -}}
{{- end -}}
{{- end -}}

{{/*
Where the agent's key volume is mounted: the parent of agent.keyDir.
*/}}
{{- define "certctl.agentKeyVolumePath" -}}
{{- $parent := dir (clean .Values.agent.keyDir) -}}
{{- if or (eq $parent "/") (eq $parent ".") -}}
{{- fail (printf "agent.keyDir %q must be an absolute path at least two levels deep (e.g. /var/lib/certctl/keys): its parent directory is mounted as the agent's writable volume" .Values.agent.keyDir) -}}
{{- end -}}
{{- $parent -}}
{{- end }}
