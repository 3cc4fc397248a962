//! A real certctl-server (in-process, on this test's runtime) backed by a real PostgreSQL
//! (the harness fixture), and the real `certctl-agent` binary run against it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use certctl_harness::postgres::TestPostgres;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The key every test stack accepts (all permissions).
pub const API_KEY: &str = "agent-test-key";
/// A key that may register and heartbeat but not poll work.
pub const SCOPED_KEY: &str = "scoped-no-poll";

/// Test CA + server TLS pair on disk.
pub struct ServerTls {
    /// Owns the files below; deleted on drop.
    _dir: tempfile::TempDir,
    pub ca_path: PathBuf,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl ServerTls {
    pub fn generate() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for TLS files");
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "agent-test TLS CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server_params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
        let ca_path = dir.path().join("ca.crt");
        let cert_path = dir.path().join("tls.crt");
        let key_path = dir.path().join("tls.key");
        fs::write(&ca_path, ca_cert.pem()).unwrap();
        fs::write(&cert_path, server_cert.pem()).unwrap();
        fs::write(&key_path, server_key.serialize_pem()).unwrap();
        Self { _dir: dir, ca_path, cert_path, key_path }
    }
}

/// PostgreSQL + server + TLS material for one test.
pub struct Stack {
    // Field order matters for Drop: the server stops before PostgreSQL does.
    server: Option<RunningServer>,
    /// Owned so PostgreSQL runs as long as the stack.
    _pg: TestPostgres,
    pub tls: ServerTls,
    pub port: u16,
    database_url: String,
    http: reqwest::Client,
}

struct RunningServer {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), certctl_server::RunError>>,
}

impl Stack {
    /// Starts PostgreSQL and the server, and waits until the server is ready.
    pub async fn start() -> Self {
        let pg = TestPostgres::start()
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL fixture failed: {e} (install postgresql-15: apt-get install postgresql-15)"));
        pg.create_role("certctl", "certctl-pw").await.expect("create role");
        pg.create_database("certctl", "certctl").await.expect("create database");
        let database_url = pg.url("certctl", "certctl-pw", "certctl");
        let tls = ServerTls::generate();
        let port = free_port();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(certctl_agent::tls::client_config_trusting(&tls.ca_path).unwrap())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut stack = Self { server: None, _pg: pg, tls, port, database_url, http };
        stack.start_server().await;
        stack
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// Starts the in-process server and waits for /ready.
    pub async fn start_server(&mut self) {
        assert!(self.server.is_none(), "server already running");
        let vars = [
            ("CERTCTL_SERVER_HOST", "127.0.0.1".to_string()),
            ("CERTCTL_SERVER_PORT", self.port.to_string()),
            ("CERTCTL_SERVER_TLS_CERT_PATH", self.tls.cert_path.display().to_string()),
            ("CERTCTL_SERVER_TLS_KEY_PATH", self.tls.key_path.display().to_string()),
            ("CERTCTL_DATABASE_URL", self.database_url.clone()),
            ("CERTCTL_DATABASE_MAX_CONNS", "4".to_string()),
            ("CERTCTL_AUTH_TYPE", "api-key".to_string()),
            ("CERTCTL_AUTH_SECRET", API_KEY.to_string()),
            ("CERTCTL_AUTH_SCOPED_KEYS", format!("{SCOPED_KEY}=agent.register,agent.heartbeat")),
            ("CERTCTL_SHUTDOWN_TIMEOUT", "2s".to_string()),
        ];
        let lookup = move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
        let config = certctl_server::config::Config::from_env(&lookup).expect("server config");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(certctl_server::run(config, async move {
            let _ = stopped.await;
        }));
        self.server = Some(RunningServer { stop, task });
        let ready = format!("{}/ready", self.url());
        let http = self.http.clone();
        wait_async("server /ready answers 200", Duration::from_secs(60), || {
            let http = http.clone();
            let ready = ready.clone();
            async move {
                match http.get(&ready).send().await {
                    Ok(r) if r.status() == 200 => Ok(()),
                    Ok(r) => Err(format!("HTTP {}", r.status())),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await;
    }

    /// Stops the in-process server and waits until its port is closed.
    pub async fn stop_server(&mut self) {
        let server = self.server.take().expect("server running");
        let _ = server.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), server.task)
            .await
            .expect("server stops within 30s")
            .expect("server task did not panic")
            .expect("server ran without error");
    }

    /// An authenticated API call; returns (status, JSON body).
    pub async fn api(&self, method: reqwest::Method, path: &str, body: Option<serde_json::Value>) -> (u16, serde_json::Value) {
        let mut req = self.http.request(method, format!("{}/api/v1{path}", self.url())).bearer_auth(API_KEY);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("API request");
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    /// A connection pool on the server's database (as its owner), for assertions.
    pub async fn db(&self) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&self.database_url).await.expect("connect to the server database")
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `probe` until it returns Ok or `timeout` passes; panics naming what it waited for
/// and what it last saw.
pub async fn wait_async<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(last) if start.elapsed() > timeout => {
                panic!("timed out after {timeout:?} waiting for {what}; last saw: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A running `certctl-agent` process with its log captured to a file.
pub struct AgentProcess {
    child: Child,
    pub log_path: PathBuf,
    pub key_dir: PathBuf,
    pub started: Instant,
}

/// Builder for an agent run.
pub struct AgentRun {
    pub env: Vec<(String, String)>,
    pub key_dir: PathBuf,
    pub log_path: PathBuf,
}

impl AgentRun {
    /// Agent env for `stack` with short intervals and a 1 s backoff step.
    pub fn new(stack: &Stack, name: &str, work: &Path) -> Self {
        let key_dir = work.join("keys");
        let env = [
            ("CERTCTL_SERVER_URL", stack.url()),
            ("CERTCTL_API_KEY", API_KEY.to_string()),
            ("CERTCTL_AGENT_NAME", name.to_string()),
            ("CERTCTL_KEY_DIR", key_dir.display().to_string()),
            ("CERTCTL_SERVER_CA_BUNDLE_PATH", stack.tls.ca_path.display().to_string()),
            ("CERTCTL_HEARTBEAT_INTERVAL", "1s".to_string()),
            ("CERTCTL_POLL_INTERVAL", "1s".to_string()),
            ("CERTCTL_BACKOFF_BASE", "1s".to_string()),
            ("CERTCTL_BACKOFF_MAX", "4s".to_string()),
            ("CERTCTL_REQUEST_TIMEOUT", "5s".to_string()),
            ("CERTCTL_LOG_FORMAT", "json".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Self { env, key_dir, log_path: work.join("agent.log") }
    }

    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn command(&self) -> Command {
        // CERTCTL_AGENT_BIN lets the measurement run a release build.
        let bin = std::env::var("CERTCTL_AGENT_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_certctl-agent").to_string());
        let mut cmd = Command::new(bin);
        cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts the agent; its stdout and stderr are appended to the log file.
    pub fn spawn(&self) -> AgentProcess {
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log_path).unwrap();
        let child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn certctl-agent");
        AgentProcess { child, log_path: self.log_path.clone(), key_dir: self.key_dir.clone(), started: Instant::now() }
    }
}

impl AgentProcess {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Parsed JSON log lines whose message contains `needle`.
    pub fn events(&self, needle: &str) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["message"].as_str().is_some_and(|m| m.contains(needle)))
            .collect()
    }

    /// Waits for a log line containing `needle`; returns it.
    pub async fn wait_for_event(&self, needle: &str, timeout: Duration) -> serde_json::Value {
        wait_async(&format!("agent log line containing {needle:?}"), timeout, || async {
            self.events(needle).pop().ok_or_else(|| format!("log so far:\n{}", self.log()))
        })
        .await
    }

    /// Waits until at least `count` log lines contain `needle`; returns the first `count`.
    pub async fn wait_for_event_count(&self, needle: &str, count: usize, timeout: Duration) -> Vec<serde_json::Value> {
        wait_async(&format!("{count} agent log lines containing {needle:?}"), timeout, || async {
            let events = self.events(needle);
            if events.len() >= count {
                Ok(events.into_iter().take(count).collect())
            } else {
                Err(format!("{} so far; log:\n{}", events.len(), self.log()))
            }
        })
        .await
    }

    /// Waits for a file under the key dir.
    pub async fn wait_for_file(&self, name: &str, timeout: Duration) -> PathBuf {
        let path = self.key_dir.join(name);
        wait_async(&format!("{} to exist", path.display()), timeout, || async {
            if path.exists() {
                Ok(path.clone())
            } else {
                Err(format!("not yet; agent log:\n{}", self.log()))
            }
        })
        .await
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).expect("send signal");
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        wait_async("certctl-agent to exit", timeout, || {
            let status = self.child.try_wait();
            async move {
                match status {
                    Ok(Some(s)) => Ok(s),
                    Ok(None) => Err("still running".into()),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads a file's Unix permission bits.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}
