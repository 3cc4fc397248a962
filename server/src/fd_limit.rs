//! The open-file limit decides how many connections the server can hold: every connection is
//! a file descriptor, and so is every database connection, TLS file read and the listener.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Descriptors kept back for everything that is not a client connection, on top of the
/// database pool: listener, epoll, stdio, TLS file reloads, the runtime's own.
const RESERVED: u64 = 64;

/// Raises the soft open-file limit to the hard one (a soft limit of 1024 is a common default
/// that says nothing about what the host allows), then returns how many client connections
/// fit: `configured`, or fewer if the limit leaves less after the pool and [`RESERVED`].
/// Also returns the limit in force, for the log.
pub fn connection_capacity(configured: usize, database_connections: u32) -> (usize, Option<u64>) {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return (configured, None);
    };
    let limit = if hard > soft && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() { hard } else { soft };
    let available = limit.saturating_sub(RESERVED + u64::from(database_connections)).max(1);
    let capacity = usize::try_from(available).unwrap_or(usize::MAX).min(configured);
    (capacity, Some(limit))
}
