//! Serving an axum router on a TCP listener so that clients cannot exhaust
//! it (issue 24): at most `max_connections` at once (a connection beyond is
//! closed at once, so a flood cannot use up the process's file
//! descriptors), a client must send a request's headers within
//! `header_timeout` (also how long a kept-alive connection may sit idle:
//! hyper starts the same timer while it waits for the next request), and a
//! stop signal closes idle connections and lets running requests finish.
//! The handlers see the client's address as `ConnectInfo<SocketAddr>`, as
//! with axum's own `serve`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

/// What one listener allows.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Time to send a request's headers, and to start the next request on
    /// a kept-alive connection.
    pub header_timeout: Duration,
    /// How long running requests may take to finish after a stop.
    pub drain: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            drain: Duration::from_secs(10),
        }
    }
}

/// Counts of one listener.
#[derive(Debug, Default)]
pub struct ListenStats {
    /// Connections accepted and served.
    pub accepted: AtomicU64,
    /// Connections closed at once because `max_connections` were open.
    pub refused: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
}

/// Serve `router` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stats: Arc<ListenStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        // Reap finished connection tasks as we go.
        while conns.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors, or the peer gave up: wait a
                // little rather than spin.
                tracing::warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        stats.open.fetch_add(1, Ordering::Relaxed);
        let svc = router
            .clone()
            .map_request(move |req: axum::http::Request<Incoming>| {
                let mut req = req.map(Body::new);
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                req
            });
        let mut closing = closing_rx.clone();
        let stats = Arc::clone(&stats);
        conns.spawn(async move {
            let _permit = permit;
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::trace!("connection from {peer}: {e}");
                    }
                }
                _ = closing.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            stats.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    let _ = closing_tx.send(true);
    let _ = tokio::time::timeout(limits.drain, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn get_ok(addr: SocketAddr) -> String {
        let mut s = match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(e) => return format!("connect: {e}"),
        };
        let _ = s
            .write_all(b"GET /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        out
    }

    #[tokio::test]
    async fn slow_and_idle_clients_are_closed_and_the_limit_refuses_the_rest() {
        let listener = match TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        };
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let router = Router::new().route(
            "/who",
            get(|ConnectInfo(p): ConnectInfo<SocketAddr>| async move { p.ip().to_string() }),
        );
        let stats = Arc::new(ListenStats::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let limits = Limits {
            max_connections: 4,
            header_timeout: Duration::from_millis(300),
            drain: Duration::from_secs(1),
        };
        let server = tokio::spawn(serve(listener, router, limits, Arc::clone(&stats), stop_rx));
        // The handler sees the client's address.
        assert!(get_ok(addr).await.ends_with("127.0.0.1"));
        // Four connections that never finish their headers fill the limit...
        let mut slow = Vec::new();
        for _ in 0..4 {
            let mut s = tokio::net::TcpStream::connect(addr)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let _ = s.write_all(b"GET /who HTTP/1.1\r\nHost").await;
            slow.push(s);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // ...so a fifth is closed at once, without an answer...
        let refused = get_ok(addr).await;
        assert!(!refused.contains("200 OK"), "{refused}");
        assert!(stats.refused.load(Ordering::Relaxed) >= 1);
        // ...until the header timeout closes the slow ones.
        tokio::time::sleep(Duration::from_millis(600)).await;
        for s in &mut slow {
            let mut buf = [0u8; 64];
            let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
            assert!(matches!(n, Ok(Ok(_)) | Ok(Err(_))), "still open");
        }
        assert!(get_ok(addr).await.contains("200 OK"));
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(3), server).await;
    }
}
