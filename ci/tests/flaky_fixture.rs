//! Fixture of the flaky verdict (compiled only with the `flaky-fixture` feature, run
//! only by ci/tests/flaky_verdict.rs): fails on its first attempt, passes on the retry.
#![cfg(feature = "flaky-fixture")]

use std::path::PathBuf;

#[test]
fn fails_on_the_first_attempt_then_passes() {
    let state = std::env::var_os("CERTCTL_FLAKY_FIXTURE_STATE").map(PathBuf::from).expect(
        "CERTCTL_FLAKY_FIXTURE_STATE is unset: this fixture is run by ci/tests/flaky_verdict.rs, which points it at a fresh directory",
    );
    let marker = state.join("attempted");
    if !marker.exists() {
        std::fs::write(&marker, "1").expect("the fixture's state directory is writable");
        panic!("first attempt fails on purpose");
    }
}
