//! The flaky verdict: a test that passed only on retry fails the run unless the
//! allow-list tolerates it until a date not yet past; an expired entry fails the run
//! whether or not its test flaked. The nightly only records.

use std::str::FromStr;

use time::Date;

use crate::allowlist::{self, AllowList};
use crate::outcomes::{Status, TestOutcome};

/// What a flaky test does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlakyPolicy {
    /// Fails the run unless allow-listed (the gate, pull requests).
    #[default]
    Fail,
    /// Reported, never failing (the nightly, which watches trends).
    Record,
}

impl FromStr for FlakyPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fail" => Ok(Self::Fail),
            "record" => Ok(Self::Record),
            other => Err(format!("--flaky {other}: expected fail or record")),
        }
    }
}

/// The verdict on one run's outcomes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Reasons the run fails.
    pub failures: Vec<String>,
    /// Reported, not failing.
    pub warnings: Vec<String>,
}

impl Verdict {
    /// Whether nothing fails the run.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Judges flaky tests and allow-list entries. Failed tests are judged by nextest's
/// exit status; they are not repeated here.
///
/// # Example
/// ```
/// use certctl_ci::{allowlist::AllowList, outcomes::*, verdict::*};
/// let flaky = TestOutcome { id: TestId::new("b", "t"), status: Status::Flaky { failed_attempts: 1 }, time: Default::default() };
/// let today = time::macros::date!(2026 - 12 - 02);
/// assert!(!judge(FlakyPolicy::Fail, &[flaky.clone()], &AllowList::default(), today).passed());
/// assert!(judge(FlakyPolicy::Record, &[flaky], &AllowList::default(), today).passed());
/// ```
pub fn judge(policy: FlakyPolicy, outcomes: &[TestOutcome], list: &AllowList, today: Date) -> Verdict {
    let mut v = Verdict::default();
    let mut push = |fails: bool, text: String| {
        if fails && policy == FlakyPolicy::Fail {
            v.failures.push(text);
        } else {
            v.warnings.push(text);
        }
    };
    for o in outcomes {
        let Status::Flaky { failed_attempts } = o.status else { continue };
        let passed_on = failed_attempts + 1;
        match list.find(&o.id) {
            None => push(
                true,
                format!(
                    "FLAKY {}: passed only on attempt {passed_on}; fix it, or list it in {} with a reason and an expiry date",
                    o.id,
                    allowlist::PATH
                ),
            ),
            Some(e) if e.expires < today => {
                push(true, format!("FLAKY {}: passed only on attempt {passed_on}; its allow-list entry expired on {}", o.id, e.expires))
            }
            Some(e) => {
                push(false, format!("FLAKY {}: passed only on attempt {passed_on}; allow-listed until {} ({})", o.id, e.expires, e.reason))
            }
        }
    }
    for e in list.entries.iter().filter(|e| e.expires < today) {
        push(
            true,
            format!(
                "{}:{}: the allow-list entry for {} expired on {}; renew it with a reason or remove it",
                allowlist::PATH,
                e.line,
                e.test,
                e.expires
            ),
        );
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcomes::TestId;
    use std::path::Path;
    use time::macros::date;

    const TODAY: Date = date!(2026 - 12 - 02);

    fn flaky(name: &str) -> TestOutcome {
        TestOutcome { id: TestId::new("bin", name), status: Status::Flaky { failed_attempts: 1 }, time: Default::default() }
    }

    fn list(text: &str) -> AllowList {
        AllowList::parse(text, Path::new("l")).unwrap()
    }

    #[test]
    fn unlisted_flaky_fails_and_names_the_test() {
        let v = judge(FlakyPolicy::Fail, &[flaky("t")], &AllowList::default(), TODAY);
        assert_eq!(v.failures.len(), 1, "{v:?}");
        assert!(v.failures[0].contains("FLAKY bin t: passed only on attempt 2"), "{v:?}");
    }

    #[test]
    fn listed_flaky_warns_until_its_expiry_day_inclusive() {
        let v = judge(FlakyPolicy::Fail, &[flaky("t")], &list("bin t | 2026-12-02 | known\n"), TODAY);
        assert!(v.passed(), "{v:?}");
        assert!(v.warnings[0].contains("allow-listed until 2026-12-02 (known)"), "{v:?}");
    }

    #[test]
    fn expired_entry_fails_even_when_its_test_did_not_flake() {
        let v = judge(FlakyPolicy::Fail, &[], &list("bin t | 2026-12-01 | old\n"), TODAY);
        assert_eq!(v.failures.len(), 1, "{v:?}");
        assert!(v.failures[0].contains("expired on 2026-12-01"), "{v:?}");
        let v = judge(FlakyPolicy::Fail, &[flaky("t")], &list("bin t | 2026-12-01 | old\n"), TODAY);
        assert_eq!(v.failures.len(), 2, "the flake and the stale entry: {v:?}");
    }

    #[test]
    fn record_policy_reports_everything_and_fails_nothing() {
        let v = judge(FlakyPolicy::Record, &[flaky("t"), flaky("u")], &list("bin u | 2026-01-01 | old\n"), TODAY);
        assert!(v.passed() && v.warnings.len() == 3, "{v:?}");
    }

    #[test]
    fn passed_and_failed_tests_are_not_the_verdict_s_business() {
        let passed = TestOutcome { id: TestId::new("b", "p"), status: Status::Passed, time: Default::default() };
        let failed = TestOutcome { id: TestId::new("b", "f"), status: Status::Failed("x".into()), time: Default::default() };
        assert_eq!(judge(FlakyPolicy::Fail, &[passed, failed], &AllowList::default(), TODAY), Verdict::default());
    }
}
