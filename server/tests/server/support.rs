//! Test support: a throwaway PKI, the real server binary as a child process with captured
//! logs, HTTPS clients, and waits that say what they waited for.
#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certctl_harness::postgres::TestPostgres;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA plus server certificate files for 127.0.0.1 / localhost.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    ca_issuer: Issuer<'static, KeyPair>,
}

impl TestPki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca = params.self_signed(&key).unwrap();
        let ca_pem = ca.pem();
        let ca_issuer = Issuer::new(params, key);
        let pki = Self { dir, ca_pem, ca_issuer };
        fs_write(&pki.dir.path().join("ca.crt"), &pki.ca_pem);
        pki.write_new_pair();
        pki
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }

    /// Issues a fresh server pair and writes it over tls.crt / tls.key; returns the cert DER.
    pub fn write_new_pair(&self) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "certctl-server");
        let cert = params.signed_by(&key, &self.ca_issuer).unwrap();
        fs_write(&self.cert_path(), &cert.pem());
        fs_write(&self.key_path(), &key.serialize_pem());
        cert.der().to_vec()
    }

    /// Overwrites the key with one that does not belong to the certificate.
    pub fn break_pair(&self) {
        let other = KeyPair::generate().unwrap();
        fs_write(&self.key_path(), &other.serialize_pem());
    }

    /// A rustls client config trusting this CA, limited to the given versions.
    pub fn client_config(&self, versions: &[&'static rustls::SupportedProtocolVersion]) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap()).unwrap();
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth()
    }

    /// An HTTPS client trusting this CA.
    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .use_preconfigured_tls(self.client_config(&[&rustls::version::TLS13]))
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }
}

fn fs_write(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// The binary under test: this crate's, or another build named by CERTCTL_TEST_SERVER_BIN
/// (to run these tests against an older release and watch them fail).
pub fn server_binary() -> String {
    std::env::var("CERTCTL_TEST_SERVER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_certctl-server").to_owned())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `check` every 50 ms until it returns `Ok`, or panics after `timeout` naming what was
/// awaited and the last thing seen.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last saw: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A PostgreSQL with a `certctl` role and database.
pub struct Db {
    pub pg: TestPostgres,
    pub password: String,
}

impl Db {
    pub async fn start() -> Self {
        let pg = TestPostgres::start().await.unwrap_or_else(|e| panic!("PostgreSQL fixture: {e}"));
        let password = "right-password".to_string();
        pg.create_role("certctl", &password).await.unwrap();
        pg.create_database("certctl", "certctl").await.unwrap();
        Self { pg, password }
    }

    pub fn url(&self) -> String {
        self.pg.url("certctl", &self.password, "certctl")
    }
}

/// The real `certctl-server` binary, with its output captured line by line.
pub struct ServerProcess {
    child: Child,
    pub port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    /// Output readers; joined on exit so every line is in `lines` before anyone reads it.
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// Environment for a server on a free port using `pki`; `database_url` may point anywhere.
pub fn base_env(pki: &TestPki, database_url: &str) -> Vec<(String, String)> {
    [
        ("CERTCTL_SERVER_HOST", "127.0.0.1".to_string()),
        ("CERTCTL_SERVER_PORT", free_port().to_string()),
        ("CERTCTL_SERVER_TLS_CERT_PATH", pki.cert_path().display().to_string()),
        ("CERTCTL_SERVER_TLS_KEY_PATH", pki.key_path().display().to_string()),
        ("CERTCTL_DATABASE_URL", database_url.to_string()),
        ("CERTCTL_AUTH_TYPE", "api-key".to_string()),
        ("CERTCTL_AUTH_SECRET", "test-key".to_string()),
        ("CERTCTL_LOG_FORMAT", "text".to_string()),
        ("CERTCTL_LOG_LEVEL", "info".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

pub fn set(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    env.retain(|(k, _)| k != key);
    env.push((key.to_string(), value.to_string()));
}

impl ServerProcess {
    pub fn spawn(env: &[(String, String)]) -> Self {
        Self::spawn_wrapped(env, &[])
    }

    /// Runs the server through `wrapper` (e.g. `["prlimit", "--nofile=128:128", "--"]`).
    pub fn spawn_wrapped(env: &[(String, String)], wrapper: &[&str]) -> Self {
        let port = env.iter().find(|(k, _)| k == "CERTCTL_SERVER_PORT").map_or(8443, |(_, v)| v.parse().unwrap());
        let server = server_binary();
        let server = server.as_str();
        let mut command = match wrapper.split_first() {
            None => Command::new(server),
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(server);
                c
            }
        };
        let mut child = command
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning certctl-server (wrapper {wrapper:?}): {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for stream in [Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>, Box::new(child.stderr.take().unwrap())] {
            let lines = lines.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            }));
        }
        Self { child, port, lines, readers }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    pub fn logs(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn tail(&self) -> String {
        let logs = self.logs();
        logs[logs.len().saturating_sub(15)..].join("\n")
    }

    /// Waits for a log line containing `needle`; returns it.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        wait_until(&format!("a log line containing {needle:?}"), timeout, || async {
            self.logs().into_iter().find(|l| l.contains(needle)).ok_or_else(|| format!("log tail:\n{}", self.tail()))
        })
        .await
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the process to exit; returns its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let child = &mut self.child;
        let tail = || self.lines.lock().unwrap().join("\n");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                // The pipes close with the process; the readers end at EOF.
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                panic!("server did not exit within {timeout:?}; output:\n{}", tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// Waits until /health answers (the listener is up).
    pub async fn wait_listening(&self, http: &reqwest::Client) {
        let url = self.url("/health");
        wait_until("/health to answer 200", Duration::from_secs(20), || async {
            match http.get(&url).send().await {
                Ok(r) if r.status() == 200 => Ok(()),
                Ok(r) => Err(format!("status {}", r.status())),
                Err(e) => Err(format!("{e}; log tail:\n{}", self.tail())),
            }
        })
        .await;
    }

    /// Waits until /ready answers 200.
    pub async fn wait_ready(&self, http: &reqwest::Client, timeout: Duration) {
        let url = self.url("/ready");
        wait_until("/ready to answer 200", timeout, || async {
            match http.get(&url).send().await {
                Ok(r) if r.status() == 200 => Ok(()),
                Ok(r) => Err(format!("status {} body {}", r.status(), r.text().await.unwrap_or_default())),
                Err(e) => Err(format!("{e}; log tail:\n{}", self.tail())),
            }
        })
        .await;
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects with rustls limited to `versions` and returns the server's leaf certificate DER.
pub async fn handshake(port: u16, config: rustls::ClientConfig) -> Result<Vec<u8>, std::io::Error> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let stream = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await?;
    let (_, conn) = stream.get_ref();
    Ok(conn.peer_certificates().unwrap()[0].to_vec())
}

/// An API client for a running server: the full test key, plus the agent credential issued
/// by the last registration it made (as the agent keeps it), sent on every request.
pub struct Api {
    pub http: reqwest::Client,
    pub server: ServerProcess,
    pub credential: Mutex<Option<String>>,
}

/// A fresh database and PKI, and a ready server with `extra` settings.
pub async fn start(extra: &[(&str, &str)]) -> (Db, TestPki, Api) {
    let db = Db::start().await;
    let pki = TestPki::new();
    let mut env = base_env(&pki, &db.url());
    for (k, v) in extra {
        set(&mut env, k, v);
    }
    let server = ServerProcess::spawn(&env);
    let http = pki.http();
    server.wait_ready(&http, Duration::from_secs(60)).await;
    (db, pki, Api { http, server, credential: Mutex::new(None) })
}

impl Api {
    /// One request with an explicit agent credential (`None`: no credential header).
    pub async fn request(&self, method: reqwest::Method, path: &str, body: Option<Value>, credential: Option<&str>) -> (u16, Value) {
        let mut req = self.http.request(method, self.server.url(&format!("/api/v1{path}"))).bearer_auth("test-key");
        if let Some(c) = credential {
            req = req.header("certctl-agent-credential", c);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("non-JSON answer ({e}): {text}"))
        };
        if let Some(issued) = value.get("credential").and_then(Value::as_str) {
            *self.credential.lock().unwrap() = Some(issued.to_owned());
        }
        (status, value)
    }

    /// A request carrying the remembered credential.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let credential = self.credential.lock().unwrap().clone();
        self.request(method, path, body, credential.as_deref()).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Registers a new agent; returns its id and credential (empty if the server issued none).
    pub async fn register(&self, name: &str) -> (String, String) {
        let (status, agent) = self.request(reqwest::Method::POST, "/agents", Some(serde_json::json!({"name": name})), None).await;
        assert_eq!(status, 201, "registering {name}: {agent}");
        // identity.rs asserts the credential; elsewhere an empty one lets these tests run
        // against a release before credentials (CERTCTL_TEST_SERVER_BIN).
        (agent["id"].as_str().unwrap().to_owned(), agent["credential"].as_str().unwrap_or_default().to_owned())
    }

    /// The agent's first pending job (`id`, `certificate_id`, `common_name`).
    pub async fn first_job(&self, agent_id: &str, credential: &str) -> Value {
        let (status, work) = self.request(reqwest::Method::GET, &format!("/agents/{agent_id}/work"), None, Some(credential)).await;
        assert_eq!(status, 200, "{work}");
        work["jobs"][0].clone()
    }
}

/// A PEM CSR for `cn` / `sans` with a fresh P-256 key.
pub fn csr_for(cn: &str, sans: &[&str]) -> String {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.serialize_request(&key).unwrap().pem().unwrap()
}

/// A TLS 1.3 connection to the server, handshake done, ALPN `alpn` offered.
pub async fn tls_connect(pki: &TestPki, port: u16, alpn: &[&[u8]]) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut config = pki.client_config(&[&rustls::version::TLS13]);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap()
}

/// Reads until the peer closes (or `limit` passes); returns what arrived and whether it closed.
pub async fn read_until_closed(stream: &mut (impl tokio::io::AsyncRead + Unpin), limit: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let closed = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (got, closed)
}

/// Writes raw bytes (ignoring a peer that already closed).
pub async fn send_raw(stream: &mut (impl tokio::io::AsyncWrite + Unpin), bytes: &[u8]) {
    let _ = stream.write_all(bytes).await;
    let _ = stream.flush().await;
}

/// Open descriptors of a process.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}
