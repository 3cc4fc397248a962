//! The failed steps of a live scenario, read from the JUnit file the harness writes
//! for it (`junit-<scenario>.xml`, one testcase per step).

use std::path::Path;

use regex::Regex;

/// Names of the failed (or errored) testcases of a JUnit document, in order.
pub fn failed_steps(xml: &str) -> Vec<String> {
    let case = Regex::new(r#"(?s)<testcase\b([^>]*?)(?:/>|>(.*?)</testcase>)"#).expect("static regex");
    let name = Regex::new(r#"\bname="([^"]*)""#).expect("static regex");
    case.captures_iter(xml)
        .filter(|c| c.get(2).is_some_and(|body| body.as_str().contains("<failure") || body.as_str().contains("<error")))
        .filter_map(|c| name.captures(&c[1]).map(|n| unescape(&n[1])))
        .collect()
}

/// The failed steps of `<artifacts>/junit-<scenario>.xml`; `None` when the file is missing
/// (the scenario never reached its report).
pub fn failed_steps_of(artifacts: &Path, scenario: &str) -> Option<Vec<String>> {
    std::fs::read_to_string(artifacts.join(format!("junit-{scenario}.xml"))).ok().map(|xml| failed_steps(&xml))
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failed_steps_are_named() {
        let xml = r#"<testsuites><testsuite name="ha">
<testcase name="install" classname="e2e.ha" time="9"/>
<testcase name="NetworkPolicy admits this release&apos;s agents" classname="e2e.ha"><failure message="connected">x</failure></testcase>
<testcase name="rollout" classname="e2e.ha" time="1"></testcase>
</testsuite></testsuites>"#;
        assert_eq!(failed_steps(xml), vec!["NetworkPolicy admits this release's agents"]);
    }

    #[test]
    fn steps_come_from_the_harness_junit() {
        let dir = tempfile::tempdir().unwrap();
        let steps = [
            certctl_harness::junit::StepRecord { name: "install".into(), elapsed: Default::default(), failure: None },
            certctl_harness::junit::StepRecord {
                name: "PDB <holds>".into(),
                elapsed: Default::default(),
                failure: Some("429 not seen".into()),
            },
        ];
        certctl_harness::junit::write(dir.path(), "ha", &steps, None).unwrap();
        assert_eq!(failed_steps_of(dir.path(), "ha"), Some(vec!["PDB <holds>".to_owned()]));
        assert_eq!(failed_steps_of(dir.path(), "other"), None);
    }
}
