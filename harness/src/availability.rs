//! Whether a Service keeps answering while something disrupts it (a drain,
//! a lost node, a deleted database pod): a background sampler asks the
//! Service itself — through the API server's service proxy, so each request
//! goes to whichever ready endpoint the cluster picks, as a client's would —
//! and counts the ready endpoints its EndpointSlices list, until stopped.

use std::time::{Duration, Instant};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the sampler saw.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    /// Requests answered with 2xx.
    pub answered: usize,
    /// Requests that failed or answered otherwise.
    pub failed: usize,
    /// The longest time between two answered requests (or from the start
    /// to the first, or from the last to the stop).
    pub longest_gap: Duration,
    /// The fewest ready endpoints listed at any sample.
    pub fewest_ready: usize,
    /// The last failure, for the report.
    pub last_failure: Option<String>,
    /// How long it sampled.
    pub sampled_for: Duration,
}

impl std::fmt::Display for Samples {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} answered, {} failed over {:.1?}; longest gap {:.1?}; fewest ready endpoints {}",
            self.answered, self.failed, self.sampled_for, self.longest_gap, self.fewest_ready
        )?;
        if let Some(last) = &self.last_failure {
            write!(f, "; last failure: {last}")?;
        }
        Ok(())
    }
}

/// A running sampler; [`Sampler::stop`] ends it and returns what it saw.
#[derive(Debug)]
pub struct Sampler {
    stop: watch::Sender<bool>,
    task: JoinHandle<Samples>,
}

impl Sampler {
    /// Starts sampling `GET <path>` of Service `service` (port `port`,
    /// scheme `https`) in `namespace` every `every`.
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(client: kube::Client) {
    /// use certctl_harness::availability::Sampler;
    /// let sampler = Sampler::start(client, "ns", "c-certctl-server", 8443, "/ready", std::time::Duration::from_millis(250));
    /// // ... drain a node ...
    /// let seen = sampler.stop().await;
    /// println!("longest gap {:?}", seen.longest_gap);
    /// # }
    /// ```
    pub fn start(client: kube::Client, namespace: &str, service: &str, port: u16, path: &str, every: Duration) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let proxy = format!("/api/v1/namespaces/{namespace}/services/https:{service}:{port}/proxy{path}");
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
        let by_service = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut last_answer = start;
            let mut seen = Samples { fewest_ready: usize::MAX, ..Samples::default() };
            loop {
                let request = http::Request::get(&proxy).body(Vec::new()).expect("static request");
                // The proxy turns a failed backend into an error status: both count as failures.
                match tokio::time::timeout(Duration::from_secs(5), client.request_text(request)).await {
                    Ok(Ok(_)) => {
                        seen.answered += 1;
                        seen.longest_gap = seen.longest_gap.max(last_answer.elapsed());
                        last_answer = Instant::now();
                    }
                    Ok(Err(e)) => {
                        seen.failed += 1;
                        seen.last_failure = Some(e.to_string());
                    }
                    Err(_) => {
                        seen.failed += 1;
                        seen.last_failure = Some("no answer within 5 s".into());
                    }
                }
                if let Ok(list) = slices.list(&by_service).await {
                    let ready = list
                        .items
                        .iter()
                        .flat_map(|s| &s.endpoints)
                        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
                        .count();
                    seen.fewest_ready = seen.fewest_ready.min(ready);
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stopped.changed() => break,
                }
            }
            seen.longest_gap = seen.longest_gap.max(last_answer.elapsed());
            seen.sampled_for = start.elapsed();
            if seen.fewest_ready == usize::MAX {
                seen.fewest_ready = 0;
            }
            seen
        });
        Self { stop, task }
    }

    /// Stops sampling and returns what was seen.
    pub async fn stop(self) -> Samples {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}
