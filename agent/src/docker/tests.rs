//! The router end to end over a fake berthd: version negotiation, headers, Docker's error bodies.

use super::*;
use crate::api::ErrorKind;
use axum::body::Body;
use axum::http::{Request as HttpRequest, StatusCode};
use serde_json::{Value, json};
use tower::Layer;
use tower::ServiceExt as _;

/// berthd with one running container and one image.
struct Fake;

#[async_trait::async_trait]
impl Backend for Fake {
    async fn call(&self, req: Request) -> Response {
        match req {
            Request::Ps => {
                Response::ok(json!([{"name": "web", "phase": "running", "image": "busybox:1.36"}]))
            }
            Request::Images => Response::ok(json!([
                {"name": "busybox:1.36", "digest": "sha256:ab", "size": 3},
                {"name": "r.local:5000/team/app:1", "digest": "sha256:cd", "size": 4},
            ])),
            Request::Image { image } if image == "r.local:5000/team/app:1" => Response::ok(json!({
                "name": image, "digest": "sha256:cd", "size": 4,
                "config": {"os": "linux", "config": {"Cmd": ["app"]}},
            })),
            Request::Inspect { name } if name == "web" => Response::ok(json!({
                "status": {"name": "web", "phase": "running", "image": "busybox:1.36"},
                "spec": {"labels": {"app": "web"}, "network_mode": "none"},
                "oci_config": {"process": {"args": ["httpd", "-f"], "env": [], "cwd": "/"}},
            })),
            Request::Info => Response::ok(json!({})),
            _ => Response::err(ErrorKind::NotFound, "no such thing"),
        }
    }
}

async fn get(path: &str) -> (StatusCode, axum::http::HeaderMap, Value) {
    send(HttpRequest::get(path).body(Body::empty()).unwrap()).await
}

async fn send(req: HttpRequest<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let app = axum::middleware::from_fn(version::negotiate).layer(router(Arc::new(Fake)));
    let resp = app.oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    (parts.status, parts.headers, v)
}

#[tokio::test]
async fn ping_carries_the_api_version() {
    let (s, h, body) = get("/_ping").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["api-version"], API_VERSION);
    assert_eq!(body, "OK");
}

#[tokio::test]
async fn versioned_and_plain_paths_reach_the_same_handler() {
    let (s1, _, a) = get("/v1.50/containers/json").await;
    let (s2, _, b) = get("/containers/json?all=1").await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_eq!(a, b);
    assert_eq!(a[0]["Names"][0], "/web");
    assert_eq!(a[0]["Command"], "httpd -f");
    assert_eq!(a[0]["Labels"]["app"], "web");
    let (_, _, none) =
        get("/v1.41/containers/json?filters=%7B%22label%22%3A%5B%22app%3Ddb%22%5D%7D").await;
    assert_eq!(none, json!([]));
}

#[tokio::test]
async fn errors_are_dockers() {
    let (s, _, body) = get("/v1.99/info").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        body["message"].as_str().unwrap().contains("too new"),
        "{body}"
    );
    let (s, _, body) = get("/v1.50/nothing/here").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body["message"], "page not found");
    let (s, _, body) = get("/containers/nope/json").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body["message"], "No such container: nope");
    let (s, _, body) = get("/v1.50/containers/json?filters=%7Bbad").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid filters"),
        "{body}"
    );
}

#[tokio::test]
async fn inspect_by_name_and_id_prefix() {
    let (s, _, by_name) = get("/v1.50/containers/web/json").await;
    assert_eq!(s, StatusCode::OK);
    let id = by_name["Id"].as_str().unwrap().to_owned();
    let (_, _, by_id) = get(&format!("/v1.50/containers/{}/json", &id[..10])).await;
    assert_eq!(by_id["Name"], "/web");
    assert_eq!(by_name["State"]["Running"], true);
    assert_eq!(by_name["Path"], "httpd");
}

#[tokio::test]
async fn image_names_with_slashes_and_missing_images() {
    let (s, _, v) = get("/v1.50/images/r.local:5000/team/app:1/json").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["Config"]["Cmd"], json!(["app"]));
    assert_eq!(v["RepoTags"][0], "r.local:5000/team/app:1");
    let (s, _, v) = get("/v1.50/images/cd/json").await;
    assert_eq!((s, &v["Id"]), (StatusCode::OK, &json!("sha256:cd")));
    let (s, _, v) = get("/v1.50/images/nope/json").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["message"], "No such image: nope");
    // The CLI pulls on exactly this answer to create.
    let req = HttpRequest::post("/v1.50/containers/create?name=x")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"Image": "nope"}"#))
        .unwrap();
    let (s, _, v) = send(req).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["message"], "No such image: nope:latest");
    let req = HttpRequest::post("/v1.50/images/create?fromSrc=-")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(req).await.0, StatusCode::NOT_IMPLEMENTED);
}

#[tokio::test]
async fn attach_without_upgrade_streams_a_200_and_unknown_execs_are_404s() {
    // The older form: no `Upgrade` header, the output is the body of a 200 (nothing to stream
    // here: neither logs nor stream asked for).
    let req = HttpRequest::post("/v1.50/containers/web/attach?stdout=1")
        .body(Body::empty())
        .unwrap();
    let (s, h, body) = send(req).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        h["content-type"],
        "application/vnd.docker.multiplexed-stream"
    );
    assert_eq!(body, "");
    let (s, _, body) = get("/v1.50/exec/nope/json").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body["message"], "No such exec instance: nope");
    let req = HttpRequest::post("/v1.50/exec/nope/start")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(send(req).await.0, StatusCode::NOT_FOUND);
    let (s, _, _) = get("/v1.50/containers/nope/attach").await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
}
