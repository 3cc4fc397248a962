//! The runner's command line.

use std::path::PathBuf;

use crate::plan::Tier;
use crate::verdict::FlakyPolicy;

/// Usage text, printed with every command-line error.
pub const USAGE: &str = "\
usage: cargo run -p certctl-ci -- <tier> [--flaky fail|record] [--filter EXPR]
       cargo run -p certctl-ci -- judge <junit.xml>... [--allow-list FILE] [--flaky fail|record]

tiers:
  fast   fmt, clippy, actionlint, the fast tests (unit, real PostgreSQL, real helm renders)
  e2e    host, images, tools, one kind cluster, the live matrix (sets up what it needs)
  gate   fast, then e2e, the shared set-up once (what .ci/run and the release gate run)
  bench  on a cluster it creates: helm install --wait and ct install per mode, then the
         live matrix; prints wall times and ratios (a measurement, never a verdict on time)

--flaky fail    (default) a test that passes only on retry fails the run unless allow-listed
--flaky record  report flaky tests, never fail on them (the nightly)
--filter EXPR   run only the live tests a nextest filterset selects, e.g. 'test(/^ha::/)'
                (e2e, gate, bench; the set-up and the other phases are unchanged)
judge           the flaky verdict on existing nextest JUnit reports";

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// Run a tier.
    Tier {
        /// Which.
        tier: Tier,
        /// What flaky tests do.
        flaky: FlakyPolicy,
        /// A nextest filterset narrowing the live phase.
        filter: Option<String>,
    },
    /// Judge existing reports.
    Judge {
        /// nextest JUnit files.
        reports: Vec<PathBuf>,
        /// The allow-list (default `.config/flaky-allowlist.txt`).
        allow_list: Option<PathBuf>,
        /// What flaky tests do.
        flaky: FlakyPolicy,
    },
}

/// Parses the arguments after the program name.
///
/// # Errors
/// A message naming the bad argument.
///
/// # Example
/// ```
/// use certctl_ci::{cli::{parse, Invocation}, plan::Tier, verdict::FlakyPolicy};
/// assert_eq!(parse(["e2e", "--flaky", "record"]).unwrap(), Invocation::Tier { tier: Tier::E2e, flaky: FlakyPolicy::Record, filter: None });
/// assert!(parse(["gate", "--bogus"]).is_err());
/// ```
pub fn parse<I, S>(args: I) -> Result<Invocation, String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut args = args.into_iter().map(Into::into);
    let first = args.next().ok_or("no tier given")?;
    let mut flaky = FlakyPolicy::default();
    let mut allow_list = None;
    let mut reports = Vec::new();
    let mut filter = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--flaky" => flaky = args.next().ok_or("--flaky needs fail or record")?.parse()?,
            "--allow-list" if first == "judge" => allow_list = Some(PathBuf::from(args.next().ok_or("--allow-list needs a file")?)),
            "--filter" if first != "judge" => {
                filter = Some(args.next().filter(|f| !f.is_empty()).ok_or("--filter needs a nextest filterset")?)
            }
            a if first == "judge" && !a.starts_with('-') => reports.push(PathBuf::from(a)),
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    if first == "judge" {
        if reports.is_empty() {
            return Err("judge needs at least one JUnit report".into());
        }
        return Ok(Invocation::Judge { reports, allow_list, flaky });
    }
    Ok(Invocation::Tier { tier: first.parse()?, flaky, filter })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_takes_reports_and_an_allow_list() {
        let got = parse(["judge", "a.xml", "--allow-list", "l.txt", "b.xml"]).unwrap();
        assert_eq!(
            got,
            Invocation::Judge { reports: vec!["a.xml".into(), "b.xml".into()], allow_list: Some("l.txt".into()), flaky: FlakyPolicy::Fail }
        );
    }

    #[test]
    fn a_filter_narrows_a_tier_not_judge() {
        let got = parse(["gate", "--filter", "test(/^ha::/)"]).unwrap();
        assert_eq!(got, Invocation::Tier { tier: Tier::Gate, flaky: FlakyPolicy::Fail, filter: Some("test(/^ha::/)".into()) });
        assert!(parse(["e2e", "--filter"]).unwrap_err().contains("--filter needs"));
        assert!(parse(["judge", "a.xml", "--filter", "x"]).unwrap_err().contains("unexpected argument `--filter`"));
    }

    #[test]
    fn errors_name_the_argument() {
        assert_eq!(parse(Vec::<String>::new()).unwrap_err(), "no tier given");
        assert!(parse(["fast", "--flaky", "maybe"]).unwrap_err().contains("--flaky maybe"));
        assert!(parse(["fast", "x.xml"]).unwrap_err().contains("unexpected argument `x.xml`"));
        assert!(parse(["judge"]).unwrap_err().contains("at least one"));
    }
}
