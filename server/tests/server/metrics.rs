//! The metrics endpoint: bounded label sets whatever clients send, Prometheus text by default
//! (checked by `promtool check metrics`), OpenMetrics when asked (checked by the OpenMetrics
//! parser of the Python prometheus_client).

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::start;

const METRICS: &str = "/api/v1/metrics/prometheus";

async fn scrape(api: &crate::support::Api, accept: Option<&str>) -> (String, String) {
    let mut req = api.http.get(api.server.url(METRICS)).bearer_auth("test-key");
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    (content_type, r.text().await.unwrap())
}

fn label_values(body: &str, label: &str) -> BTreeSet<String> {
    let needle = format!("{label}=\"");
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(&needle).map(|(_, rest)| rest.split('"').next().unwrap_or("").to_owned()))
        .collect()
}

#[tokio::test]
async fn unauthenticated_clients_cannot_grow_the_label_sets() {
    let (_db, _pki, api) = start(&[]).await;
    let (_, before) = scrape(&api, None).await;
    for i in 0..300 {
        let method = reqwest::Method::from_bytes(format!("X{i}").as_bytes()).unwrap();
        let r = api.http.request(method, api.server.url(&format!("/random/{i}"))).send().await.unwrap();
        assert!(r.status().is_client_error(), "{}", r.status());
        let r = api.http.get(api.server.url(&format!("/api/v1/no/such/{i}"))).send().await.unwrap();
        assert_eq!(r.status(), 401);
    }
    let (_, after) = scrape(&api, None).await;
    let allowed: BTreeSet<String> = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "other"].map(String::from).into();
    let methods = label_values(&after, "method");
    assert!(methods.is_subset(&allowed), "method label values: {methods:?}");
    let routes = label_values(&after, "route");
    assert!(routes.iter().all(|r| r == "unmatched" || r.starts_with('/')), "{routes:?}");
    assert!(!routes.iter().any(|r| r.contains("random") || r.contains("/no/such")), "routes are templates: {routes:?}");
    let grown = after.lines().count().saturating_sub(before.lines().count());
    assert!(grown < 100, "600 distinct requests added {grown} lines (bounded series expected)");
}

fn run_checker(program: &str, args: &[&str], input: &str, install: &str) -> std::process::Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}); install it: {install}"));
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

const OPENMETRICS_CHECK: &str = "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as parse\n\
families = list(parse(sys.stdin.read()))\nprint(len(families), 'families')\n";

#[tokio::test]
async fn prometheus_text_passes_promtool_and_openmetrics_is_served_when_asked() {
    let (_db, _pki, api) = start(&[]).await;
    api.register("node-m").await; // so counters have samples
    let (content_type, text) = scrape(&api, None).await;
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    assert!(!text.contains("# EOF"), "Prometheus text has no EOF marker");
    let out = run_checker("promtool", &["check", "metrics"], &text, "apt-get install prometheus (Debian's package ships promtool)");
    assert!(
        out.status.success(),
        "promtool check metrics refused the Prometheus text:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let (content_type, om) = scrape(&api, Some("application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3")).await;
    assert!(content_type.starts_with("application/openmetrics-text; version=1.0.0"), "{content_type}");
    assert!(om.ends_with("# EOF\n"), "{om}");
    let out = run_checker(
        "/usr/bin/python3",
        &["-c", OPENMETRICS_CHECK],
        &om,
        "apt-get install python3-prometheus-client (for Debian's /usr/bin/python3)",
    );
    assert!(out.status.success(), "the OpenMetrics parser refused the exposition:\n{}\n---\n{om}", String::from_utf8_lossy(&out.stderr));
}
