//! Liveness for the exec probe `certctl-agent health`: the running loop stamps
//! `<key_dir>/.alive` with the current time on every turn; `health` checks the stamp is
//! fresh. A wedged loop stops stamping and the probe fails with the stamp's age.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::store::{write_atomic, StoreError, ALIVE_FILE};

/// The loop wakes at least this often to stamp, even when both intervals are longer.
pub const MAX_TICK: Duration = Duration::from_secs(30);

/// When the loop stamps and how old a stamp may be before the agent counts as dead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Liveness {
    /// The stamp file.
    pub path: PathBuf,
    /// How often the loop wakes to stamp: min(heartbeat, poll, 30 s).
    pub tick: Duration,
    /// Oldest acceptable stamp: 3 ticks plus 2 request timeouts (a turn may wait on the
    /// server for up to a request timeout before it stamps again).
    pub max_age: Duration,
}

/// Why `health` failed; the message is the probe's one-line reason.
#[derive(Debug, thiserror::Error)]
pub enum Unhealthy {
    /// No stamp yet.
    #[error("no liveness stamp at {0}: the agent loop is not running (or has not started yet)")]
    Missing(PathBuf),
    /// Stamp unreadable.
    #[error("cannot read liveness stamp {path}: {source}")]
    Unreadable {
        /// The stamp file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Stamp content is not a timestamp.
    #[error("liveness stamp {0} is corrupt")]
    Corrupt(PathBuf),
    /// Stamp too old.
    #[error("liveness stamp {path} is {age:?} old (limit {max_age:?}): the agent loop is stuck")]
    Stale {
        /// The stamp file.
        path: PathBuf,
        /// Its age.
        age: Duration,
        /// The limit.
        max_age: Duration,
    },
}

impl Liveness {
    /// The liveness policy for `config`.
    pub fn for_config(config: &Config) -> Self {
        let tick = config.heartbeat_interval.min(config.poll_interval).min(MAX_TICK);
        Self { path: config.key_dir.join(ALIVE_FILE), tick, max_age: tick * 3 + config.request_timeout * 2 }
    }

    /// Writes the stamp (now).
    ///
    /// # Errors
    /// [`StoreError::Write`] if the key directory is not writable.
    pub fn stamp(&self) -> Result<(), StoreError> {
        write_atomic(&self.path, format!("{}\n", unix_now().as_secs()).as_bytes(), 0o600)
    }

    /// Removes the stamp (clean exit), so a stopped agent never looks alive.
    pub fn clear(&self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// Checks the stamp is fresh.
    ///
    /// # Errors
    /// [`Unhealthy`] with the reason.
    pub fn check(&self) -> Result<Duration, Unhealthy> {
        check_stamp(&self.path, self.max_age, unix_now())
    }
}

fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn check_stamp(path: &Path, max_age: Duration, now: Duration) -> Result<Duration, Unhealthy> {
    let text = std::fs::read_to_string(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Unhealthy::Missing(path.to_owned()),
        _ => Unhealthy::Unreadable { path: path.to_owned(), source },
    })?;
    let stamped: u64 = text.trim().parse().map_err(|_| Unhealthy::Corrupt(path.to_owned()))?;
    // A stamp from the future (clock step) counts as fresh.
    let age = now.saturating_sub(Duration::from_secs(stamped));
    if age > max_age {
        return Err(Unhealthy::Stale { path: path.to_owned(), age, max_age });
    }
    Ok(age)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn liveness(dir: &Path) -> Liveness {
        Liveness { path: dir.join(ALIVE_FILE), tick: Duration::from_secs(1), max_age: Duration::from_secs(10) }
    }

    #[test]
    fn fresh_stamp_is_healthy() {
        let tmp = tempfile::tempdir().unwrap();
        let l = liveness(tmp.path());
        l.stamp().unwrap();
        assert!(l.check().unwrap() <= Duration::from_secs(1));
    }

    #[test]
    fn missing_stale_and_corrupt_stamps_fail_with_reasons() {
        let tmp = tempfile::tempdir().unwrap();
        let l = liveness(tmp.path());
        assert!(matches!(l.check(), Err(Unhealthy::Missing(_))));
        std::fs::write(&l.path, "1000\n").unwrap();
        let err = check_stamp(&l.path, Duration::from_secs(10), Duration::from_secs(1011)).unwrap_err();
        assert!(err.to_string().contains("11s old (limit 10s)"), "{err}");
        std::fs::write(&l.path, "yesterday").unwrap();
        assert!(matches!(l.check(), Err(Unhealthy::Corrupt(_))));
        l.clear();
        assert!(matches!(l.check(), Err(Unhealthy::Missing(_))));
    }

    #[test]
    fn bound_follows_the_intervals() {
        let mut c = crate::config::Config::from_lookup(|k| {
            match k {
                "CERTCTL_SERVER_URL" => Some("https://h"),
                "CERTCTL_API_KEY" => Some("k"),
                "CERTCTL_AGENT_NAME" => Some("a"),
                "CERTCTL_INSECURE_SKIP_VERIFY" => Some("true"),
                _ => None,
            }
            .map(String::from)
        })
        .unwrap();
        let l = Liveness::for_config(&c);
        assert_eq!(l.tick, Duration::from_secs(30));
        assert_eq!(l.max_age, Duration::from_secs(150));
        c.poll_interval = Duration::from_secs(2);
        assert_eq!(Liveness::for_config(&c).tick, Duration::from_secs(2));
    }
}
