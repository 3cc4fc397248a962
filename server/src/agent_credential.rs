//! Per-agent credentials: a random secret issued when an agent first registers (or claims a
//! row that has none), presented by the agent on every `/agents/{id}/...` request. The
//! server keeps only its SHA-256 hash and compares hashes in constant time.

use std::fmt::Write;

use rand::RngCore;
use ring::digest;
use subtle::ConstantTimeEq;

/// Request header carrying the credential.
pub const HEADER: &str = "certctl-agent-credential";

/// Length of a stored hash (SHA-256).
pub const HASH_LEN: usize = 32;

/// A freshly issued credential: the secret (shown to the agent once) and the hash to store.
#[derive(Clone)]
pub struct Issued {
    /// Hex text of 32 random bytes.
    pub secret: String,
    /// SHA-256 of `secret`.
    pub hash: [u8; HASH_LEN],
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").finish_non_exhaustive()
    }
}

/// Generates a new credential (256 bits from the OS-seeded CSPRNG).
pub fn issue() -> Issued {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = bytes.iter().fold(String::with_capacity(64), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    });
    let hash = hash(&secret);
    Issued { secret, hash }
}

/// SHA-256 of a presented credential. The secret has 256 bits of entropy, so an unsalted
/// fast hash is enough: there is nothing to guess.
pub fn hash(presented: &str) -> [u8; HASH_LEN] {
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(digest::digest(&digest::SHA256, presented.as_bytes()).as_ref());
    out
}

/// Whether `presented` hashes to `stored`, compared in constant time.
pub fn matches(stored: &[u8], presented: &str) -> bool {
    stored.len() == HASH_LEN && bool::from(hash(presented).as_slice().ct_eq(stored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_credentials_match_only_themselves() {
        let a = issue();
        let b = issue();
        assert_eq!(a.secret.len(), 64);
        assert_ne!(a.secret, b.secret);
        assert!(matches(&a.hash, &a.secret));
        assert!(!matches(&a.hash, &b.secret));
        assert!(!matches(&a.hash, ""));
        assert!(!matches(&a.hash[..16], &a.secret), "a truncated hash never matches");
        assert!(!format!("{a:?}").contains(&a.secret));
    }
}
