//! Pool bounds seen from PostgreSQL itself: under 4xN concurrent authenticated requests
//! pg_stat_activity shows exactly N server connections, never more, then the idle floor.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::{base_env, set, wait_until, Db, ServerProcess, TestPki};

const N: i64 = 5;
const FLOOR: i64 = 1; // max(5/5, 1)

#[tokio::test]
async fn connections_never_exceed_max_and_fall_back_to_the_idle_floor() {
    let db = Db::start().await;
    let pki = TestPki::new();
    let http = pki.http();
    let mut env = base_env(&pki, &db.url());
    set(&mut env, "CERTCTL_DATABASE_MAX_CONNS", &N.to_string());
    set(&mut env, "CERTCTL_DATABASE_IDLE_TIMEOUT", "1s");
    let server = ServerProcess::spawn(&env);
    server.wait_ready(&http, Duration::from_secs(60)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..(4 * N) {
        // One HTTP/1.1 client per worker so requests really arrive concurrently.
        let http = pki.http();
        let url = server.url("/api/v1/certificates");
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let mut ok = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let r = http.get(&url).bearer_auth("test-key").send().await.expect("request");
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
                ok += 1;
            }
            ok
        }));
    }

    let mut samples = Vec::new();
    let sampling = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
        while tokio::time::Instant::now() < deadline {
            samples.push(db.pg.count_connections("certctl-server").await.unwrap());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    sampling.await;
    stop.store(true, Ordering::Relaxed);
    let mut served = 0;
    for c in clients {
        served += c.await.unwrap();
    }
    let max = *samples.iter().max().unwrap();
    assert!(served > 100, "load generated only {served} requests");
    assert!(samples.iter().all(|&c| c <= N), "more than {N} connections seen: {samples:?}");
    assert_eq!(max, N, "under load the pool should use exactly {N} connections: {samples:?}");

    let last = wait_until("pg_stat_activity to fall to the idle floor", Duration::from_secs(30), || async {
        let c = db.pg.count_connections("certctl-server").await.map_err(|e| e.to_string())?;
        if c == FLOOR {
            Ok(c)
        } else {
            Err(format!("{c} connections"))
        }
    })
    .await;
    assert_eq!(last, FLOOR);
}
