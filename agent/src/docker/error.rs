//! Errors of the Docker API, answered as Docker answers them: its status codes and a JSON body
//! `{"message": …}`, which the `docker` CLI prints after "Error response from daemon:". The
//! messages keep Docker's wording (and capitals) so that scripts matching them keep working.
//! Runs in berthd.

use super::version::{API_VERSION, MIN_API_VERSION};
use crate::api::ErrorKind;
use axum::Json;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "client version {requested} is too new. Maximum supported API version is {API_VERSION}"
    )]
    VersionTooNew { requested: String },
    #[error(
        "client version {requested} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
    )]
    VersionTooOld { requested: String },
    #[error("invalid API version {requested:?}")]
    BadVersion { requested: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("page not found")]
    PageNotFound,
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    #[error("No such image: {0}")]
    NoSuchImage(String),
    /// Another missing object, its message whole (`No such exec instance: …`).
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotSupported(String),
    /// berthd's answer could not be read as expected: a bug, not the client's fault.
    #[error("berthd: {0}")]
    Internal(String),
    /// berthd's own answer to the request the handler made.
    #[error("{message}")]
    Backend { kind: ErrorKind, message: String },
}

impl DockerError {
    pub fn status(&self) -> StatusCode {
        match self {
            DockerError::VersionTooNew { .. }
            | DockerError::VersionTooOld { .. }
            | DockerError::BadVersion { .. }
            | DockerError::BadRequest(_) => StatusCode::BAD_REQUEST,
            DockerError::PageNotFound
            | DockerError::NoSuchContainer(_)
            | DockerError::NoSuchImage(_)
            | DockerError::NotFound(_) => StatusCode::NOT_FOUND,
            DockerError::Conflict(_) => StatusCode::CONFLICT,
            DockerError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            DockerError::NotSupported(_) => StatusCode::NOT_IMPLEMENTED,
            DockerError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            DockerError::Backend { kind, .. } => match kind {
                ErrorKind::NotFound => StatusCode::NOT_FOUND,
                ErrorKind::Invalid => StatusCode::BAD_REQUEST,
                ErrorKind::Conflict => StatusCode::CONFLICT,
                ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }
}

impl IntoResponse for DockerError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "message": self.to_string() }));
        (self.status(), body).into_response()
    }
}

/// Any path berth does not serve: Docker's 404, naming the path so a missing endpoint is obvious.
pub async fn page_not_found(uri: Uri) -> DockerError {
    tracing::debug!(path = %uri.path(), "docker api: no such endpoint");
    DockerError::PageNotFound
}

/// Endpoints berth will not serve (`docker build`): a clear 501 instead of a silent success.
pub async fn not_supported(uri: Uri, body: axum::body::Body) -> DockerError {
    // The CLI sends a build context before it reads the answer: an answer before the body is
    // read closes the connection under the CLI, which then reports a closed pipe, not this.
    use futures_util::StreamExt as _;
    let mut data = body.into_data_stream();
    while let Some(Ok(_)) = data.next().await {}
    DockerError::NotSupported(format!(
        "{} is not supported by berth: build images with docker buildx, buildah or nix, then pull or import them",
        uri.path()
    ))
}
