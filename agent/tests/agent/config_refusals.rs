//! Every configuration the agent refuses, run as the binary a pod runs (assert_cmd): exit
//! code 2, the variable and the reason on stderr, an API key never echoed, and nothing
//! written to the key directory.

use std::path::Path;

use assert_cmd::Command;
use rstest::rstest;

/// A configuration the agent accepts, except that nothing answers at the server URL.
fn accepted(key_dir: &Path) -> Vec<(String, String)> {
    [
        ("CERTCTL_SERVER_URL", "https://certctl:8443".to_string()),
        ("CERTCTL_API_KEY", "agent-key-0001".into()),
        ("CERTCTL_AGENT_NAME", "node-a".into()),
        ("CERTCTL_KEY_DIR", key_dir.display().to_string()),
        ("CERTCTL_SERVER_CA_BUNDLE_PATH", "/nonexistent/ca.crt".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// One character over the X.509 CN limit the agent name must fit.
const SIXTY_FIVE_CHARS: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

#[rstest]
#[case::plain_http("CERTCTL_SERVER_URL", Some("http://certctl:8443"), "plain http is refused")]
#[case::other_scheme("CERTCTL_SERVER_URL", Some("ftp://certctl"), "is not supported; use https://")]
#[case::not_a_url("CERTCTL_SERVER_URL", Some("certctl-server"), "expected e.g. https://certctl-server:8443")]
#[case::credentials_in_url("CERTCTL_SERVER_URL", Some("https://u:p@certctl:8443"), "must not carry credentials")]
#[case::no_server_url("CERTCTL_SERVER_URL", None, "set it to the server's https URL")]
#[case::no_api_key("CERTCTL_API_KEY", None, "CERTCTL_AUTH_SECRET")]
#[case::two_api_keys("CERTCTL_API_KEY", Some("key-one key-two"), "set exactly one key")]
#[case::no_agent_name("CERTCTL_AGENT_NAME", None, "the pod name via the downward API")]
#[case::agent_name_not_dns("CERTCTL_AGENT_NAME", Some("node/a"), "at most 64 characters")]
#[case::agent_name_too_long("CERTCTL_AGENT_NAME", Some(SIXTY_FIVE_CHARS), "at most 64 characters")]
#[case::relative_key_dir("CERTCTL_KEY_DIR", Some("keys"), "must be an absolute path")]
#[case::no_ca_bundle("CERTCTL_SERVER_CA_BUNDLE_PATH", None, "trusts only the CA bundle given here")]
#[case::skip_verify_not_bool("CERTCTL_INSECURE_SKIP_VERIFY", Some("maybe"), "accepted values are true/false")]
#[case::zero_heartbeat("CERTCTL_HEARTBEAT_INTERVAL", Some("0s"), "greater than zero")]
#[case::poll_not_duration("CERTCTL_POLL_INTERVAL", Some("soon"), "expected a duration")]
// Below the default CERTCTL_BACKOFF_BASE (30s).
#[case::backoff_max_below_base("CERTCTL_BACKOFF_MAX", Some("1s"), "at least CERTCTL_BACKOFF_BASE")]
#[case::log_format("CERTCTL_LOG_FORMAT", Some("xml"), "accepted values are json and text")]
#[case::secrets_not_bool("CERTCTL_KUBERNETES_SECRETS_ENABLED", Some("maybe"), "accepted values are true/false")]
fn refused_before_anything_starts(#[case] var: &str, #[case] value: Option<&str>, #[case] reason: &str) {
    let work = tempfile::tempdir().unwrap();
    let key_dir = work.path().join("keys");
    let mut env = accepted(&key_dir);
    env.retain(|(k, _)| k != var);
    if let Some(v) = value {
        env.push((var.into(), v.into()));
    }
    let output = Command::cargo_bin("certctl-agent").unwrap().env_clear().envs(env).assert().code(2).get_output().clone();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(var), "the refusal does not name {var}: {stderr}");
    assert!(stderr.contains(reason), "the refusal of {var} does not say {reason:?}: {stderr}");
    assert!(!stderr.contains("key-one") && !stderr.contains("agent-key-0001"), "the refusal echoes the API key: {stderr}");
    assert!(!key_dir.exists(), "the key directory was created although the configuration was refused");
}

/// The Secrets target needs the pod's ServiceAccount: outside a pod (no token, no
/// KUBERNETES_SERVICE_HOST) the agent refuses to start and says what is missing.
#[test]
fn secret_targets_without_a_service_account_refuse_to_start() {
    let work = tempfile::tempdir().unwrap();
    let key_dir = work.path().join("keys");
    let ca = work.path().join("ca.crt");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["certctl".to_string()]).unwrap().self_signed(&key).unwrap();
    std::fs::write(&ca, cert.pem()).unwrap();
    let mut env = accepted(&key_dir);
    env.retain(|(k, _)| k != "CERTCTL_SERVER_CA_BUNDLE_PATH");
    env.push(("CERTCTL_SERVER_CA_BUNDLE_PATH".into(), ca.display().to_string()));
    env.push(("CERTCTL_KUBERNETES_SECRETS_ENABLED".into(), "true".into()));
    env.push(("CERTCTL_LOG_FORMAT".into(), "text".into()));
    let output = Command::cargo_bin("certctl-agent").unwrap().env_clear().envs(env).assert().code(1).get_output().clone();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(text.contains("refusing to start"), "{text}");
    assert!(text.contains("CERTCTL_KUBERNETES_SECRETS_ENABLED needs the pod's ServiceAccount token"), "{text}");
    assert!(text.contains("kubernetesSecrets.enabled"), "the refusal does not say which chart value mounts the token: {text}");
}
