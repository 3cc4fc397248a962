//! The image build's libc guard (ci/offline/glibc-fits.sh), on real ELF binaries: one
//! that requires newer glibc symbol versions than the image base has is refused before
//! it is put in an image, naming both versions; one that fits passes.

use assert_cmd::Command;

fn script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("offline/glibc-fits.sh")
}

fn host_glibc() -> String {
    let out = std::process::Command::new("getconf").arg("GNU_LIBC_VERSION").output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).expect("getconf GNU_LIBC_VERSION: glibc X.Y").to_string()
}

/// This test binary: linked on this host like the server and agent are.
fn host_built() -> std::path::PathBuf {
    std::env::current_exe().unwrap()
}

#[test]
fn a_binary_needing_more_than_the_base_has_is_refused_naming_both_versions() {
    // Rust's std requires glibc symbols newer than 2.17 (2.34 and later on current hosts).
    let out = Command::new("bash").arg(script()).arg(host_built()).args(["2.17", "certctl/rootfs-app:k"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "refused: {stderr}");
    for fragment in
        ["needs glibc 2.", &format!("built on this host, glibc {}", host_glibc()), "(certctl/rootfs-app:k) has glibc 2.17", "not found"]
    {
        assert!(stderr.contains(fragment), "the refusal lacks {fragment:?}: {stderr}");
    }
}

#[test]
fn a_host_built_binary_fits_the_hosts_glibc_and_versions_compare_numerically() {
    Command::new("bash").arg(script()).arg(host_built()).args([host_glibc().as_str(), "this host"]).assert().success();
    // 2.100 > 2.36 numerically, though not as text.
    Command::new("bash").arg(script()).arg(host_built()).args(["2.100", "a newer base"]).assert().success();
}

#[test]
fn bad_arguments_are_usage_errors() {
    let out = Command::new("bash").arg(script()).arg(host_built()).args(["bookworm", "x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not MAJOR.MINOR"));
    let out = Command::new("bash").arg(script()).args(["/nonexistent/certctl-server", "2.36", "x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a readable file"));
}
