//! Several replicas starting at once: migrations apply once, and everyone ends up with the
//! same CA.

use certctl_server::ca::LocalCa;
use certctl_server::db::migrate;
use sqlx::postgres::PgPoolOptions;

use crate::support::Db;

#[tokio::test]
async fn concurrent_start_ups_migrate_once_and_share_one_ca() {
    let db = Db::start().await;
    let mut pools = Vec::new();
    for _ in 0..4 {
        pools.push(PgPoolOptions::new().max_connections(2).connect(&db.url()).await.unwrap());
    }
    let runs = pools.iter().map(|p| async move { migrate::run(p).await });
    let applied: Vec<usize> = futures::future::join_all(runs).await.into_iter().map(|r| r.expect("migration")).collect();
    let appliers = applied.iter().filter(|&&n| n > 0).count();
    assert_eq!((appliers, applied.iter().sum::<usize>()), (1, migrate::known()), "one replica applied every migration: {applied:?}");

    let cas = pools.iter().map(|p| async move { LocalCa::load_or_create(p).await });
    let cas: Vec<LocalCa> = futures::future::join_all(cas).await.into_iter().map(|r| r.expect("CA")).collect();
    assert!(cas.windows(2).all(|w| w[0].cert_pem() == w[1].cert_pem()), "all replicas share one CA");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM ca").fetch_one(&pools[0]).await.unwrap();
    assert_eq!(rows, 1);
}
