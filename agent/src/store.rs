//! The key directory: layout, permissions and crash-safe writes.
//!
//! Layout (see docs/agent.md):
//! - `<certificate_id>.key`  private key, PKCS#8 PEM, mode 0600
//! - `<certificate_id>.crt`  leaf certificate, PEM, mode 0644
//! - `ca.crt`                the CA that signed the certificates, PEM, mode 0644
//! - `agent.key`, `agent.crt` symlinks to the agent's own certificate's files
//! - `agent.id`              the agent id the server assigned (informational)
//! - `agent.credential`      the credential that proves this agent's identity, mode 0600
//! - `<certificate_id>.target` the Kubernetes Secret the certificate is kept in (JSON), if any
//! - `.alive`                liveness stamp written by the running loop
//!
//! Every file is written to a temporary file in the same directory, fsynced and renamed
//! over its final name, so a crash leaves either the old or the new file, never half of one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the key directory.
pub const DIR_MODE: u32 = 0o700;
/// Mode of private key files.
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificate files.
pub const CERT_MODE: u32 = 0o644;

/// File name of the CA certificate.
pub const CA_FILE: &str = "ca.crt";
/// Stable name of the agent's own private key (a symlink).
pub const AGENT_KEY_LINK: &str = "agent.key";
/// Stable name of the agent's own certificate (a symlink).
pub const AGENT_CERT_LINK: &str = "agent.crt";
/// File holding the agent id.
pub const AGENT_ID_FILE: &str = "agent.id";
/// File holding the agent's credential (issued by the server at first registration).
pub const AGENT_CREDENTIAL_FILE: &str = "agent.credential";
/// Liveness stamp file.
pub const ALIVE_FILE: &str = ".alive";

/// Errors from the key directory.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key directory could not be created or secured.
    #[error("key directory {path}: {action} failed (the agent must be able to write there; check the volume and its owner)")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// What was attempted.
        action: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The key directory path exists but is not a directory.
    #[error("key directory {0} exists but is not a directory")]
    NotADirectory(PathBuf),
    /// A file in the key directory could not be written.
    #[error("writing {path} failed")]
    Write {
        /// The final path of the file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A file in the key directory could not be read.
    #[error("reading {path} failed")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A certificate id from the server is not usable as a file name.
    #[error("certificate id {0:?} is not a safe file name")]
    UnsafeId(String),
}

/// A certificate's files as installed.
pub struct Installed {
    /// Private key, PKCS#8 PEM.
    pub key_pem: String,
    /// Leaf certificate PEM.
    pub certificate_pem: String,
    /// CA certificate PEM.
    pub ca_pem: String,
}

impl std::fmt::Debug for Installed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Installed").field("key_pem", &"<redacted>").finish_non_exhaustive()
    }
}

/// The agent's key directory.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

impl KeyStore {
    /// Opens `dir`, creating it (and parents) with mode 0700 if needed and tightening an
    /// existing directory to 0700.
    ///
    /// # Errors
    /// [`StoreError`] if the directory cannot be created or secured.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let dir_error = |action, source| StoreError::Dir { path: dir.to_owned(), action, source };
        match fs::metadata(dir) {
            Ok(meta) if !meta.is_dir() => return Err(StoreError::NotADirectory(dir.to_owned())),
            Ok(meta) => {
                if meta.permissions().mode() & 0o777 != DIR_MODE {
                    fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE)).map_err(|e| dir_error("chmod 0700", e))?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir).map_err(|e| dir_error("create", e))?;
                // The umask may have narrowed the mode of the last component; set it exactly.
                fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE)).map_err(|e| dir_error("chmod 0700", e))?;
            }
            Err(e) => return Err(dir_error("stat", e)),
        }
        Ok(Self { dir: dir.to_owned() })
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the private key for `certificate_id`.
    ///
    /// # Errors
    /// [`StoreError::UnsafeId`] if the id could escape the directory.
    pub fn key_path(&self, certificate_id: &str) -> Result<PathBuf, StoreError> {
        Ok(self.dir.join(format!("{}.key", safe_id(certificate_id)?)))
    }

    /// Path of the certificate for `certificate_id`.
    ///
    /// # Errors
    /// [`StoreError::UnsafeId`] if the id could escape the directory.
    pub fn cert_path(&self, certificate_id: &str) -> Result<PathBuf, StoreError> {
        Ok(self.dir.join(format!("{}.crt", safe_id(certificate_id)?)))
    }

    /// Path of the liveness stamp.
    pub fn alive_path(&self) -> PathBuf {
        self.dir.join(ALIVE_FILE)
    }

    /// Installs a key and its certificate (and the CA) for `certificate_id`. The key is
    /// written first so that whenever a certificate is on disk its key is too.
    ///
    /// # Errors
    /// [`StoreError`] if a write fails; files already in place are left untouched.
    pub fn install(&self, certificate_id: &str, key_pem: &str, cert_pem: &str, ca_pem: &str) -> Result<(), StoreError> {
        write_atomic(&self.key_path(certificate_id)?, key_pem.as_bytes(), KEY_MODE)?;
        if !ca_pem.trim().is_empty() {
            write_atomic(&self.dir.join(CA_FILE), ca_pem.as_bytes(), CERT_MODE)?;
        }
        write_atomic(&self.cert_path(certificate_id)?, cert_pem.as_bytes(), CERT_MODE)
    }

    /// Records the Secret target of `certificate_id` (JSON written by the caller), so a
    /// restarted agent writes it again.
    ///
    /// # Errors
    /// [`StoreError`] if the file cannot be written.
    pub fn write_target(&self, certificate_id: &str, target_json: &str) -> Result<(), StoreError> {
        let id = safe_id(certificate_id)?;
        write_atomic(&self.dir.join(format!("{id}.target")), target_json.as_bytes(), CERT_MODE)
    }

    /// Every recorded Secret target: (certificate id, its JSON), in id order.
    ///
    /// # Errors
    /// [`StoreError::Read`] if the directory or a target file cannot be read.
    pub fn targets(&self) -> Result<Vec<(String, String)>, StoreError> {
        let read_error = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Read { path, source }
        };
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(read_error(&self.dir))? {
            let path = entry.map_err(read_error(&self.dir))?.path();
            let Some(id) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".target")) else {
                continue;
            };
            if safe_id(id).is_ok() {
                out.push((id.to_owned(), fs::read_to_string(&path).map_err(read_error(&path))?));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The installed key, certificate and CA of `certificate_id`, PEM.
    ///
    /// # Errors
    /// [`StoreError::Read`] if one is missing or unreadable.
    pub fn read_installed(&self, certificate_id: &str) -> Result<Installed, StoreError> {
        let read = |path: PathBuf| fs::read_to_string(&path).map_err(|source| StoreError::Read { path, source });
        Ok(Installed {
            key_pem: read(self.key_path(certificate_id)?)?,
            certificate_pem: read(self.cert_path(certificate_id)?)?,
            ca_pem: read(self.dir.join(CA_FILE))?,
        })
    }

    /// Points `agent.key` / `agent.crt` at the files of `certificate_id` (relative symlinks,
    /// replaced atomically).
    ///
    /// # Errors
    /// [`StoreError`] if a link cannot be made.
    pub fn link_agent_identity(&self, certificate_id: &str) -> Result<(), StoreError> {
        let id = safe_id(certificate_id)?;
        replace_symlink(&self.dir.join(AGENT_KEY_LINK), Path::new(&format!("{id}.key")))?;
        replace_symlink(&self.dir.join(AGENT_CERT_LINK), Path::new(&format!("{id}.crt")))
    }

    /// The stored agent credential, if one was issued before (a restart keeps the identity).
    ///
    /// # Errors
    /// [`StoreError::Read`] if the file exists but cannot be read.
    pub fn read_credential(&self) -> Result<Option<String>, StoreError> {
        let path = self.dir.join(AGENT_CREDENTIAL_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_owned()).filter(|c| !c.is_empty())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Read { path, source }),
        }
    }

    /// Stores the agent credential, readable by the agent's user only.
    ///
    /// # Errors
    /// [`StoreError::Write`] if the file cannot be written.
    pub fn write_credential(&self, credential: &str) -> Result<(), StoreError> {
        write_atomic(&self.dir.join(AGENT_CREDENTIAL_FILE), format!("{credential}\n").as_bytes(), KEY_MODE)
    }

    /// Records the agent id (informational; the credential is what proves the identity).
    ///
    /// # Errors
    /// [`StoreError::Write`] if the file cannot be written.
    pub fn write_agent_id(&self, id: &str) -> Result<(), StoreError> {
        write_atomic(&self.dir.join(AGENT_ID_FILE), format!("{id}\n").as_bytes(), CERT_MODE)
    }
}

/// Certificate ids come from the server; only accept ones that are plain file names.
fn safe_id(id: &str) -> Result<&str, StoreError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok && id != AGENT_KEY_LINK.trim_end_matches(".key") && id != "ca" {
        Ok(id)
    } else {
        Err(StoreError::UnsafeId(id.to_owned()))
    }
}

/// Writes `contents` to `path` with `mode`: temp file in the same directory (created with
/// `mode` from the start, so the key is never readable by others), fsync, rename, fsync dir.
///
/// # Errors
/// [`StoreError::Write`]; on failure the temp file is removed and `path` is unchanged.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), StoreError> {
    let write_error = |source| StoreError::Write { path: path.to_owned(), source };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        // An old temp file left by a crash keeps its old mode; force ours.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(write_error)
}

fn replace_symlink(link: &Path, target: &Path) -> Result<(), StoreError> {
    let write_error = |source| StoreError::Write { path: link.to_owned(), source };
    let name = link.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = link.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(write_error)?;
    fs::rename(&tmp, link).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        write_error(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn open_creates_nested_dir_with_0700() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/keys");
        let store = KeyStore::open(&dir).unwrap();
        assert_eq!(mode(store.dir()), 0o700);
    }

    #[test]
    fn open_tightens_an_existing_dir() {
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        KeyStore::open(tmp.path()).unwrap();
        assert_eq!(mode(tmp.path()), 0o700);
    }

    #[test]
    fn open_refuses_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        fs::write(&file, "x").unwrap();
        assert!(matches!(KeyStore::open(&file), Err(StoreError::NotADirectory(_))));
    }

    #[test]
    fn install_writes_key_0600_and_certs_0644_and_links_identity() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KeyStore::open(tmp.path()).unwrap();
        store.install("c1", "KEY", "CERT", "CA").unwrap();
        store.link_agent_identity("c1").unwrap();
        assert_eq!(mode(&tmp.path().join("c1.key")), 0o600);
        assert_eq!(mode(&tmp.path().join("c1.crt")), 0o644);
        assert_eq!(fs::read_to_string(tmp.path().join("agent.key")).unwrap(), "KEY");
        assert_eq!(fs::read_to_string(tmp.path().join("agent.crt")).unwrap(), "CERT");
        assert_eq!(fs::read_to_string(tmp.path().join("ca.crt")).unwrap(), "CA");
        assert_eq!(fs::read_link(tmp.path().join("agent.crt")).unwrap(), PathBuf::from("c1.crt"));
        // Relinking to a newer certificate replaces the links.
        store.install("c2", "KEY2", "CERT2", "CA").unwrap();
        store.link_agent_identity("c2").unwrap();
        assert_eq!(fs::read_to_string(tmp.path().join("agent.crt")).unwrap(), "CERT2");
        let leftovers: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    }

    #[test]
    fn atomic_write_replaces_and_fixes_mode_of_stale_temp() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.key");
        // A temp file left by a crash, world-readable.
        let stale = tmp.path().join(format!(".x.key.tmp-{}", std::process::id()));
        fs::write(&stale, "half").unwrap();
        fs::set_permissions(&stale, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&path, "old").unwrap();
        write_atomic(&path, b"new", KEY_MODE).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(mode(&path), 0o600);
        assert!(!stale.exists());
    }

    #[test]
    fn failed_write_leaves_what_was_there_and_no_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        // A non-empty directory where the file should go: the final rename fails
        // (this works even as root, where permission bits would not stop us).
        let path = tmp.path().join("x.key");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("keep"), "old").unwrap();
        let result = write_atomic(&path, b"new", KEY_MODE);
        assert!(matches!(result, Err(StoreError::Write { .. })), "{result:?}");
        assert_eq!(fs::read_to_string(path.join("keep")).unwrap(), "old");
        let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x.key")]);
    }

    #[test]
    fn credential_is_kept_0600_and_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KeyStore::open(tmp.path()).unwrap();
        assert_eq!(store.read_credential().unwrap(), None);
        store.write_credential("c0ffee").unwrap();
        assert_eq!(mode(&tmp.path().join(AGENT_CREDENTIAL_FILE)), 0o600);
        assert_eq!(store.read_credential().unwrap().as_deref(), Some("c0ffee"));
    }

    #[test]
    fn unsafe_ids_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KeyStore::open(tmp.path()).unwrap();
        for id in ["", "../x", "a/b", ".hidden", "agent", "ca"] {
            assert!(matches!(store.key_path(id), Err(StoreError::UnsafeId(_))), "{id:?}");
        }
        assert!(store.key_path("3f1c2b7e-1111-4a4a-9b9b-000000000001").is_ok());
    }
}
