//! The optional Docker Engine API (v1.24 to v1.50) on a unix socket, so that the `docker` CLI and
//! Docker SDKs can drive berthd. An axum router whose handlers translate Docker's requests into
//! berthd's own requests ([`Backend`]): a container seen or made here is an ordinary berth
//! container. Runs in berthd.

mod archive;
mod attach;
mod auth;
mod containers;
mod copy;
mod create;
mod error;
mod events;
mod exec;
mod hijack;
mod image_archive;
mod images;
mod lifecycle;
mod logs;
mod manage;
mod network_connect;
mod networks;
mod prune;
mod pull;
mod stats;
mod system;
mod version;
mod volumes;

#[cfg(feature = "fuzzing")]
pub use create::spec_yaml_of;
pub use error::DockerError;
pub use version::{API_VERSION, MIN_API_VERSION};

use crate::api::{Request, Response};
use axum::Router;
use axum::routing::{delete, get, head, post};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

/// berthd as the Docker API sees it: its native requests, answered as the native API answers them.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    async fn call(&self, req: Request) -> Response;

    /// Pulls `image` with these credentials for this pull alone, reporting to `progress` (the
    /// native `pull` request, which reports nothing, when not overridden).
    async fn pull(
        &self,
        image: String,
        credentials: Option<crate::image::Secret>,
        progress: tokio::sync::watch::Sender<crate::image::Progress>,
    ) -> Response {
        let _ = (credentials, progress);
        self.call(Request::Pull { image }).await
    }

    /// berthd's event bus (a bus of its own, which nothing feeds, when not overridden).
    fn events(&self) -> Arc<crate::events::Bus> {
        Arc::new(crate::events::Bus::default())
    }

    /// A receiver woken on every change of berthd's container statuses, so that handlers await
    /// a change instead of polling (`None`: poll).
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

pub type Shared = Arc<dyn Backend>;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("docker api socket {path}: {what}: {source}")]
    Io {
        path: String,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("docker api socket {path}: no group `{group}` on this host")]
    NoGroup { path: String, group: String },
}

/// Binds the socket with mode 0660, owned by root and `group` (root's group when `None`), so
/// that the file's permissions are what admits a user, as with Docker's socket.
pub fn bind(path: &Path, group: Option<&str>) -> Result<tokio::net::UnixListener, SocketError> {
    let shown = path.display().to_string();
    let io = |what| {
        let path = shown.clone();
        move |source| SocketError::Io { path, what, source }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating its directory"))?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io("removing the old socket")(e));
        }
        _ => {}
    }
    let gid = match group {
        None => None,
        Some(g) => Some(
            nix::unistd::Group::from_name(g)
                .ok()
                .flatten()
                .ok_or_else(|| SocketError::NoGroup {
                    path: shown.clone(),
                    group: g.to_owned(),
                })?
                .gid,
        ),
    };
    let l = tokio::net::UnixListener::bind(path).map_err(io("binding"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(io("setting its mode"))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid.as_raw()))
            .map_err(io("setting its group"))?;
    }
    Ok(l)
}

/// Serves the API on `listener` until berthd exits.
pub async fn serve(listener: tokio::net::UnixListener, backend: Shared) {
    use tower::Layer;
    // In front of the router: the version prefix must go before a route is matched.
    // Containers created with AutoRemove go once they ended, whether or not a client waits.
    tokio::spawn(lifecycle::auto_remove(backend.clone()));
    let app = axum::middleware::from_fn(version::negotiate).layer(router(backend));
    let app = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "docker api server stopped");
    }
}

fn router(backend: Shared) -> Router {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/events", get(events::events))
        .route("/system/df", get(prune::df))
        .route("/auth", post(auth::auth))
        .route("/containers/prune", post(prune::containers))
        .route("/images/prune", post(prune::images))
        .route("/containers/{id}/stats", get(stats::stats))
        .route("/containers/json", get(containers::list))
        .route("/containers/create", post(lifecycle::create))
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/containers/{id}/start", post(lifecycle::start))
        .route("/containers/{id}/stop", post(lifecycle::stop))
        .route("/containers/{id}/restart", post(lifecycle::restart))
        .route("/containers/{id}/wait", post(lifecycle::wait))
        .route("/containers/{id}/kill", post(lifecycle::kill))
        .route("/containers/{id}/logs", get(logs::logs))
        .route(
            "/containers/{id}/archive",
            get(archive::get).head(archive::get).put(archive::put),
        )
        .route("/containers/{id}/export", get(archive::export))
        .route("/containers/{id}/attach", post(attach::attach))
        .route("/containers/{id}/resize", post(attach::resize))
        .route("/containers/{id}/exec", post(exec::create))
        .route("/containers/{id}/pause", post(manage::pause))
        .route("/containers/{id}/unpause", post(manage::unpause))
        .route("/containers/{id}/top", get(manage::top))
        .route("/containers/{id}/rename", post(manage::rename))
        .route("/exec/{id}/start", post(exec::start))
        .route("/exec/{id}/resize", post(exec::resize))
        .route("/exec/{id}/json", get(exec::inspect))
        .route("/containers/{id}", delete(lifecycle::remove))
        .route("/volumes", get(volumes::list))
        .route("/volumes/create", post(volumes::create))
        .route("/volumes/prune", post(volumes::prune))
        .route(
            "/volumes/{name}",
            get(volumes::inspect).delete(volumes::remove),
        )
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route(
            "/networks/{id}",
            get(networks::inspect).delete(networks::remove),
        )
        .route("/networks/{id}/connect", post(network_connect::connect))
        .route(
            "/networks/{id}/disconnect",
            post(network_connect::disconnect),
        )
        .route("/images/json", get(images::list))
        .route("/images/create", post(pull::create))
        .route("/images/get", get(image_archive::save_many))
        .route("/images/load", post(image_archive::load))
        .route(
            "/images/{*path}",
            get(images::get).post(images::post).delete(images::remove),
        )
        .route(
            "/build",
            head(error::not_supported).post(error::not_supported),
        )
        .fallback(error::page_not_found)
        .with_state(backend)
}

/// A streamed JSON answer (pull progress, events, stats): each message one chunk, in order, until
/// every sender is gone.
fn json_stream(rx: tokio::sync::mpsc::Receiver<bytes::Bytes>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests;

/// berthd's answer to `req`, its errors as Docker errors.
async fn call(backend: &Shared, req: Request) -> Result<serde_json::Value, DockerError> {
    match backend.call(req).await {
        Response::Ok { ok } => Ok(ok),
        Response::Error { error, kind } => Err(DockerError::Backend {
            kind,
            message: error,
        }),
    }
}
