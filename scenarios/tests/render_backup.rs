//! The opt-in backup CronJob (pg_dump -Fc to a claim the operator owns, retention) for
//! the bundled and the external database, and the connection budget's boundary.

mod support;

use certctl_scenarios::modes::Mode;
use certctl_scenarios::render::{Object, Render, Rendered};
use serde_json::{json, Value};
use support::{env_of, render_all};

const F: &str = "c-certctl";

fn with_backup(r: Render) -> Render {
    r.set("backup.enabled", "true").set("backup.sink.existingClaim", "certctl-backups")
}

fn renders(list: &[Render]) -> Vec<Rendered> {
    render_all(list).into_iter().enumerate().map(|(i, r)| r.unwrap_or_else(|e| panic!("render #{i} ({:?}): {e}", list[i].args()))).collect()
}

fn job_pod(cron: &Object) -> &Value {
    cron.at("/spec/jobTemplate/spec/template/spec").expect("a job pod spec")
}

fn script(pod: &Value) -> &str {
    let c = &pod["containers"][0];
    assert_eq!(c["command"], json!(["/bin/sh", "-c"]));
    c["args"][0].as_str().expect("the script")
}

#[test]
fn backup_is_off_by_default_in_every_mode() {
    let list: Vec<Render> = Mode::ALL.into_iter().map(Render::mode).collect();
    for (mode, r) in Mode::ALL.into_iter().zip(renders(&list)) {
        assert_eq!(r.of_kind("CronJob").count(), 0, "{mode}");
    }
}

#[test]
fn bundled_backup_dumps_with_the_postgres_credentials_to_the_claim() {
    let r = &renders(&[with_backup(Render::mode(Mode::Default)).set("backup.schedule", "5 1 * * *").set("backup.retention", "3")])[0];
    let cron = r.expect("CronJob", &format!("{F}-backup"));
    assert_eq!(cron.at("/spec/schedule"), Some(&json!("5 1 * * *")));
    assert_eq!(cron.at("/spec/concurrencyPolicy"), Some(&json!("Forbid")), "runs must not overlap");
    let pod = job_pod(cron);
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["volumes"], json!([{"name": "sink", "persistentVolumeClaim": {"claimName": "certctl-backups"}}]));
    let c = &pod["containers"][0];
    assert_eq!(
        c["image"],
        r.expect("StatefulSet", &format!("{F}-postgres")).container("postgres").unwrap()["image"],
        "pg_dump of the server's image"
    );
    assert_eq!(c["volumeMounts"], json!([{"name": "sink", "mountPath": "/backup"}]));
    let env = env_of(c);
    let want = [
        ("SINK", json!("/backup")),
        ("RETENTION", json!("3")),
        ("PGHOST", json!(format!("{F}-postgres"))),
        ("PGPORT", json!("5432")),
        ("PGUSER", json!("certctl")),
        ("PGDATABASE", json!("certctl")),
        ("PGPASSWORD", json!({"secretKeyRef": {"name": format!("{F}-postgres"), "key": "password"}})),
    ];
    assert_eq!(env, want.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect::<Vec<_>>());
    let s = script(pod);
    for fragment in [
        "set -eu",
        "pg_dump -Fc --no-password -f \"$partial\"\n",
        "mv \"$partial\" \"$SINK/certctl-$stamp.dump\"",
        "tail -n \"+$((RETENTION + 1))\"",
    ] {
        assert!(s.contains(fragment), "script lacks {fragment:?}:\n{s}");
    }
    // Same hardening as the database pod it reads.
    let pg = r.expect("StatefulSet", &format!("{F}-postgres"));
    assert_eq!(pod["securityContext"], pg.pod_spec().unwrap()["securityContext"]);
    assert_eq!(c["securityContext"], pg.container("postgres").unwrap()["securityContext"]);
}

#[test]
fn external_backup_dumps_through_the_servers_url() {
    let list = [
        with_backup(Render::mode(Mode::ExternalDb)),
        with_backup(Render::mode(Mode::ExternalDb)).set("externalDatabase.url", "").set("externalDatabase.existingSecret", "db"),
    ];
    let r = renders(&list);
    for (what, r, secret, key) in
        [("url", &r[0], format!("{F}-server"), "database-url"), ("existing secret", &r[1], "db".to_owned(), "database-url")]
    {
        let pod = job_pod(r.expect("CronJob", &format!("{F}-backup")));
        let env = env_of(&pod["containers"][0]);
        assert!(env.iter().all(|(k, _)| !k.starts_with("PG")), "{what}: no bundled-database env: {env:?}");
        let url = env.iter().find(|(k, _)| k == "DATABASE_URL").unwrap_or_else(|| panic!("{what}: no DATABASE_URL: {env:?}"));
        assert_eq!(url.1, json!({"secretKeyRef": {"name": secret, "key": key}}), "{what}");
        assert!(script(pod).contains("pg_dump -Fc --no-password -f \"$partial\" --dbname \"$DATABASE_URL\""), "{what}");
    }
}

/// The retention script, run for real: after each of several dumps only the newest N are
/// left, and a partial dump from a failed run is cleared. (`pg_dump` is replaced by a
/// stand-in that writes a file, because the point here is the shell around it; the live
/// tier runs the real one.)
#[test]
fn retention_keeps_the_newest_dumps() {
    let r = &renders(&[with_backup(Render::mode(Mode::Default)).set("backup.retention", "2")])[0];
    let s = script(job_pod(r.expect("CronJob", &format!("{F}-backup")))).to_owned();
    let sink = tempfile::tempdir().unwrap();
    let bin = tempfile::tempdir().unwrap();
    // Stand-ins: pg_dump writes its -f file; date counts up so each run gets a new stamp.
    std::fs::write(bin.path().join("pg_dump"), "#!/bin/sh\nwhile [ $# -gt 0 ]; do [ \"$1\" = -f ] && echo dump > \"$2\"; shift; done\n")
        .unwrap();
    let counter = bin.path().join("date-counter");
    std::fs::write(
        bin.path().join("date"),
        format!(
            "#!/bin/sh\nn=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; printf '20260101T0000%02dZ\\n' $n\n",
            c = counter.display()
        ),
    )
    .unwrap();
    for f in ["pg_dump", "date"] {
        std::process::Command::new("chmod").arg("+x").arg(bin.path().join(f)).status().unwrap();
    }
    std::fs::write(sink.path().join(".certctl-20250101T000000Z.dump.partial"), "half").unwrap();
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap());
    for run in 1..=4 {
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&s)
            .env("PATH", &path)
            .env("SINK", sink.path())
            .env("RETENTION", "2")
            .output()
            .unwrap();
        assert!(out.status.success(), "run {run}: {}", String::from_utf8_lossy(&out.stderr));
        let mut names: Vec<String> =
            std::fs::read_dir(sink.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        let want: Vec<String> = (run.max(2) - 1..=run).map(|n| format!("certctl-20260101T0000{n:02}Z.dump")).collect();
        assert_eq!(names, want, "run {run}: {}", String::from_utf8_lossy(&out.stdout));
    }
}

/// The budget's boundary: exactly max_connections renders, one more is refused, for the
/// bundled database only (the chart does not know an external database's limit).
#[test]
fn connection_budget_boundary() {
    let list = [
        // (2 + 1 surge) x 33 = 99, + 1 backup = 100.
        with_backup(Render::mode(Mode::Default)).set("server.replicas", "2").set("server.database.maxConnections", "33"),
        with_backup(Render::mode(Mode::Default)).set("server.replicas", "2").set("server.database.maxConnections", "34"),
        Render::mode(Mode::Default)
            .set("server.replicas", "8")
            .set("server.database.maxConnections", "10")
            .set("postgresql.maxConnections", "100"),
        Render::mode(Mode::ExternalDb).set("server.replicas", "10").set("server.database.maxConnections", "100"),
    ];
    let results = render_all(&list);
    assert!(results[0].is_ok(), "exactly at the limit: {:?}", results[0].as_ref().err());
    let refused = results[1].as_ref().expect_err("one over the limit rendered");
    assert!(refused.helm_stderr().unwrap_or_default().contains("= 103 > postgresql.maxConnections=100"), "{refused}");
    // (8 + 2 surge) x 10 = 100.
    assert!(results[2].is_ok(), "{:?}", results[2].as_ref().err());
    assert!(results[3].is_ok(), "external database: {:?}", results[3].as_ref().err());
    let r = results[2].as_ref().unwrap();
    let pg = r.expect("StatefulSet", &format!("{F}-postgres")).container("postgres").unwrap();
    assert_eq!(pg["args"], json!(["-c", "max_connections=100"]), "the limit the budget is checked against is the one PostgreSQL runs with");
}
