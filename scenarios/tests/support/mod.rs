//! Shared by the render tests: the pinned helms, concurrent renders, the audit's receipts.
//!
//! Every render runs under Helm 3 and Helm 4 and must give the same objects (or a refusal)
//! under both; tests see the result of the helm `CERTCTL_HELM_MAJOR` selects (default 3).
#![allow(dead_code)]

use std::sync::OnceLock;

use certctl_harness::tools::{Tool, Tools};
use certctl_scenarios::render::{Render, RenderError, Rendered};

/// Both pinned helms, the selected one first; a missing one fails the test saying how to
/// get it (never a skip).
pub fn helms() -> &'static [Tool] {
    static HELMS: OnceLock<Vec<Tool>> = OnceLock::new();
    HELMS.get_or_init(|| Tools::helms().unwrap_or_else(|e| panic!("the render tier needs both pinned helms (3 and 4): {e}")))
}

/// The selected helm.
pub fn helm() -> &'static Tool {
    &helms()[0]
}

/// Renders, panicking with helm's message on failure.
pub fn render(r: &Render) -> Rendered {
    render_under_each_helm(r).unwrap_or_else(|e| panic!("render failed: {e}\nargs: {:?}", r.args()))
}

/// The selected helm's render, once every other helm has agreed with it.
fn render_under_each_helm(r: &Render) -> Result<Rendered, RenderError> {
    let (selected, others) = helms().split_first().expect("two helms");
    let result = r.run(selected);
    for other in others {
        let disagreement = match (&result, r.run(other)) {
            (Ok(a), Ok(b)) => a.difference(&b),
            (Err(_), Err(_)) => None,
            (Ok(_), Err(e)) => Some(format!("only helm {} refused: {e}", other.version)),
            (Err(e), Ok(_)) => Some(format!("only helm {} refused: {e}", selected.version)),
        };
        if let Some(why) = disagreement {
            panic!("helm {} and helm {} render differently: {why}\nargs: {:?}", selected.version, other.version, r.args());
        }
    }
    result
}

/// Runs many renders at once (helm is a separate process; the machine's cores work in
/// parallel), results in input order.
pub fn render_all(renders: &[Render]) -> Vec<Result<Rendered, RenderError>> {
    const WORKERS: usize = 6;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<OnceLock<Result<Rendered, RenderError>>> = renders.iter().map(|_| OnceLock::new()).collect();
    std::thread::scope(|s| {
        for _ in 0..WORKERS.min(renders.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(r) = renders.get(i) else { break };
                let _ = results[i].set(render_under_each_helm(r));
            });
        }
    });
    results.into_iter().map(|c| c.into_inner().expect("every render ran")).collect()
}

/// The audit's receipt flags (certctl-spec.md), release `c`.
pub mod receipts {
    use certctl_scenarios::render::Render;

    /// default: 12 resources.
    pub fn default() -> Render {
        Render::new().set("server.tls.existingSecret", "ci").set("postgresql.auth.password", "p").set("server.auth.apiKey", "k")
    }
    /// external DB: 9 resources.
    pub fn external_db() -> Render {
        Render::new()
            .set("server.tls.existingSecret", "ci")
            .set("postgresql.enabled", "false")
            .set("externalDatabase.url", "postgres://u:p@h:5432/db?sslmode=require")
            .set("server.auth.apiKey", "k")
    }
    /// cert-manager: +1 Certificate.
    pub fn cert_manager() -> Render {
        Render::new()
            .set("server.tls.certManager.enabled", "true")
            .set("server.tls.certManager.issuerRef.name", "letsencrypt")
            .set("postgresql.auth.password", "p")
            .set("server.auth.apiKey", "k")
    }
    /// HA: +ServiceMonitor +PodDisruptionBudget +NetworkPolicy.
    pub fn ha() -> Render {
        default()
            .set("server.replicas", "3")
            .set("monitoring.enabled", "true")
            .set("monitoring.serviceMonitor.enabled", "true")
            .set("podDisruptionBudget.enabled", "true")
            .set("networkPolicy.enabled", "true")
    }
}

/// `(name, value)` of every env entry of a container, `valueFrom` rendered as JSON.
pub fn env_of(container: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let v = if e.get("valueFrom").is_some() { e["valueFrom"].clone() } else { e["value"].clone() };
            (e["name"].as_str().unwrap_or_default().to_owned(), v)
        })
        .collect()
}
