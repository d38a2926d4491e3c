//! `POST /auth` (`docker login`): berthd checks the credentials at the registry and answers as
//! Docker does; it stores nothing, since the CLI keeps them and sends them with each pull
//! (`X-Registry-Auth`). Runs in berthd.

use super::{DockerError, Shared, call};
use crate::api::{ErrorKind, Request};
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

/// Docker's AuthConfig; `auth` and `email` are accepted and ignored as dockerd does.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthBody {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    serveraddress: String,
    #[serde(default, rename = "identitytoken")]
    identity_token: String,
    #[serde(default, rename = "registrytoken")]
    registry_token: String,
    #[serde(default)]
    #[allow(dead_code)]
    auth: String,
    #[serde(default)]
    #[allow(dead_code)]
    email: String,
}

/// `POST /auth`.
pub async fn auth(
    State(b): State<Shared>,
    Json(body): Json<AuthBody>,
) -> Result<Json<Value>, DockerError> {
    if !body.identity_token.is_empty() || !body.registry_token.is_empty() {
        return Err(DockerError::NotSupported(
            "berth checks a username and password; log in with them (tokens are still used for pulls through X-Registry-Auth)".into(),
        ));
    }
    let req = Request::Login {
        server: body.serveraddress,
        username: body.username,
        password: body.password,
    };
    match call(&b, req).await {
        Ok(_) => Ok(Json(
            json!({"Status": "Login Succeeded", "IdentityToken": ""}),
        )),
        Err(DockerError::Backend {
            kind: ErrorKind::Invalid,
            message,
        }) => Err(DockerError::Unauthorized(message)),
        Err(e) => Err(e),
    }
}
