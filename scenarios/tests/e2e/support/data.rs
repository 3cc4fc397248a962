//! Real data, and the proof that none of it is lost: certificates issued
//! through the API to the release's own agents, then every row of the
//! server's tables as JSON — compared row for row after the release changes
//! (upgrade, rotation, reinstall, restore).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

use certctl_harness::ensure;
use certctl_harness::names::Component;
use certctl_harness::scenario::StepResult;
use certctl_harness::wait::{wait_until, Classify, Deadline, Poll, PollError};
use serde_json::{json, Value};

use super::live::{Live, API_KEY};

/// A table the server owns: how its rows are keyed, and the columns that
/// change by design while the data stays the same.
struct Table {
    name: &'static str,
    key: &'static str,
    volatile: &'static [&'static str],
}

/// Every table of the server's schema (`server/src/db/migrations`).
const TABLES: [Table; 5] = [
    Table { name: "schema_migrations", key: "version", volatile: &[] },
    Table { name: "ca", key: "id", volatile: &[] },
    // Heartbeats move on; the identity (id, name, credential) must not.
    Table { name: "agents", key: "id", volatile: &["last_heartbeat_at"] },
    Table { name: "certificates", key: "id", volatile: &[] },
    Table { name: "jobs", key: "id", volatile: &[] },
];

/// Every row of every table, by table and key.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot(BTreeMap<&'static str, BTreeMap<String, Value>>);

impl Snapshot {
    /// Reads every table through the release's database (bundled or external).
    ///
    /// # Errors
    /// psql's error, or a row that is not JSON.
    pub async fn take(live: &Live<'_>) -> StepResult<Self> {
        let mut tables = BTreeMap::new();
        for t in &TABLES {
            let drop_volatile: String = t.volatile.iter().map(|c| format!(" - '{c}'")).collect();
            let sql = format!("select (to_jsonb(t){drop_volatile})::text from {} t order by t.{}", t.name, t.key);
            // One JSON object per line: to_jsonb escapes the newlines of PEMs.
            let mut rows = BTreeMap::new();
            for line in live.sql(&sql).await?.lines().filter(|l| !l.is_empty()) {
                let row: Value = serde_json::from_str(line).map_err(|e| format!("{} row is not JSON ({e}): {line}", t.name))?;
                rows.insert(row[t.key].to_string(), row);
            }
            tables.insert(t.name, rows);
        }
        Ok(Self(tables))
    }

    /// Rows in all tables.
    pub fn rows(&self) -> usize {
        self.0.values().map(BTreeMap::len).sum()
    }

    /// Rows of `table`.
    pub fn table(&self, table: &str) -> impl Iterator<Item = &Value> {
        self.0.get(table).into_iter().flat_map(BTreeMap::values)
    }

    /// What `after` lost or changed of `self`; rows `after` adds are allowed.
    pub fn losses(&self, after: &Snapshot) -> Vec<Loss> {
        let mut out = Vec::new();
        for (table, rows) in &self.0 {
            let later = after.0.get(table);
            for (key, row) in rows {
                match later.and_then(|r| r.get(key)) {
                    None => out.push(Loss { table, key: key.clone(), before: row.clone(), after: None }),
                    Some(now) if now != row => out.push(Loss { table, key: key.clone(), before: row.clone(), after: Some(now.clone()) }),
                    Some(_) => {}
                }
            }
        }
        out
    }
}

/// One row lost or changed.
#[derive(Debug)]
pub struct Loss {
    table: &'static str,
    key: String,
    before: Value,
    after: Option<Value>,
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.after {
            None => write!(f, "{} row {} is gone (was {})", self.table, self.key, self.before),
            Some(after) => {
                let changed: Vec<String> = self
                    .before
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(c, v)| after.get(c.as_str()) != Some(*v))
                    .map(|(c, v)| format!("{c}: {v} -> {}", after.get(c.as_str()).unwrap_or(&Value::Null)))
                    .collect();
                write!(f, "{} row {} changed: {}", self.table, self.key, changed.join(", "))
            }
        }
    }
}

/// Certificates written through the API and what the database held after.
#[derive(Debug, Clone)]
pub struct Ledger {
    /// Ids of the certificates this ledger issued.
    pub certificates: Vec<String>,
    /// Every row once they were issued.
    pub snapshot: Snapshot,
}

impl Ledger {
    /// Issues `per_agent` certificates to each Ready agent through the API
    /// (POST /api/v1/certificates), waits until each is issued and its job
    /// completed by the agent, then snapshots every table.
    ///
    /// # Errors
    /// An API refusal, a certificate that is not issued within 120 s.
    pub async fn write(live: &Live<'_>, per_agent: usize) -> StepResult<Self> {
        let started = Instant::now();
        let agents = agent_ids(live).await?;
        let server = live.server().await?;
        let http = server.client()?;
        let mut certificates = Vec::new();
        for (name, agent_id) in &agents {
            for i in 0..per_agent {
                let cn = format!("ledger-{i}.{name}.example.test");
                let body = json!({"common_name": cn, "sans": [cn.clone()], "agent_id": agent_id});
                let (status, created) = server.create_certificate(&http, &body).await?;
                ensure!(status == 201, "POST /api/v1/certificates for {cn}: HTTP {status} {created}, want 201");
                certificates.push(created["id"].as_str().ok_or_else(|| format!("201 without an id: {created}"))?.to_string());
            }
        }
        let ids = certificates.iter().map(|c| format!("'{c}'")).collect::<Vec<_>>().join(",");
        let settled = format!(
            "select count(*) from certificates c join jobs j on j.certificate_id = c.id \
             where c.id in ({ids}) and c.status = 'issued' and j.status = 'completed'"
        );
        let want = certificates.len();
        wait_until(
            &format!("{want} certificates issued and their jobs completed by the agents"),
            Deadline::secs(120).every_millis(1000),
            || async {
                let n: usize = live.sql(&settled).await.fatal()?.parse().fatal()?;
                Ok::<_, PollError>(if n >= want { Poll::Ready(()) } else { Poll::Pending(format!("{n} of {want}")) })
            },
        )
        .await?;
        let snapshot = Snapshot::take(live).await?;
        eprintln!(
            "ledger: {want} certificates for {} agent(s), {} rows, written in {:.1?}",
            agents.len(),
            snapshot.rows(),
            started.elapsed()
        );
        Ok(Self { certificates, snapshot })
    }

    /// Every row the ledger saw is still there, unchanged, and the API
    /// serves each of its certificates as issued with the same serial.
    /// Returns the rows checked.
    ///
    /// # Errors
    /// Names each lost or changed row, or the certificate the API disagrees on.
    pub async fn intact(&self, live: &Live<'_>) -> StepResult<usize> {
        let now = Snapshot::take(live).await?;
        let losses = self.snapshot.losses(&now);
        ensure!(
            losses.is_empty(),
            "{} of {} rows lost or changed:\n  {}",
            losses.len(),
            self.snapshot.rows(),
            losses.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  ")
        );
        let server = live.server().await?;
        let http = server.client()?;
        for id in &self.certificates {
            let stored = self
                .snapshot
                .table("certificates")
                .find(|r| r["id"] == *id)
                .ok_or_else(|| format!("certificate {id} not in the snapshot"))?;
            let resp = http.get(server.url(&format!("/api/v1/certificates/{id}"))).bearer_auth(API_KEY).send().await?;
            let status = resp.status();
            let got: Value = serde_json::from_str(&resp.text().await?)?;
            ensure!(status == 200, "GET certificate {id}: HTTP {status} {got}");
            ensure!(
                got["status"] == "issued" && got["serial"] == stored["serial"] && got["certificate_pem"] == stored["certificate_pem"],
                "the API serves certificate {id} as {} serial {}, the ledger wrote issued serial {}",
                got["status"],
                got["serial"],
                stored["serial"]
            );
        }
        eprintln!(
            "ledger: {} rows intact ({} added since), {} certificates served by the API",
            self.snapshot.rows(),
            now.rows() - self.snapshot.rows(),
            self.certificates.len()
        );
        Ok(self.snapshot.rows())
    }
}

/// `(name, id)` of each Ready agent pod's registration, once every Ready
/// agent pod has registered (a pod is Ready a moment before it registers).
pub async fn agent_ids(live: &Live<'_>) -> StepResult<Vec<(String, String)>> {
    Ok(wait_until("every Ready agent pod to register with the server", Deadline::secs(120).every_millis(1000), || async {
        let ready = live.ready(Component::Agent).await.transient()?;
        let rows = live.sql("select name || ' ' || id from agents where status = 'active' order by name").await.fatal()?;
        let registered: Vec<(String, String)> = rows
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(name, _)| ready.iter().any(|r| r == name))
            .map(|(n, id)| (n.to_string(), id.to_string()))
            .collect();
        Ok::<_, PollError>(if !ready.is_empty() && registered.len() == ready.len() {
            Poll::Ready(registered)
        } else {
            Poll::Pending(format!("Ready agent pods {ready:?}, registered of them {registered:?}"))
        })
    })
    .await?)
}
