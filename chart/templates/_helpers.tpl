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

{{/* The agents' ServiceAccount: their own when they write Secrets (and the chart makes accounts). */}}
{{- define "certctl.agentServiceAccountName" -}}
{{- if and .Values.kubernetesSecrets.enabled .Values.serviceAccount.create -}}
{{- printf "%s-agent" (include "certctl.fullname" .) -}}
{{- else -}}
{{- include "certctl.serviceAccountName" . -}}
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
{{- include "certctl.validatePodSecurity" . -}}
{{- include "certctl.validateAgentIdentity" . -}}
{{- include "certctl.validateSecretsTarget" . -}}
{{- include "certctl.validateConnectionBudget" . -}}
{{- include "certctl.validateBackup" . -}}
{{- if and .Values.networkPolicy.enabled (not .Values.postgresql.enabled) -}}
{{- $_ := include "certctl.externalDatabaseEgress" . -}}
{{- end -}}
{{- end -}}

{{/*
The Secrets target: the agents hold the keys, so they write the Secrets, and only into the
namespaces listed (one Role each).
*/}}
{{- define "certctl.validateSecretsTarget" -}}
{{- $k := .Values.kubernetesSecrets -}}
{{- if $k.enabled -}}
{{- if not .Values.agent.enabled -}}
{{- fail "kubernetesSecrets.enabled=true needs agent.enabled=true: the agents hold the private keys and are the ones that write the Secrets" -}}
{{- end -}}
{{- if not $k.namespaces -}}
{{- fail `kubernetesSecrets.enabled=true needs kubernetesSecrets.namespaces, the namespaces certificates may name as targets (each gets a Role letting the agents create and patch Secrets there, nothing more): --set-json 'kubernetesSecrets.namespaces=["apps"]'` -}}
{{- end -}}
{{- if and .Values.networkPolicy.enabled .Values.networkPolicy.agent.enabled -}}
{{- $_ := include "certctl.apiServerEgress" . -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The agents' egress to the Kubernetes API (Secrets target with the agent NetworkPolicy):
kubernetesSecrets.apiServer.cidrs, else the default/kubernetes Service's address and its
endpoints' addresses as the cluster has them at install time (policies match addresses,
and CNIs differ in whether they see the Service address or the endpoint's).
*/}}
{{- define "certctl.apiServerEgress" -}}
{{- $k := .Values.kubernetesSecrets.apiServer -}}
{{- $cidrs := $k.cidrs | default list -}}
{{- if not $cidrs -}}
{{- $svc := lookup "v1" "Service" "default" "kubernetes" -}}
{{- with $svc.spec }}{{ with .clusterIP }}{{ $cidrs = append $cidrs (printf "%s/%s" . (ternary "128" "32" (contains ":" .))) }}{{ end }}{{ end -}}
{{- $slices := lookup "discovery.k8s.io/v1" "EndpointSlice" "default" "" -}}
{{- range ($slices.items | default list) -}}
{{- if eq (index (.metadata.labels | default dict) "kubernetes.io/service-name") "kubernetes" -}}
{{- range .endpoints }}{{ range .addresses }}{{ $cidrs = append $cidrs (printf "%s/%s" . (ternary "128" "32" (contains ":" .))) }}{{ end }}{{ end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if not $cidrs -}}
{{- fail `kubernetesSecrets with networkPolicy.agent.enabled: the agents' egress to the Kubernetes API cannot be derived (no cluster to look up the default/kubernetes Service in, as under helm template): --set-json 'kubernetesSecrets.apiServer.cidrs=["10.96.0.1/32","172.18.0.2/32"]' with the API's Service address and endpoint addresses (kubectl get endpointslices -n default -l kubernetes.io/service-name=kubernetes)` -}}
{{- end -}}
# The Kubernetes API, for the Secrets target.
- to:
    {{- range uniq $cidrs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    {{- range $k.ports }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
{{- end -}}

{{/*
Agent identity: an agent is its pod's name plus the credential in its key directory. A
StatefulSet keeps the name, so it must keep the directory too; other kinds have no claim
per pod to keep it on.
*/}}
{{- define "certctl.validateAgentIdentity" -}}
{{- $a := .Values.agent -}}
{{- if $a.enabled -}}
{{- if and (eq $a.kind "StatefulSet") (not $a.persistence.enabled) -}}
{{- fail "agent.kind=StatefulSet needs agent.persistence.enabled=true: a replaced pod comes back with its name but an empty key directory, and the server refuses that name without its credential (agent_credential_invalid); --set agent.persistence.enabled=true, or keep the default --set agent.kind=DaemonSet (each pod its own agent)" -}}
{{- end -}}
{{- if and $a.persistence.enabled (ne $a.kind "StatefulSet") -}}
{{- fail (printf "agent.persistence.enabled=true needs --set agent.kind=StatefulSet: a %s gives its pods new names and no claim of their own, so nothing would keep an agent's identity (see the chart README, \"Agent identity\")" $a.kind) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Pod Security: every securityContext map the chart turns into pods is checked against the
level the operator says the namespace enforces, so a breaking value fails here with the
fix instead of as a FailedCreate event at admission.
*/}}
{{- define "certctl.validatePodSecurity" -}}
{{- $level := .Values.podSecurity.level | toString -}}
{{- $maps := list (list "server" .Values.server.securityContext) -}}
{{- if .Values.agent.enabled }}{{ $maps = append $maps (list "agent" .Values.agent.securityContext) }}{{ end -}}
{{- if or .Values.postgresql.enabled .Values.backup.enabled }}{{ $maps = append $maps (list "postgresql" .Values.postgresql.securityContext) }}{{ end -}}
{{- range $maps -}}
{{- include "certctl.checkSecurityContext" (dict "level" $level "component" (index . 0) "sc" (index . 1)) -}}
{{- end -}}
{{- if and .Values.postgresql.enabled .Values.postgresql.volumePermissions.enabled (eq $level "restricted") -}}
{{- fail `postgresql.volumePermissions.enabled=true runs a root init container with CAP_CHOWN, which Pod Security "restricted" forbids: use a StorageClass whose volumes honour fsGroup or are writable by uid 999 (see chart/README.md, "Pod Security and storage") and drop --set postgresql.volumePermissions.enabled=true, or, in a namespace enforcing "baseline", add --set podSecurity.level=baseline` -}}
{{- end -}}
{{- end -}}

{{/* One operator securityContext map against a level: (dict "level" L "component" C "sc" MAP). */}}
{{- define "certctl.checkSecurityContext" -}}
{{- $level := .level -}}
{{- if ne $level "privileged" -}}
{{- $key := printf "%s.securityContext" .component -}}
{{- $sc := .sc | default dict -}}
{{- $or := printf ", or set podSecurity.level to the level your namespace enforces (now %s)" $level -}}
{{- $why := printf "Pod Security %q refuses the pod otherwise" $level -}}
{{- if $sc.privileged -}}
{{- fail (printf "%s.privileged=true: %s; unset it%s" $key $why $or) -}}
{{- end -}}
{{- $caps := $sc.capabilities | default dict -}}
{{- $seccomp := (($sc.seccompProfile | default dict).type | default "") | toString -}}
{{- if eq $seccomp "Unconfined" -}}
{{- fail (printf "%s.seccompProfile.type=Unconfined: %s; --set %s.seccompProfile.type=RuntimeDefault%s" $key $why $key $or) -}}
{{- end -}}
{{- $allowedAdd := list "AUDIT_WRITE" "CHOWN" "DAC_OVERRIDE" "FOWNER" "FSETID" "KILL" "MKNOD" "NET_BIND_SERVICE" "SETFCAP" "SETGID" "SETPCAP" "SETUID" "SYS_CHROOT" -}}
{{- if eq $level "restricted" }}{{ $allowedAdd = list "NET_BIND_SERVICE" }}{{ end -}}
{{- range ($caps.add | default list) -}}
{{- if not (has (toString .) $allowedAdd) -}}
{{- fail (printf "%s.capabilities.add has %s, but Pod Security %q allows adding only %s; remove it%s" $key . $level (join ", " $allowedAdd) $or) -}}
{{- end -}}
{{- end -}}
{{- if and $sc.procMount (ne (toString $sc.procMount) "Default") -}}
{{- fail (printf "%s.procMount=%s: %s; unset it%s" $key $sc.procMount $why $or) -}}
{{- end -}}
{{- $se := $sc.seLinuxOptions | default dict -}}
{{- if or $se.user $se.role (and $se.type (not (has (toString $se.type) (list "container_t" "container_init_t" "container_kvm_t" "container_engine_t")))) -}}
{{- fail (printf "%s.seLinuxOptions: user and role must be unset and type one of container_t, container_init_t, container_kvm_t, container_engine_t: %s%s" $key $why $or) -}}
{{- end -}}
{{- $safeSysctls := list "kernel.shm_rmid_forced" "net.ipv4.ip_local_port_range" "net.ipv4.tcp_syncookies" "net.ipv4.ping_group_range" "net.ipv4.ip_unprivileged_port_start" "net.ipv4.ip_local_reserved_ports" "net.ipv4.tcp_keepalive_time" "net.ipv4.tcp_fin_timeout" "net.ipv4.tcp_keepalive_intvl" "net.ipv4.tcp_keepalive_probes" "net.ipv4.tcp_rmem" "net.ipv4.tcp_wmem" -}}
{{- range ($sc.sysctls | default list) -}}
{{- if not (has (toString .name) $safeSysctls) -}}
{{- fail (printf "%s.sysctls has %s, not one of the safe sysctls (%s): %s; remove it%s" $key .name (join ", " $safeSysctls) $why $or) -}}
{{- end -}}
{{- end -}}
{{- if eq $level "restricted" -}}
{{- if ne (toString $sc.runAsNonRoot) "true" -}}
{{- fail (printf "%s.runAsNonRoot must be true: %s; --set %s.runAsNonRoot=true%s" $key $why $key $or) -}}
{{- end -}}
{{- if and (hasKey $sc "runAsUser") (not (kindIs "invalid" $sc.runAsUser)) (eq (int $sc.runAsUser) 0) -}}
{{- fail (printf "%s.runAsUser=0 runs as root: %s; --set %s.runAsUser=UID with a non-zero UID%s" $key $why $key $or) -}}
{{- end -}}
{{- if ne (toString $sc.allowPrivilegeEscalation) "false" -}}
{{- fail (printf "%s.allowPrivilegeEscalation must be false: %s; --set %s.allowPrivilegeEscalation=false%s" $key $why $key $or) -}}
{{- end -}}
{{- if not (has $seccomp (list "RuntimeDefault" "Localhost")) -}}
{{- fail (printf "%s.seccompProfile.type must be RuntimeDefault or Localhost: %s; --set %s.seccompProfile.type=RuntimeDefault%s" $key $why $key $or) -}}
{{- end -}}
{{- if not (has "ALL" ($caps.drop | default list)) -}}
{{- fail (printf `%s.capabilities.drop must contain ALL: %s; --set-json '%s.capabilities.drop=["ALL"]'%s` $key $why $key $or) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Connection budget of the bundled PostgreSQL: every server pod (plus the one a rolling
update adds per four replicas, the Deployment's default 25% surge) may open its whole
pool, and a backup run holds one connection. Exceeding max_connections fails only under
load (SQLSTATE 53300), so it is refused here rather than warned about in NOTES, which
GitOps tools never show.
*/}}
{{- define "certctl.validateConnectionBudget" -}}
{{- if .Values.postgresql.enabled -}}
{{- $replicas := int .Values.server.replicas -}}
{{- $pods := add $replicas (div (add $replicas 3) 4) -}}
{{- $pool := int .Values.server.database.maxConnections -}}
{{- $backup := ternary 1 0 (.Values.backup.enabled | default false) -}}
{{- $need := add (mul $pods $pool) $backup -}}
{{- $max := int .Values.postgresql.maxConnections -}}
{{- if gt $need $max -}}
{{- $fit := div (sub $max $backup) (max $pods 1) -}}
{{- $lower := ternary (printf "lower the pool: --set server.database.maxConnections=%d, or " $fit) "" (ge $fit 1) -}}
{{- fail (printf "server pools can exceed the bundled PostgreSQL's max_connections: %d server pods (server.replicas=%d plus %d a rolling update adds) x server.database.maxConnections=%d + %d backup connection(s) = %d > postgresql.maxConnections=%d, and connections past it fail with SQLSTATE 53300 under load; %sraise the limit: --set postgresql.maxConnections=%d" $pods $replicas (sub $pods $replicas) $pool $backup $need $max $lower $need) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "certctl.validateBackup" -}}
{{- if and .Values.backup.enabled (not .Values.backup.sink.existingClaim) -}}
{{- fail (printf "backup.enabled=true needs a sink: --set backup.sink.existingClaim=CLAIM (an existing PersistentVolumeClaim in namespace %s, writable by uid %v / fsGroup %v, that outlives the release)" .Release.Namespace (.Values.postgresql.securityContext.runAsUser | default 999) (.Values.postgresql.securityContext.fsGroup | default 999)) -}}
{{- end -}}
{{- end -}}

{{/*
The external database as NetworkPolicy egress: a JSON list of {"cidr", "port"}, from
networkPolicy.externalDatabase.cidrs, else from externalDatabase.url when its host is an
IP address. Anything else is refused: a NetworkPolicy matches addresses, not names.
*/}}
{{- define "certctl.externalDatabaseEgress" -}}
{{- $np := .Values.networkPolicy.externalDatabase -}}
{{- $url := .Values.externalDatabase.url | toString -}}
{{- $port := 5432 -}}
{{- $cidrs := $np.cidrs | default list -}}
{{- $why := "" -}}
{{- if .Values.externalDatabase.existingSecret -}}
{{- $why = printf "its URL is in Secret %s, which the chart does not read" .Values.externalDatabase.existingSecret -}}
{{- else -}}
{{- $u := urlParse $url -}}
{{- $host := $u.host | toString -}}
{{- $name := $u.hostname | toString -}}
{{- with regexFind ":[0-9]+$" $host }}{{ $port = trimPrefix ":" . | atoi }}{{ end -}}
{{- if or (contains "," $host) (regexMatch "(^|&)host(addr)?=" ($u.query | toString)) -}}
{{- $why = "externalDatabase.url names several hosts or sets host/hostaddr parameters" -}}
{{- else if regexMatch `^[0-9]{1,3}(\.[0-9]{1,3}){3}$` $name -}}
{{- range splitList "." $name }}{{ if gt (atoi .) 255 }}{{ fail (printf "externalDatabase.url: %s is not an IPv4 address" $name) }}{{ end }}{{ end -}}
{{- if not $cidrs }}{{ $cidrs = list (printf "%s/32" $name) }}{{ end -}}
{{- else if and (contains ":" $name) (regexMatch "^[0-9A-Fa-f:.]+$" $name) -}}
{{- if not $cidrs }}{{ $cidrs = list (printf "%s/128" $name) }}{{ end -}}
{{- else -}}
{{- $why = printf "externalDatabase.url's host %q is a DNS name" $name -}}
{{- end -}}
{{- end -}}
{{- if not (kindIs "invalid" $np.port) }}{{ $port = int $np.port }}{{ end -}}
{{- if not $cidrs -}}
{{- fail (printf `networkPolicy.enabled=true with an external database: the server's egress to it cannot be derived (%s; a NetworkPolicy matches addresses, not names): --set-json 'networkPolicy.externalDatabase.cidrs=["10.0.0.5/32"]' with the address block(s) the database answers on, and --set networkPolicy.externalDatabase.port=PORT unless it is %d` $why $port) -}}
{{- end -}}
{{- $out := list -}}
{{- range $cidrs }}{{ $out = append $out (dict "cidr" . "port" $port) }}{{ end -}}
{{- toJson $out -}}
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

{{/* NetworkPolicy egress rule: DNS (any resolver, UDP and TCP 53). */}}
{{- define "certctl.egressToDns" -}}
- ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end -}}

{{/* NetworkPolicy egress rules of a database client: DNS and the database, bundled or external. */}}
{{- define "certctl.egressToDatabase" -}}
{{ include "certctl.egressToDns" . }}
{{- if .Values.postgresql.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "certctl.selectorLabels" (dict "ctx" $ "component" "postgresql") | nindent 10 }}
  ports:
    - protocol: TCP
      port: 5432
{{- else }}
{{- range (include "certctl.externalDatabaseEgress" . | fromJsonArray) }}
- to:
    - ipBlock:
        cidr: {{ .cidr | quote }}
  ports:
    - protocol: TCP
      port: {{ .port }}
{{- end }}
{{- end }}
{{- end -}}
