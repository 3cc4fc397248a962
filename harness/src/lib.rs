//! certctl-harness: the machinery that proves the certctl chart on live clusters.
//!
//! A live test reads like the chart's promises:
//! ```no_run
//! use certctl_harness::{env::TestEnv, scenario::Scenario, helm::Release};
//! # async fn f() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let env = TestEnv::shared_async(Default::default()).await?;   // preflight, images, cluster: once
//! let mut s = Scenario::start(env, "default").await?;            // namespace e2e-default
//! let rel = Release::new("c", &s.namespace, &env.workspace.join("chart"));
//! let helm = s.helm.clone();
//! s.release = Some("c".into());
//! s.step("install", async move { helm.install(&rel).await?; Ok(()) }).await?;
//! s.finish().await?;                                              // bundle + JUnit on failure
//! # Ok(()) }
//! ```

pub mod tools;

pub mod cluster;
pub mod diagnostics;
pub mod env;
pub mod evict;
pub mod exec;
pub mod external_db;
pub mod helm;
pub mod images;
pub mod junit;
pub mod keep;
pub mod logs;
pub mod pods;
pub mod portforward;
pub mod postgres;
pub mod preflight;
pub mod probe;
pub mod scenario;
pub mod sql;
pub mod timing;
pub mod tls;
pub mod wait;
pub mod watchdog;
pub mod workspace;
