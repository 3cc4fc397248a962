//! What the live tests share: installing a mode and the handle to what it
//! installed ([`live`]), the checks every mode must pass ([`checks`]), and
//! HTTPS clients pinned to the server's CA ([`http`]).

pub mod checks;
pub mod data;
pub mod http;
pub mod kubectl;
pub mod live;
