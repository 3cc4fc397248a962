//! The mutants. Each puts back one defect the chart's Bundle-3 audit closed (C2, D1..D12)
//! or breaks one promise the suite proves, and names the tests expected to kill it,
//! cheapest first. To add one: a new entry here, its edits as exact text of today's files
//! (each must occur exactly once), its killers; `docs/mutants.md` says more.

use super::{Edit, Killer, Mutant};

const HELPERS: &str = "chart/templates/_helpers.tpl";
const SERVER: &str = "chart/templates/server-deployment.yaml";
const AGENT: &str = "chart/templates/agent-workload.yaml";
const NETPOL: &str = "chart/templates/networkpolicy.yaml";
const MONITOR: &str = "chart/templates/servicemonitor.yaml";
const PDB: &str = "chart/templates/poddisruptionbudget.yaml";
const VALUES: &str = "chart/values.yaml";

/// Every mutant, in report order.
pub fn catalogue() -> Vec<Mutant> {
    let mut all = vec![readme_install_with_a_wrong_key()];
    all.extend(refusals_removed());
    all.push(changeme_fallback());
    all.extend(postgres_not_gated());
    all.extend(container_fields_at_pod_scope());
    all.extend(service_monitor());
    all.extend(disruption_and_network());
    all.push(pool_size_not_wired());
    all.extend(promises());
    all.extend(lifecycle());
    all.extend(secret_target());
    all.extend(server_mutants());
    all
}

fn mutant(id: &'static str, reintroduces: &'static str, edits: Vec<Edit>, killers: Vec<Killer>) -> Mutant {
    Mutant { id, reintroduces, edits, killers }
}

/// A template condition replaced by a constant: the guarded refusal or object is gone
/// (`false`) or always there (`true`).
fn condition(file: &'static str, find: &str, constant: &str) -> Edit {
    let start = find.find("if ").expect("a template condition") + "if ".len();
    let end = find.rfind(" -}}").or_else(|| find.rfind(" }}")).expect("a closing delimiter");
    Edit::new(file, find, format!("{}{constant}{}", &find[..start], &find[end..]))
}

const REFUSALS: Killer = Killer::render("render_refusals", "every_refusal_says_what_to_set");
const TRUTH_TABLE: Killer = Killer::render("render_truth_table", "every_mode_renders_exactly_its_truth_table_row");
const NO_POSTGRES: Killer = Killer::render("render_truth_table", "external_mode_has_no_postgres_anything");
const STRICT: Killer = Killer::render("render_strict_schema", "");
const DEFAULT_LIVE: Killer = Killer::live("mode_keeps_its_promises::case_1_default", "default");
const EXTERNAL_LIVE: Killer = Killer::live("mode_keeps_its_promises::case_2_external_db", "external-db");
const CERT_MANAGER_LIVE: Killer = Killer::live("mode_keeps_its_promises::case_3_cert_manager", "cert-manager");
const HA_LIVE: Killer = Killer::live("mode_keeps_its_promises::case_4_ha", "ha");
const ROTATION_LIVE: Killer = Killer::live("password_rotation::", "password-rotation");
const REINSTALL_LIVE: Killer = Killer::live("reinstall::", "reinstall");
const UPGRADE_LIVE: Killer = Killer::live("upgrade::", "upgrade");
const BACKUP_LIVE: Killer = Killer::live("backup::", "backup");
const AGENT_IDENTITY_LIVE: Killer = Killer::live("agent_identity::", "agent-identity");
const SECRETS_LIVE: Killer = Killer::live("secret_target::", "secret-target");
const SECRETS_ON: Killer =
    Killer::render("render_secret_target", "on_the_agents_alone_may_create_and_patch_secrets_in_the_listed_namespaces");
const SECRETS_OFF: Killer = Killer::render("render_secret_target", "off_there_is_no_rbac_no_token_and_no_api_egress");
const RBAC: &str = "chart/templates/rbac.yaml";

/// C2: the README's own install command sets a key the chart does not read.
fn readme_install_with_a_wrong_key() -> Mutant {
    let tail = "\"$(openssl rand -hex 24)\"\n```\n\nThere is no default password";
    mutant(
        "c2-readme-sets-postgresql-password",
        "C2: the README's install command passes --set postgresql.password= (a key nothing reads)",
        vec![Edit::new("chart/README.md", format!("--set postgresql.auth.password={tail}"), format!("--set postgresql.password={tail}"))],
        vec![Killer::render("render_readme", "")],
    )
}

/// D1 and D7: each template-time refusal taken out on its own.
fn refusals_removed() -> Vec<Mutant> {
    let removed = |id, reintroduces, find: &str| mutant(id, reintroduces, vec![condition(HELPERS, find, "false")], vec![REFUSALS]);
    vec![
        removed(
            "d7-both-tls-paths-accepted",
            "D7: existingSecret and certManager both accepted",
            "{{- if and $tls.existingSecret $tls.certManager.enabled -}}",
        ),
        removed(
            "d1-no-tls-path-accepted",
            "D1: no TLS source renders (no fail-fast)",
            "{{- if not (or $tls.existingSecret $tls.certManager.enabled) -}}",
        ),
        removed(
            "d1-cert-manager-without-issuer-accepted",
            "D1: certManager without issuerRef.name renders",
            "{{- if and $tls.certManager.enabled (not $tls.certManager.issuerRef.name) -}}",
        ),
        mutant(
            "d1-jwt-accepted",
            "D1: server.auth.type=jwt renders (a server that validates nothing)",
            vec![
                condition(HELPERS, "{{- if eq $auth \"jwt\" -}}", "false"),
                Edit::new(HELPERS, "(has $auth (list \"api-key\" \"none\"))", "(has $auth (list \"api-key\" \"none\" \"jwt\"))"),
            ],
            vec![REFUSALS],
        ),
        removed(
            "d1-unknown-auth-type-accepted",
            "D1: an unknown server.auth.type renders",
            "{{- else if not (has $auth (list \"api-key\" \"none\")) -}}",
        ),
        removed(
            "d1-missing-api-key-accepted",
            "D1: api-key auth with no key renders",
            "{{- if and (eq $auth \"api-key\") (not (include \"certctl.apiKeys\" .)) -}}",
        ),
        removed(
            "d1-missing-postgres-password-accepted",
            "D1: bundled PostgreSQL with no password renders",
            "{{- if not .Values.postgresql.auth.password -}}",
        ),
        removed(
            "d1-missing-external-url-accepted",
            "D1: postgresql.enabled=false with no external URL renders",
            "{{- else if not (or .Values.externalDatabase.url .Values.externalDatabase.existingSecret) -}}",
        ),
    ]
}

/// D1: the upstream fallback password, and no refusal to force a real one.
fn changeme_fallback() -> Mutant {
    mutant(
        "d1-changeme-fallback",
        "D1: an empty postgresql.auth.password falls back to \"changeme\"",
        vec![
            condition(HELPERS, "{{- if not .Values.postgresql.auth.password -}}", "false"),
            Edit::new(
                "chart/templates/postgres-secret.yaml",
                "{{ .Values.postgresql.auth.password | toString",
                "{{ .Values.postgresql.auth.password | default \"changeme\" | toString",
            ),
        ],
        vec![Killer::render("render_refusals", "no_default_password_anywhere"), REFUSALS],
    )
}

/// D2: PostgreSQL objects (and the password env) rendered in external-database mode.
fn postgres_not_gated() -> Vec<Mutant> {
    let ungated = |id, file| {
        mutant(
            id,
            "D2: postgres-* rendered whatever postgresql.enabled says",
            vec![condition(file, "{{- if .Values.postgresql.enabled -}}", "true")],
            vec![NO_POSTGRES, TRUTH_TABLE],
        )
    };
    vec![
        ungated("d2-postgres-secret-not-gated", "chart/templates/postgres-secret.yaml"),
        ungated("d2-postgres-service-not-gated", "chart/templates/postgres-service.yaml"),
        ungated("d2-postgres-statefulset-not-gated", "chart/templates/postgres-statefulset.yaml"),
        mutant(
            "d2-server-password-env-not-gated",
            "D2: the server gets CERTCTL_DATABASE_PASSWORD from a postgres Secret that external mode does not render",
            vec![
                Edit::new(
                    SERVER,
                    "{{- if .Values.postgresql.enabled }}\n            - name: CERTCTL_DATABASE_PASSWORD",
                    "{{- if true }}\n            - name: CERTCTL_DATABASE_PASSWORD",
                ),
                Edit::new(
                    SERVER,
                    "{{- else }}\n            - name: CERTCTL_DATABASE_URL",
                    "{{- end }}\n            {{- if not .Values.postgresql.enabled }}\n            - name: CERTCTL_DATABASE_URL",
                ),
            ],
            vec![NO_POSTGRES, Killer::render("render_values", "server_env_is_wired_per_mode")],
        ),
    ]
}

/// D3: a container-only securityContext field written at pod scope, where the API
/// silently drops it — for the server and the agent, and in the shared split.
fn container_fields_at_pod_scope() -> Vec<Mutant> {
    let moved = |id, reintroduces, file, var: &str, field: &str, live| {
        let pod = format!("{{{{- include \"certctl.podSecurityContext\" {var} | nindent 8 }}}}");
        let container = format!("{{{{- include \"certctl.containerSecurityContext\" {var} | nindent 12 }}}}");
        mutant(
            id,
            reintroduces,
            vec![
                Edit::new(file, pod.clone(), format!("{pod}\n        {{{{- pick {var} \"{field}\" | toYaml | nindent 8 }}}}")),
                Edit::new(
                    file,
                    container,
                    format!("{{{{- include \"certctl.containerSecurityContext\" (omit {var} \"{field}\") | nindent 12 }}}}"),
                ),
            ],
            [vec![STRICT], live].concat(),
        )
    };
    vec![
        moved(
            "d3-server-read-only-root-at-pod-scope",
            "D3: server readOnlyRootFilesystem at pod scope (dropped: / writable)",
            SERVER,
            "$s.securityContext",
            "readOnlyRootFilesystem",
            vec![DEFAULT_LIVE],
        ),
        moved(
            "d3-server-privilege-escalation-at-pod-scope",
            "D3: server allowPrivilegeEscalation at pod scope (dropped: NoNewPrivs 0)",
            SERVER,
            "$s.securityContext",
            "allowPrivilegeEscalation",
            vec![DEFAULT_LIVE],
        ),
        moved(
            "d3-server-capabilities-at-pod-scope",
            "D3: server capabilities at pod scope (dropped: default capabilities kept)",
            SERVER,
            "$s.securityContext",
            "capabilities",
            vec![DEFAULT_LIVE],
        ),
        moved(
            "d3-agent-read-only-root-at-pod-scope",
            "D3: agent readOnlyRootFilesystem at pod scope",
            AGENT,
            "$a.securityContext",
            "readOnlyRootFilesystem",
            vec![DEFAULT_LIVE],
        ),
        moved(
            "d3-agent-privilege-escalation-at-pod-scope",
            "D3: agent allowPrivilegeEscalation at pod scope",
            AGENT,
            "$a.securityContext",
            "allowPrivilegeEscalation",
            vec![DEFAULT_LIVE],
        ),
        moved(
            "d3-agent-capabilities-at-pod-scope",
            "D3: agent capabilities at pod scope",
            AGENT,
            "$a.securityContext",
            "capabilities",
            vec![DEFAULT_LIVE],
        ),
        mutant(
            "d3-split-puts-read-only-root-at-pod-scope",
            "D3: the shared split lists readOnlyRootFilesystem as a pod field (every workload)",
            vec![
                Edit::new(HELPERS, "list \"readOnlyRootFilesystem\" ", "list "),
                Edit::new(HELPERS, "list \"runAsNonRoot\" ", "list \"runAsNonRoot\" \"readOnlyRootFilesystem\" "),
            ],
            vec![STRICT, DEFAULT_LIVE],
        ),
    ]
}

/// D5: the ServiceMonitor missing, or scraping without verifying the server.
fn service_monitor() -> Vec<Mutant> {
    let verifies = Killer::render("render_values", "service_monitor_verifies_the_server_certificate_by_default");
    vec![
        mutant(
            "d5-service-monitor-not-rendered",
            "D5: monitoring.serviceMonitor.enabled renders nothing",
            vec![condition(MONITOR, "{{- if and .Values.monitoring.enabled .Values.monitoring.serviceMonitor.enabled -}}", "false")],
            vec![TRUTH_TABLE, HA_LIVE],
        ),
        mutant(
            "d5-service-monitor-empty-tls-config",
            "D5: the ServiceMonitor's tlsConfig empty (upstream: verification silently skipped)",
            vec![Edit::new(MONITOR, "{{- if $sm.tlsConfig }}", "{{- if true }}")],
            vec![verifies.clone(), HA_LIVE],
        ),
        mutant(
            "d5-service-monitor-insecure-skip-verify",
            "D5: the ServiceMonitor scrapes with insecureSkipVerify",
            vec![Edit::new(MONITOR, "serverName: {{ include \"certctl.serverHost\" . | quote }}", "insecureSkipVerify: true")],
            vec![verifies],
        ),
    ]
}

/// D11: the PodDisruptionBudget and NetworkPolicy not doing what they say.
fn disruption_and_network() -> Vec<Mutant> {
    let pdb = "{{- if and .Values.podDisruptionBudget.enabled (gt (int .Values.server.replicas) 1) -}}";
    let netpol = Killer::render("render_values", "network_policy_admits_agents_and_allows_dns_and_bundled_postgres");
    vec![
        mutant("d11-pdb-not-rendered", "D11: podDisruptionBudget.enabled renders nothing", vec![condition(PDB, pdb, "false")], vec![
            TRUTH_TABLE,
            HA_LIVE,
        ]),
        mutant(
            "d11-pdb-with-one-replica",
            "D11: a PDB for a single replica (minAvailable 1 of 1 blocks every drain)",
            vec![Edit::new(PDB, pdb, "{{- if .Values.podDisruptionBudget.enabled -}}")],
            vec![Killer::render("render_values", "pdb_renders_only_when_enabled_and_replicated_with_exclusive_bounds")],
        ),
        mutant(
            "d11-network-policy-ingress-from-all-pods",
            "D11: the server's NetworkPolicy admits every pod of every namespace",
            vec![Edit::new(
                NETPOL,
                "    - from:\n        - podSelector:\n            matchLabels:\n              {{- include \"certctl.selectorLabels\" (dict \"ctx\" $ \"component\" \"agent\") | nindent 14 }}",
                "    - from:\n        - podSelector: {}\n          namespaceSelector: {}",
            )],
            vec![netpol.clone(), HA_LIVE],
        ),
        mutant(
            "d11-network-policy-egress-to-everything",
            "D11: the server's NetworkPolicy allows egress to everything",
            vec![Edit::new(
                NETPOL,
                "  egress:\n    {{- include \"certctl.egressToDatabase\" . | nindent 4 }}\n    {{- with $np.extraEgress }}",
                "  egress:\n    - {}\n    {{- include \"certctl.egressToDatabase\" . | nindent 4 }}\n    {{- with $np.extraEgress }}",
            )],
            vec![netpol, CERT_MANAGER_LIVE],
        ),
        mutant(
            "d11-agent-network-policy-egress-to-everything",
            "D11: the agents' NetworkPolicy allows egress to everything",
            vec![Edit::new(
                NETPOL,
                "  egress:\n    {{- include \"certctl.egressToDns\" . | nindent 4 }}\n    - to:",
                "  egress:\n    - {}\n    {{- include \"certctl.egressToDns\" . | nindent 4 }}\n    - to:",
            )],
            vec![Killer::render("render_network_policy", "agent_postgres_and_backup_get_exactly_what_they_need"), CERT_MANAGER_LIVE],
        ),
        mutant(
            "d11-postgres-network-policy-admits-every-pod",
            "D11: PostgreSQL's NetworkPolicy admits every pod of the namespace, not only the servers",
            vec![Edit::new(
                NETPOL,
                "(dict \"ctx\" $ \"component\" \"server\") | nindent 14 }}\n        {{- if .Values.backup.enabled }}",
                "(dict \"ctx\" $ \"component\" \"server\") | nindent 14 }}\n        - podSelector: {}\n        {{- if .Values.backup.enabled }}",
            )],
            vec![Killer::render("render_network_policy", "agent_postgres_and_backup_get_exactly_what_they_need"), CERT_MANAGER_LIVE],
        ),
    ]
}

/// D12: server.database.maxConnections not reaching the server.
fn pool_size_not_wired() -> Mutant {
    mutant(
        "d12-pool-size-not-wired",
        "D12: server.database.maxConnections ignored; the server always gets 25",
        vec![Edit::new(
            "chart/templates/server-configmap.yaml",
            "CERTCTL_DATABASE_MAX_CONNS: {{ .Values.server.database.maxConnections | quote }}",
            "CERTCTL_DATABASE_MAX_CONNS: \"25\"",
        )],
        vec![Killer::render("render_values", "max_connections_reach_the_server_env"), EXTERNAL_LIVE],
    )
}

/// Our own promises: every agent pod has an identity; pods run under a seccomp profile.
fn promises() -> Vec<Mutant> {
    let seccomp_removed = |id, reintroduces, context: &str| {
        let block = "    seccompProfile:\n      type: RuntimeDefault\n";
        mutant(
            id,
            reintroduces,
            vec![Edit::new(VALUES, format!("{block}{context}"), context.to_owned())],
            // Live: the scenario namespaces enforce Pod Security "restricted".
            vec![Killer::render("render_hardening", "every_pod_runs_under_the_runtime_default_seccomp_profile"), DEFAULT_LIVE],
        )
    };
    vec![
        mutant(
            "promise-agent-identity-not-set",
            "upstream defect 1: agent pods get no CERTCTL_AGENT_NAME (each agent is not its own)",
            vec![Edit::new(
                AGENT,
                "            - name: CERTCTL_AGENT_NAME\n              valueFrom:\n                fieldRef:\n                  fieldPath: metadata.name\n",
                "",
            )],
            vec![Killer::render("render_values", "agent_gets_identity_key_server_url_and_ca"), DEFAULT_LIVE],
        ),
        mutant(
            "promise-server-spread-removed",
            "HA on one node: the servers' default topology spread across nodes removed",
            vec![Edit::new(
                VALUES,
                "  topologySpreadConstraints:\n    - maxSkew: 1\n      topologyKey: kubernetes.io/hostname\n      whenUnsatisfiable: ScheduleAnyway\n",
                "  topologySpreadConstraints: []\n",
            )],
            vec![Killer::render("render_values", "server_replicas_prefer_one_per_node_with_the_server_labels"), HA_LIVE],
        ),
        seccomp_removed(
            "promise-server-seccomp-profile-removed",
            "Pod Security restricted: the server pod's seccompProfile RuntimeDefault removed",
            "    readOnlyRootFilesystem: true\n    allowPrivilegeEscalation: false\n    capabilities:\n      drop: [\"ALL\"]\n  # -- Timing of the liveness probe (GET",
        ),
        seccomp_removed(
            "promise-agent-seccomp-profile-removed",
            "Pod Security restricted: the agent pod's seccompProfile RuntimeDefault removed",
            "    readOnlyRootFilesystem: true\n    allowPrivilegeEscalation: false\n    capabilities:\n      drop: [\"ALL\"]\n  # -- Timing of the liveness probe (exec",
        ),
    ]
}

/// Data across the chart's lifecycle: what uninstall keeps, what a backup holds, what an
/// upgrade finds.
fn lifecycle() -> Vec<Mutant> {
    const POSTGRES: &str = "chart/templates/postgres-statefulset.yaml";
    const AGENT: &str = "chart/templates/agent-workload.yaml";
    vec![
        mutant(
            "life-claim-deleted-on-uninstall",
            "promise: helm uninstall keeps the database claim (the StatefulSet deletes its claims with it)",
            vec![Edit::new(
                POSTGRES,
                "spec:\n  serviceName: {{ $f }}-postgres\n",
                "spec:\n  persistentVolumeClaimRetentionPolicy:\n    whenDeleted: Delete\n    whenScaled: Retain\n  serviceName: {{ $f }}-postgres\n",
            )],
            vec![REINSTALL_LIVE],
        ),
        mutant(
            "life-backup-skips-a-table",
            "promise: a backup holds every row (the dump leaves out the jobs table's rows)",
            vec![Edit::new(
                "chart/templates/backup-cronjob.yaml",
                "pg_dump -Fc --no-password -f \"$partial\"\n                  {{- else }}",
                "pg_dump -Fc --no-password --exclude-table-data=jobs -f \"$partial\"\n                  {{- else }}",
            )],
            vec![BACKUP_LIVE],
        ),
        mutant(
            "life-upgrade-renames-the-claim-template",
            "promise: an upgrade finds the data (the database claim template renamed: installs work, upgrades cannot)",
            vec![Edit::new(POSTGRES, "        name: data\n        labels:", "        name: pgdata\n        labels:")],
            vec![UPGRADE_LIVE],
        ),
        mutant(
            "life-agent-claim-deleted-on-uninstall",
            "promise: a reinstall brings each agent back as the agent it was (the agent StatefulSet deletes its claims with it)",
            vec![Edit::new(AGENT, "    whenDeleted: Retain\n", "    whenDeleted: Delete\n")],
            vec![Killer::render("render_agent_identity", "a_stateful_agent_keeps_its_key_directory_on_a_claim_per_pod"), AGENT_IDENTITY_LIVE],
        ),
        mutant(
            "life-agent-keys-on-an-emptydir",
            "promise: agents keep their identity across pod replacement (the key directory back on an emptyDir, the claim unused)",
            vec![
                Edit::new(AGENT, "        {{- if not $a.persistence.enabled }}\n        - name: keys", "        {{- if true }}\n        - name: keys"),
                Edit::new(AGENT, "        name: keys\n        labels:", "        name: keys-unused\n        labels:"),
            ],
            vec![Killer::render("render_agent_identity", "a_stateful_agent_keeps_its_key_directory_on_a_claim_per_pod"), AGENT_IDENTITY_LIVE],
        ),
    ]
}

/// The Secrets target's least privilege, each widened on its own.
fn secret_target() -> Vec<Mutant> {
    vec![
        mutant(
            "sec-clusterrole-instead-of-role",
            "promise: agents may write Secrets only in the listed namespaces (a ClusterRole and binding grant every namespace)",
            vec![
                Edit::new(RBAC, "kind: Role\nmetadata:", "kind: ClusterRole\nmetadata:"),
                Edit::new(RBAC, "kind: RoleBinding\nmetadata:", "kind: ClusterRoleBinding\nmetadata:"),
                Edit::new(RBAC, "  kind: Role\n  name:", "  kind: ClusterRole\n  name:"),
            ],
            vec![SECRETS_ON, SECRETS_LIVE],
        ),
        mutant(
            "sec-agents-may-read-secrets",
            "promise: agents cannot read Secrets they did not write (get and list granted)",
            vec![Edit::new(RBAC, r#"verbs: ["create", "patch"]"#, r#"verbs: ["create", "patch", "get", "list"]"#)],
            vec![SECRETS_ON, SECRETS_LIVE],
        ),
        mutant(
            "sec-server-account-bound",
            "promise: the server's ServiceAccount holds no right to Secrets (the Roles bind it instead of the agents')",
            vec![Edit::new(RBAC, r#"include "certctl.agentServiceAccountName" $"#, r#"include "certctl.serviceAccountName" $"#)],
            vec![SECRETS_ON, SECRETS_LIVE],
        ),
        mutant(
            "sec-agent-token-always-mounted",
            "promise: with the Secrets target off no pod holds a ServiceAccount token",
            vec![Edit::new(
                AGENT,
                "automountServiceAccountToken: {{ .Values.kubernetesSecrets.enabled }}",
                "automountServiceAccountToken: true",
            )],
            vec![SECRETS_OFF, SECRETS_LIVE],
        ),
        mutant(
            "sec-server-token-mounted",
            "promise: the server never holds a ServiceAccount token (the agents write the Secrets)",
            vec![Edit::new(SERVER, "automountServiceAccountToken: false", "automountServiceAccountToken: true")],
            vec![SECRETS_OFF, SECRETS_LIVE],
        ),
        mutant(
            "sec-api-egress-always",
            "promise: with the Secrets target off the agents' policy keeps them off the Kubernetes API",
            vec![condition(NETPOL, "    {{- if .Values.kubernetesSecrets.enabled }}\n    {{- include \"certctl.apiServerEgress\"", "true")],
            vec![SECRETS_OFF, SECRETS_LIVE],
        ),
    ]
}

/// Mutants of the server itself: its tests are rebuilt from a scratch workspace, and
/// the live scenario then needs a server image built from it.
fn server_mutants() -> Vec<Mutant> {
    vec![
        mutant(
            "server-28p01-diagnostic-removed",
            "promise: a rotated postgresql.auth.password logs SQLSTATE 28P01 with both remediations",
            vec![Edit::new("server/src/db/diagnose.rs", "        Some(\"28P01\") => return Problem::InvalidPassword,\n", "")],
            vec![Killer::server("server", "diagnostics::wrong_password"), ROTATION_LIVE],
        ),
        mutant(
            "server-ignores-pool-size",
            "D12: the server ignoring CERTCTL_DATABASE_MAX_CONNS (pool fixed at 25)",
            vec![Edit::new("server/src/db/mod.rs", ".max_connections(config.max_connections)", ".max_connections(25)")],
            vec![Killer::server("server", "pool::"), EXTERNAL_LIVE],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_every_mutant_has_edits_and_killers() {
        let all = catalogue();
        let mut ids: Vec<_> = all.iter().map(|m| m.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), all.len(), "duplicate ids");
        for m in &all {
            assert!(!m.edits.is_empty() && !m.killers.is_empty(), "{}", m.id);
            assert!(m.edits.iter().all(|e| e.find != e.replace), "{}: an edit that changes nothing", m.id);
        }
    }

    /// Quick and helm-free: a target text that moved shows here before any render runs.
    #[test]
    fn every_mutant_applies_to_todays_workspace() {
        let workspace = certctl_harness::workspace::root();
        let failures: Vec<String> = catalogue()
            .iter()
            .flat_map(|m| m.edits.iter().map(move |e| (m.id, e)))
            .filter_map(|(id, e)| {
                let text = std::fs::read_to_string(workspace.join(e.file)).unwrap_or_default();
                let found = text.matches(e.find.as_str()).count();
                (found != 1).then(|| format!("{id}: {} holds {found} occurrences of {:?}", e.file, e.find))
            })
            .collect();
        assert!(failures.is_empty(), "mutants that do not apply:\n{}", failures.join("\n"));
    }

    #[test]
    fn a_condition_becomes_a_constant() {
        assert_eq!(condition("f", "{{- if and $a $b -}}", "false").replace, "{{- if false -}}");
        assert_eq!(condition("f", "{{- else if not (or $a $b) -}}", "false").replace, "{{- else if false -}}");
        assert_eq!(condition("f", "{{- if .Values.x }}", "true").replace, "{{- if true }}");
    }
}
