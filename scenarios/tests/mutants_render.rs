//! The fast tier scores itself: every catalogue mutant the render tier should kill is
//! applied to a scratch chart and its render tests run against it; a survivor, or a
//! mutant whose target text moved, fails this test by name. The report goes to
//! `target/mutants/render/` (`mutants.md`, `junit-mutants.xml`).

use std::collections::BTreeSet;

use certctl_scenarios::mutants::catalogue::catalogue;
use certctl_scenarios::mutants::report::{self, verdict_text, Score};
use certctl_scenarios::mutants::run::{run, Options, Verdict};
use certctl_scenarios::mutants::Tier;

#[test]
fn every_render_tier_mutant_is_killed() {
    let workspace = certctl_harness::workspace::root();
    let opts = Options { out: workspace.join("target/mutants/render"), workspace, tiers: BTreeSet::from([Tier::Render]), only: Vec::new() };
    let result = run(&opts, &catalogue())
        .unwrap_or_else(|e| panic!("the render-tier mutants could not be scored: {}", certctl_harness::report::chain(&e)));
    let (md, _) = report::write(&result, &opts.out).unwrap_or_else(|e| panic!("writing the report into {}: {e}", opts.out.display()));
    let gaps: Vec<String> = result
        .results
        .iter()
        .filter(|r| !matches!(r.verdict, Verdict::Killed { .. } | Verdict::NotRun(_)))
        .map(|r| format!("  {} ({}): {}", r.mutant.id, r.mutant.reintroduces, verdict_text(&r.verdict)))
        .collect();
    let score = Score::of(&result);
    assert!(gaps.is_empty(), "{}; gaps in the proof (report {}):\n{}", score.summary(), md.display(), gaps.join("\n"));
    assert!(score.killed >= 25, "{}: the render tier should kill the whole chart catalogue", score.summary());
}
