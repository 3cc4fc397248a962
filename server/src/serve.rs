//! The HTTPS listener: a bounded number of connections, TLS handshakes off the accept loop,
//! HTTP/1.1 and h2 via hyper, idle connections closed, and a graceful drain on shutdown.
//!
//! Every stage a client can stall has a limit ([`ConnectionLimits`]): the handshake, the
//! request headers (hyper), the body ([`crate::api::extract`]) and the time between requests
//! (here, for both protocols). When descriptors run out, accept backs off instead of spinning.

mod activity;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::config::ConnectionLimits;
use activity::Activity;

/// How long an idle connection may take to close after being told to: h2 answers the
/// GOAWAY's PING first, and a client that never does must not keep the connection.
const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// First and longest pause after a failed accept (EMFILE, ENFILE, ENOBUFS, ENOMEM).
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(5), Duration::from_secs(1));

/// Serves `app` over TLS on `listener` until `shutdown` resolves, then stops accepting and
/// waits up to `drain` for in-flight requests to finish. At most `capacity` connections are
/// held at once; the next client waits in the listen backlog until one closes.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    limits: &ConnectionLimits,
) {
    let acceptor = TlsAcceptor::from(tls);
    let capacity = limits.max_connections;
    let permits = Arc::new(Semaphore::new(capacity));
    let (stopping, stop_signal) = watch::channel(false);
    let mut backoff = ACCEPT_BACKOFF.0;
    let mut failing = false;
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        match accepted {
            Ok((tcp, peer)) => {
                if failing {
                    tracing::info!("accepting connections again");
                }
                (backoff, failing) = (ACCEPT_BACKOFF.0, false);
                let connection = Connection { acceptor: acceptor.clone(), app: app.clone(), limits: limits.clone(), peer };
                tokio::spawn(connection.run(tcp, permit, stop_signal.clone()));
            }
            Err(e) if is_per_connection(&e) => tracing::debug!(error = %e, "a connection failed before it was accepted"),
            Err(e) => {
                drop(permit);
                if !failing {
                    tracing::warn!(error = %e, held = capacity - permits.available_permits(), "accept failed; backing off until it works again");
                    failing = true;
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = &mut shutdown => break,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
            }
        }
    }
    drop(listener);
    let open = capacity - permits.available_permits();
    tracing::info!(connections = open, "stopped accepting; draining in-flight requests");
    let _ = stopping.send(true);
    let all_closed = permits.acquire_many(u32::try_from(capacity).unwrap_or(u32::MAX));
    match tokio::time::timeout(drain, all_closed).await {
        Ok(_) => tracing::info!("all connections drained"),
        Err(_) => tracing::warn!(timeout_s = drain.as_secs(), "drain timeout reached; closing remaining connections"),
    };
}

/// Errors that concern one incoming connection only; accept again at once.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock)
}

/// One accepted client.
struct Connection {
    acceptor: TlsAcceptor,
    app: Router,
    limits: ConnectionLimits,
    peer: SocketAddr,
}

impl Connection {
    /// Handshake, then serve until the client leaves, stays idle too long, or the server stops.
    /// `_permit` is the connection's slot under the cap; dropping it frees the slot.
    async fn run(self, tcp: TcpStream, _permit: OwnedSemaphorePermit, mut stopping: watch::Receiver<bool>) {
        let peer = self.peer;
        let _ = tcp.set_nodelay(true);
        let stream = match tokio::time::timeout(self.limits.handshake_timeout, self.acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
        };
        let activity = Arc::new(Activity::default());
        let app = self.app;
        let tracked = activity.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let in_flight = tracked.begin();
            let app = app.clone();
            async move {
                let response = app.oneshot(req.map(axum::body::Body::new)).await;
                drop(in_flight);
                Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
            }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(self.limits.header_read_timeout);
        builder.http2().timer(TokioTimer::new());
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        tokio::pin!(conn);
        // Idle: nothing is in flight, so the close is bounded here. Stopping: in-flight
        // requests may take the whole drain time, which `serve` bounds.
        let (why, grace) = tokio::select! {
            result = conn.as_mut() => return log_end(peer, result),
            () = activity.idle_for(self.limits.idle_timeout) => ("idle timeout", CLOSE_GRACE),
            _ = stopping.wait_for(|stop| *stop) => ("server stopping", Duration::MAX),
        };
        tracing::debug!(%peer, "closing connection: {why}");
        // HTTP/1.1: closes after the current response, or at once when idle; h2: GOAWAY.
        conn.as_mut().graceful_shutdown();
        match tokio::time::timeout(grace, conn).await {
            Ok(result) => log_end(peer, result),
            Err(_) => tracing::debug!(%peer, "closed without the client's acknowledgement"),
        }
    }
}

fn log_end<E: std::fmt::Display>(peer: SocketAddr, result: Result<(), E>) {
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
