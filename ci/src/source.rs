//! Where cluster images come from — built here from Debian packages and Go modules
//! (offline), or upstream images pulled from registries (online) — and what each
//! choice changes in a run. The runner decides once and passes the decision to every
//! script as `CERTCTL_IMAGE_SOURCE`, so no script guesses differently.

use std::fmt;
use std::str::FromStr;

/// The variable every script and the harness read.
pub const ENV: &str = "CERTCTL_IMAGE_SOURCE";

/// What was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Requested {
    /// Online when the pinned upstream node image is already in the docker daemon,
    /// else offline. No network is probed to decide.
    #[default]
    Auto,
    /// Always build locally.
    Offline,
    /// Always use upstream images.
    Online,
}

impl FromStr for Requested {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "" | "auto" => Ok(Self::Auto),
            "offline" => Ok(Self::Offline),
            "online" => Ok(Self::Online),
            other => Err(format!("{ENV}={other:?}: expected offline, online or auto")),
        }
    }
}

/// The decided image source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSource {
    /// Node, PostgreSQL, Prometheus and cert-manager images built here.
    Offline,
    /// Upstream images (kindest/node by digest, postgres, prom/prometheus, the
    /// official cert-manager chart).
    Online,
}

impl ImageSource {
    /// Decides: `auto` is online only when the pinned upstream node image is present.
    ///
    /// # Example
    /// ```
    /// use certctl_ci::source::{ImageSource, Requested};
    /// assert_eq!(ImageSource::decide(Requested::Auto, false), ImageSource::Offline);
    /// assert_eq!(ImageSource::decide(Requested::Auto, true), ImageSource::Online);
    /// assert_eq!(ImageSource::decide(Requested::Online, false), ImageSource::Online);
    /// ```
    pub fn decide(requested: Requested, upstream_node_image_present: bool) -> Self {
        match requested {
            Requested::Offline => Self::Offline,
            Requested::Online => Self::Online,
            Requested::Auto if upstream_node_image_present => Self::Online,
            Requested::Auto => Self::Offline,
        }
    }

    /// The value for [`ENV`].
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offline => "offline",
            Self::Online => "online",
        }
    }

    /// Where the tools come from when the user did not say (`CERTCTL_TOOLS_SOURCE`):
    /// online hosts download the checksummed release binaries, offline ones build
    /// from the Go module proxy.
    pub fn default_tools_source(self) -> &'static str {
        match self {
            Self::Offline => "build",
            Self::Online => "download",
        }
    }

    /// What an image-build phase does, for the phase table.
    pub fn images_note(self) -> &'static str {
        match self {
            Self::Offline => "node image, postgres, prometheus, cert-manager, netprobe, server, agent",
            Self::Online => "upstream node/postgres/prometheus; netprobe, server, agent built here",
        }
    }
}

impl fmt::Display for ImageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requested_values_parse_and_garbage_is_refused() {
        assert_eq!("".parse::<Requested>().unwrap(), Requested::Auto);
        assert_eq!("online".parse::<Requested>().unwrap(), Requested::Online);
        let err = "upstream".parse::<Requested>().unwrap_err();
        assert!(err.contains("CERTCTL_IMAGE_SOURCE=\"upstream\"") && err.contains("offline, online or auto"), "{err}");
    }

    #[test]
    fn an_explicit_choice_ignores_what_docker_holds() {
        assert_eq!(ImageSource::decide(Requested::Offline, true), ImageSource::Offline);
        assert_eq!(ImageSource::decide(Requested::Online, false), ImageSource::Online);
    }

    #[test]
    fn online_differs_where_upstream_images_differ() {
        assert_eq!(ImageSource::Online.default_tools_source(), "download");
        assert_eq!(ImageSource::Offline.default_tools_source(), "build");
    }
}
