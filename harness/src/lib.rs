//! certctl-harness: the machinery that proves the certctl chart on live clusters.
//!
//! A live test reads like the chart's promises:
//! ```no_run
//! use certctl_harness::{helm::Release, scenario::Scenario};
//! # async fn f() {
//! Scenario::run("default", async |s| {                            // namespace e2e-default, shared cluster
//!     let names = s.release("c");                                  // typed names; bundle + uninstall at the end
//!     let chart = s.env.workspace.join("chart");
//!     let release = Release::new(&names.release, &s.namespace, &chart);
//!     s.require("install", async { Ok(s.helm.install(&release).await?) }).await?;  // failure ends the body
//!     s.check("server Service named", async { Ok(assert_eq!(names.server(), "c-certctl-server")) }).await;
//!     Ok(())
//! })
//! .await                                                           // JUnit; bundle + keep policy on failure
//! .unwrap();
//! # }
//! ```

pub mod tools;

pub mod availability;
pub mod cluster;
pub mod command;
pub mod conditions;
pub mod diagnostics;
pub mod disruption;
pub mod env;
pub mod evict;
pub mod exec;
pub mod external_db;
pub mod helm;
pub mod images;
pub mod junit;
pub mod keep;
pub mod logs;
pub mod names;
pub mod pods;
pub mod portforward;
pub mod postgres;
pub mod preflight;
pub mod previous_chart;
pub mod probe;
pub mod report;
pub mod scenario;
pub mod sql;
pub mod storage;
pub mod timing;
pub mod tls;
pub mod wait;
pub mod watchdog;
pub mod workspace;
