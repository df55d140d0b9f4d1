//! HTTP on top of the core: [`Application::build`] opens the [`Core`] and serves the API (and,
//! without a bucket, the embedded store's S3 endpoint) on listeners the caller passes in.
//!
//! The server binary and the tests go through here; `ferry sweep` and `ferry migrate` use the
//! core alone and open no port.

mod serve;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use serve::ServeLimits;

use crate::api::{self, AppState};
use crate::config::{Config, StoreConfig, socket_text};
use crate::core::{Core, CoreError};
use crate::identity::DEV_USER;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error(
        "refusing to run without authentication on {0}: dev mode trusts X-User-Id, so it only listens on loopback \
         (set FERRY_HOST=127.0.0.1, or FERRY_INSECURE_DEV_AUTH=1 if you really mean it)"
    )]
    InsecureDevMode(String),
}

/// A built, not yet running Ferry.
pub struct Application {
    core: Arc<Core>,
    api_listener: TcpListener,
    api: axum::Router,
    store: Option<(TcpListener, axum::Router)>,
    /// `/metrics` on its own address (`FERRY_METRICS_ADDR`), when set.
    metrics: Option<(TcpListener, axum::Router)>,
    limits: ServeLimits,
    /// Set when shutdown begins: `/readyz` then answers 503.
    draining: Arc<std::sync::atomic::AtomicBool>,
}

/// Binds an address, with a clear error.
pub async fn bind(addr: String) -> Result<TcpListener, StartupError> {
    TcpListener::bind(&addr).await.map_err(|source| StartupError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, StartupError> {
    listener.local_addr().map_err(|source| StartupError::Bind { addr: "listener".into(), source })
}

impl Application {
    /// Binds the configured ports and builds the application.
    pub async fn bind(cfg: Config) -> Result<Self, StartupError> {
        let api = bind(socket_text(cfg.server.host, cfg.server.port)).await?;
        let store = match &cfg.store {
            StoreConfig::Embedded(e) => Some(bind(socket_text(e.host, e.port)).await?),
            StoreConfig::External(_) => None,
        };
        Self::build(cfg, api, store).await
    }

    /// Builds the application on listeners the caller bound (port 0 in tests).
    /// `store_listener` is used only when the configuration asks for the embedded store.
    pub async fn build(
        mut cfg: Config,
        api_listener: TcpListener,
        store_listener: Option<TcpListener>,
    ) -> Result<Self, StartupError> {
        let api_addr = local_addr(&api_listener)?;
        let open_files = serve::raise_open_file_limit();
        let listeners = 1 + u64::from(store_listener.is_some());
        let limits = ServeLimits {
            max_connections: serve::fit_connections(cfg.limits.max_connections, listeners, open_files),
            header_timeout: cfg.limits.header_timeout,
            body_idle_timeout: cfg.limits.body_idle_timeout,
            shutdown_grace: cfg.limits.shutdown_grace,
        };
        let dev_mode = cfg.auth.is_none();
        if dev_mode && !api_addr.ip().is_loopback() && !cfg.server.insecure_dev_auth {
            return Err(StartupError::InsecureDevMode(api_addr.to_string()));
        }
        // The embedded store's URLs must name the port it really listens on.
        let store_listener = match &mut cfg.store {
            StoreConfig::Embedded(e) => {
                let listener = store_listener.ok_or_else(|| StartupError::Bind {
                    addr: socket_text(e.host, e.port),
                    source: std::io::Error::other("no listener for the embedded store"),
                })?;
                let addr = local_addr(&listener)?;
                (e.host, e.port) = (addr.ip(), addr.port());
                Some(listener)
            }
            StoreConfig::External(_) => None,
        };
        match &cfg.auth {
            Some(jwt) => {
                tracing::info!(
                    hmac = jwt.secret.is_some(),
                    jwks = jwt.jwks_url.as_ref().map(url::Url::as_str),
                    "authentication: JWT"
                );
                if jwt.jwks_url.is_some() && jwt.audience.is_none() && jwt.issuer.is_none() {
                    tracing::warn!(
                        "FERRY_JWKS_URL is set without FERRY_JWT_AUDIENCE or FERRY_JWT_ISSUER: tokens your identity \
                         provider minted for any other application are accepted too. Set FERRY_JWT_AUDIENCE (best) \
                         or FERRY_JWT_ISSUER."
                    );
                }
            }
            None => tracing::warn!(
                "DEV MODE: no identity provider configured; the caller is the X-User-Id header or {DEV_USER}. \
                 Set FERRY_JWT_SECRET or FERRY_JWKS_URL for real authentication."
            ),
        }
        let core = Arc::new(Core::open(&cfg).await?);
        let mut origins = cfg.server.cors_origins.clone();
        origins.push(format!("http://{api_addr}"));
        let store = match (store_listener, &core.embedded) {
            (Some(listener), Some(embedded)) => Some((listener, embedded.router(&origins))),
            _ => None,
        };
        let state = AppState::new(&core, &cfg);
        let metrics = match cfg.limits.metrics_addr {
            Some(addr) => Some((bind(addr.to_string()).await?, api::metrics_router(state.clone()))),
            None => None,
        };
        let draining = state.draining.clone();
        let api = api::router(state, &origins, metrics.is_none());
        Ok(Self { api, core, api_listener, store, metrics, limits, draining })
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api_listener.local_addr().expect("bound listener")
    }

    pub fn store_addr(&self) -> Option<SocketAddr> {
        self.store.as_ref().map(|(l, _)| l.local_addr().expect("bound listener"))
    }

    /// Where `/metrics` is served, when it has its own address.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(l, _)| l.local_addr().expect("bound listener"))
    }

    /// The core this application serves (tests reach the database and the store through it).
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Serves until `shutdown` completes; then `/readyz` answers 503 on the connections still
    /// open, new connections are refused, and requests in flight finish (for at most
    /// `FERRY_SHUTDOWN_GRACE`) before the background jobs stop.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        // Shutdown closes the API's (and the metrics') listener at once, the embedded store's
        // once the API has drained; the background jobs stop last.
        let stop_accepting = CancellationToken::new();
        let stop_jobs = CancellationToken::new();
        let draining = self.draining.clone();
        let trigger = stop_accepting.clone();
        let watcher = tokio::spawn(async move {
            shutdown.await;
            draining.store(true, std::sync::atomic::Ordering::Release);
            trigger.cancel();
        });
        let limits = self.limits;
        let side = |(listener, router): (TcpListener, axum::Router), name: &'static str, stop: &CancellationToken| {
            let stop = stop.clone();
            tokio::spawn(async move { serve::serve(listener, router, limits, name, stop.cancelled_owned()).await })
        };
        // The embedded store closes only once the API has drained: requests in flight may still
        // call it (a multipart completion joins its parts there).
        let stop_store = CancellationToken::new();
        let store_task = self.store.map(|s| side(s, "store", &stop_store));
        let metrics_task = self.metrics.map(|m| side(m, "metrics", &stop_accepting));
        let background = self.core.spawn_background(stop_jobs.clone());
        tracing::info!(addr = %self.api_listener.local_addr()?, "Ferry API listening");
        serve::serve(self.api_listener, self.api, limits, "api", stop_accepting.clone().cancelled_owned()).await;
        stop_accepting.cancel();
        stop_store.cancel();
        watcher.abort();
        for task in [store_task, metrics_task].into_iter().flatten() {
            let _ = task.await;
        }
        stop_jobs.cancel();
        let _ = background.await;
        tracing::info!("stopped");
        Ok(())
    }
}
