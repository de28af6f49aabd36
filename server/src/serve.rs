//! Serving: bind, accept until shutdown, then let in-flight requests finish
//! within a grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// A bound HTTP server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    app: Router,
    grace: Duration,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr, app: Router, grace: Duration) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self {
            listener,
            app,
            grace,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then stops accepting and waits up
    /// to the grace period for in-flight requests to finish.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let stopping = Arc::new(Notify::new());
        let signal = {
            let stopping = stopping.clone();
            async move {
                shutdown.await;
                tracing::info!("shutting down: finishing in-flight requests");
                stopping.notify_one();
            }
        };
        let grace = self.grace;
        // The peer address goes into every request (`ConnectInfo`), for rate limits.
        let app = self.app.into_make_service_with_connect_info::<SocketAddr>();
        let serve = axum::serve(self.listener, app).with_graceful_shutdown(signal);
        tokio::select! {
            result = serve => result,
            () = async { stopping.notified().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(?grace, "grace period over; closing remaining connections");
                Ok(())
            }
        }
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// The running background tasks of a PDS (see
/// [`aurora_core::BackgroundTask`]); dropping this aborts them.
#[derive(Debug, Default)]
pub struct BackgroundTasks {
    tasks: tokio::task::JoinSet<()>,
}

impl BackgroundTasks {
    /// Spawns `tasks` on the current runtime.
    pub fn spawn(tasks: Vec<aurora_core::BackgroundTask>) -> Self {
        let mut set = tokio::task::JoinSet::new();
        for task in tasks {
            let name = task.name;
            let run = task.run;
            set.spawn(async move {
                tracing::debug!(task = %name, "background task started");
                run.await;
                tracing::debug!(task = %name, "background task ended");
            });
        }
        Self { tasks: set }
    }

    /// How many are still running.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether none is running.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}
