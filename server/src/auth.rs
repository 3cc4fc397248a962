//! API keys and permissions: keys are kept only as SHA-256 hashes and compared in constant time.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use ring::digest;
use subtle::ConstantTimeEq;

/// One thing a caller may do. The wire names are the ones used in the API contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// POST /agents
    AgentRegister,
    /// POST /agents/{id}/heartbeat
    AgentHeartbeat,
    /// GET /agents/{id}/work, GET /agents/{id}/certificates/{cert_id}, job status
    AgentJobPoll,
    /// POST /agents/{id}/csr
    AgentCsrSubmit,
    /// GET /certificates, GET /certificates/{id}
    CertificateRead,
    /// POST/PUT/DELETE /certificates, DELETE /agents/{id}, DELETE /agents/{id}/credential
    CertificateWrite,
    /// GET /metrics/prometheus
    MetricsRead,
}

impl Permission {
    /// Every permission, in wire-name order.
    pub const ALL: [Permission; 7] = [
        Permission::AgentRegister,
        Permission::AgentHeartbeat,
        Permission::AgentJobPoll,
        Permission::AgentCsrSubmit,
        Permission::CertificateRead,
        Permission::CertificateWrite,
        Permission::MetricsRead,
    ];

    /// The permissions an agent needs and nothing more (used for the bootstrap token).
    pub const AGENT: [Permission; 4] =
        [Permission::AgentRegister, Permission::AgentHeartbeat, Permission::AgentJobPoll, Permission::AgentCsrSubmit];

    /// The name used on the wire and in CERTCTL_AUTH_SCOPED_KEYS.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::AgentRegister => "agent.register",
            Permission::AgentHeartbeat => "agent.heartbeat",
            Permission::AgentJobPoll => "agent.job.poll",
            Permission::AgentCsrSubmit => "agent.csr.submit",
            Permission::CertificateRead => "certificate.read",
            Permission::CertificateWrite => "certificate.write",
            Permission::MetricsRead => "metrics.read",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A permission name that is not one of [`Permission::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown permission {0:?}")]
pub struct UnknownPermission(pub String);

impl FromStr for Permission {
    type Err = UnknownPermission;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| UnknownPermission(s.to_owned()))
    }
}

/// Who made a request and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    permissions: BTreeSet<Permission>,
}

impl Principal {
    /// A principal holding the given permissions.
    pub fn new(permissions: impl IntoIterator<Item = Permission>) -> Self {
        Self { permissions: permissions.into_iter().collect() }
    }

    /// A principal holding every permission (full keys, and `none` auth).
    pub fn all() -> Self {
        Self::new(Permission::ALL)
    }

    /// Whether this principal holds `permission`.
    pub fn has(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }
}

/// One accepted key: its hash and what it grants.
#[derive(Clone)]
struct KeyEntry {
    hash: [u8; 32],
    principal: Principal,
}

/// The set of accepted keys. Several keys may be valid at once (rotation).
#[derive(Clone, Default)]
pub struct KeyStore {
    entries: Vec<KeyEntry>,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material, not even hashes.
        f.debug_struct("KeyStore").field("keys", &self.entries.len()).finish()
    }
}

fn sha256(key: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, key.as_bytes()).as_ref());
    out
}

impl KeyStore {
    /// Adds a key granting `principal`.
    pub fn insert(&mut self, key: &str, principal: Principal) {
        self.entries.push(KeyEntry { hash: sha256(key), principal });
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Looks a presented key up. Every entry is compared (no early exit) so the time taken
    /// does not reveal which key, if any, matched.
    pub fn authenticate(&self, presented: &str) -> Option<Principal> {
        let hash = sha256(presented);
        let mut found: Option<&Principal> = None;
        for entry in &self.entries {
            if bool::from(entry.hash.ct_eq(&hash)) && found.is_none() {
                found = Some(&entry.principal);
            }
        }
        found.cloned()
    }
}

/// How requests under /api/v1 are authenticated.
#[derive(Debug, Clone)]
pub enum Authenticator {
    /// `CERTCTL_AUTH_TYPE=api-key`: `Authorization: Bearer <key>` against the key store.
    ApiKey(KeyStore),
    /// `CERTCTL_AUTH_TYPE=none`: every request holds every permission.
    None,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_names_round_trip() {
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>(), Ok(p));
        }
        assert!("metrics.write".parse::<Permission>().is_err());
    }

    #[test]
    fn all_rotated_keys_are_accepted_and_others_refused() {
        let mut store = KeyStore::default();
        store.insert("old", Principal::all());
        store.insert("new", Principal::all());
        store.insert("scrape", Principal::new([Permission::MetricsRead]));
        assert_eq!(store.authenticate("old"), Some(Principal::all()));
        assert_eq!(store.authenticate("new"), Some(Principal::all()));
        let scrape = store.authenticate("scrape").expect("scoped key accepted");
        assert!(scrape.has(Permission::MetricsRead));
        assert!(!scrape.has(Permission::AgentHeartbeat));
        assert_eq!(store.authenticate("removed"), None);
        assert_eq!(store.authenticate(""), None);
    }

    #[test]
    fn debug_output_hides_keys() {
        let mut store = KeyStore::default();
        store.insert("secret-value", Principal::all());
        assert!(!format!("{store:?}").contains("secret"));
    }
}
