//! `GET /events`: berthd's event bus ([`crate::events`]) as Docker's stream of JSON objects, one
//! per line, with `since` (from the bus's history), `until` (the stream ends then) and the
//! `type`, `container`, `image`, `event`, `label` and `network` filters. Runs in berthd.

use super::containers::parse_filters;
use super::{DockerError, Shared, call};
use crate::api::Request;
use crate::events::{Event, Kind};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    until: Option<String>,
    #[serde(default)]
    filters: Option<String>,
}

const FILTERS: [&str; 6] = ["type", "container", "image", "event", "label", "network"];

/// A time as Docker's clients send it (`1700000000`, `1700000000.123456789`), in nanoseconds.
pub fn parse_nanos(s: &str) -> Result<i64, DockerError> {
    let bad = || DockerError::BadRequest(format!("invalid timestamp {s:?}"));
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    if frac.len() > 9 || !frac.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let nanos: i64 = format!("{frac:0<9}").parse().map_err(|_| bad())?;
    Ok(secs * 1_000_000_000 + nanos)
}

fn opt_nanos(v: &Option<String>) -> Result<Option<i64>, DockerError> {
    v.as_deref()
        .filter(|s| !s.is_empty() && *s != "0")
        .map(parse_nanos)
        .transpose()
}

/// Whether `e` passes every filter (values of one key are alternatives), as Docker decides.
pub fn wanted(filters: &BTreeMap<String, Vec<String>>, e: &Event) -> bool {
    let attr = |k: &str| e.attributes.get(k).map(String::as_str).unwrap_or("");
    filters.iter().all(|(key, values)| {
        let any = |pred: &dyn Fn(&str) -> bool| values.iter().any(|v| pred(v));
        match key.as_str() {
            "type" => any(&|v| v == e.kind.as_str()),
            // `health_status: healthy` is matched by `health_status` too.
            "event" => any(&|v| e.action == v || e.action.starts_with(&format!("{v}:"))),
            "container" => {
                e.kind == Kind::Container
                    && any(&|v| v == attr("name") || (!v.is_empty() && e.id.starts_with(v)))
            }
            "image" => any(&|v| {
                let img = match e.kind {
                    Kind::Image => e.id.as_str(),
                    _ => attr("image"),
                };
                img == v || img.starts_with(&format!("{v}:")) || attr("name") == v
            }),
            "network" => e.kind == Kind::Network && any(&|v| e.id == v || attr("name") == v),
            "label" => any(&|v| match v.split_once('=') {
                Some((k, val)) => e.attributes.get(k).is_some_and(|x| x == val),
                None => e.attributes.contains_key(v),
            }),
            _ => false,
        }
    })
}

/// Docker's JSON for one event.
pub fn render(e: &Event) -> Value {
    let mut v = json!({
        "Type": e.kind.as_str(),
        "Action": e.action,
        "Actor": {"ID": e.id, "Attributes": e.attributes},
        "scope": "local",
        "time": e.time_nano / 1_000_000_000,
        "timeNano": e.time_nano,
    });
    // The fields of API versions before 1.22, still read by some clients.
    if e.kind != Kind::Network {
        v["status"] = json!(e.action);
        v["id"] = json!(e.id);
        if let Some(i) = e.attributes.get("image") {
            v["from"] = json!(i);
        }
    }
    v
}

/// A container event with the container's labels among its attributes (as Docker's have them),
/// looked up once per container and stream.
async fn with_labels(
    b: &Shared,
    cache: &mut HashMap<String, BTreeMap<String, String>>,
    mut e: Event,
) -> Event {
    if e.kind != Kind::Container {
        return e;
    }
    let Some(name) = e.attributes.get("name").cloned() else {
        return e;
    };
    if !cache.contains_key(&name) {
        let labels = call(b, Request::Inspect { name: name.clone() })
            .await
            .ok()
            .and_then(|v| serde_json::from_value(v["spec"]["labels"].clone()).ok())
            .unwrap_or_default();
        cache.insert(name.clone(), labels);
    }
    for (k, v) in &cache[&name] {
        e.attributes.entry(k.clone()).or_insert_with(|| v.clone());
    }
    e
}

/// Sends `e` if the filters want it; `false` once the client is gone.
async fn emit(
    b: &Shared,
    cache: &mut HashMap<String, BTreeMap<String, String>>,
    filters: &BTreeMap<String, Vec<String>>,
    tx: &tokio::sync::mpsc::Sender<Bytes>,
    e: Event,
) -> bool {
    let e = with_labels(b, cache, e).await;
    if !wanted(filters, &e) {
        return true;
    }
    let mut line = serde_json::to_vec(&render(&e)).unwrap_or_default();
    line.push(b'\n');
    tx.send(Bytes::from(line)).await.is_ok()
}

fn now_nanos() -> i64 {
    Event::new(Kind::Image, "", "").time_nano
}

/// `GET /events`.
pub async fn events(
    State(b): State<Shared>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, DockerError> {
    let filters = parse_filters(q.filters.as_deref())?;
    if let Some(k) = filters.keys().find(|k| !FILTERS.contains(&k.as_str())) {
        return Err(DockerError::BadRequest(format!(
            "invalid filter '{k}' (berth filters events on {})",
            FILTERS.join(", ")
        )));
    }
    let since = opt_nanos(&q.since)?;
    let until = opt_nanos(&q.until)?;
    let (history, mut rx) = b.events().subscribe();
    let (tx, out) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut cache = HashMap::new();
        let in_range = |e: &Event| {
            since.is_none_or(|s| e.time_nano >= s) && until.is_none_or(|u| e.time_nano <= u)
        };
        let past = history.into_iter().filter(|_| since.is_some());
        for e in past.filter(in_range) {
            if !emit(&b, &mut cache, &filters, &tx, e).await {
                return;
            }
        }
        loop {
            let left = match until {
                Some(u) => match u.checked_sub(now_nanos()).filter(|l| *l > 0) {
                    Some(l) => Duration::from_nanos(l as u64),
                    None => return,
                },
                None => Duration::from_secs(86_400),
            };
            let e = tokio::select! {
                r = rx.recv() => match r {
                    Ok(e) => e,
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!("events: a client lagged behind, {n} events dropped for it");
                        continue;
                    }
                    Err(RecvError::Closed) => return,
                },
                // The client hung up.
                _ = tx.closed() => return,
                _ = tokio::time::sleep(left), if until.is_some() => return,
            };
            if in_range(&e) && !emit(&b, &mut cache, &filters, &tx, e).await {
                return;
            }
        }
    });
    Ok(super::json_stream(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    #[test]
    fn times_in_nanoseconds() {
        assert_eq!(
            parse_nanos("1700000000").unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            parse_nanos("1700000000.5").unwrap(),
            1_700_000_000_500_000_000
        );
        assert_eq!(
            parse_nanos("1700000000.000000001").unwrap(),
            1_700_000_000_000_000_001
        );
        assert!(parse_nanos("10m").is_err());
        assert!(parse_nanos("1.0000000001").is_err());
    }

    #[test]
    fn filters_as_docker_applies_them() {
        let e = Event::new(Kind::Container, "die", &crate::network::container_id("web"))
            .attr("name", "web")
            .attr("image", "busybox:1")
            .attr("exitCode", "3")
            .attr("app", "front");
        let f = |s: &str| parse_filters(Some(s)).unwrap();
        assert!(wanted(&f("{}"), &e));
        assert!(wanted(
            &f(r#"{"type":["container"],"event":["die","start"]}"#),
            &e
        ));
        assert!(!wanted(&f(r#"{"type":["image"]}"#), &e));
        assert!(wanted(&f(r#"{"container":["web"]}"#), &e));
        assert!(wanted(
            &f(&format!(r#"{{"container":["{}"]}}"#, &e.id[..12])),
            &e
        ));
        assert!(!wanted(&f(r#"{"container":["db"]}"#), &e));
        assert!(wanted(&f(r#"{"image":["busybox"]}"#), &e));
        assert!(wanted(&f(r#"{"label":["app=front"]}"#), &e));
        assert!(!wanted(&f(r#"{"label":["app=back"]}"#), &e));
        assert!(!wanted(&f(r#"{"network":["n"]}"#), &e));
        let h = Event::new(Kind::Container, "health_status: healthy", "x");
        assert!(wanted(&f(r#"{"event":["health_status"]}"#), &h));
        let n = Event::new(Kind::Network, "create", "backend").attr("name", "backend");
        assert!(wanted(
            &f(r#"{"network":["backend"],"type":["network"]}"#),
            &n
        ));
    }

    #[test]
    fn rendered_as_docker_does() {
        let mut e = Event::new(Kind::Container, "start", "abc").attr("name", "web");
        e.time_nano = 1_700_000_000_123_456_789;
        let v = render(&e);
        assert_eq!(v["Type"], "container");
        assert_eq!(v["Action"], "start");
        assert_eq!(v["Actor"]["ID"], "abc");
        assert_eq!(v["Actor"]["Attributes"]["name"], "web");
        assert_eq!(v["time"], 1_700_000_000);
        assert_eq!(v["timeNano"], 1_700_000_000_123_456_789i64);
        assert_eq!(v["status"], "start");
    }

    /// berthd with a bus holding a few past events, and `web` labelled `app=front`.
    struct Fake(std::sync::Arc<crate::events::Bus>);

    #[async_trait::async_trait]
    impl super::super::Backend for Fake {
        async fn call(&self, req: Request) -> crate::api::Response {
            match req {
                Request::Inspect { .. } => {
                    crate::api::Response::ok(json!({"spec": {"labels": {"app": "front"}}}))
                }
                _ => crate::api::Response::err(crate::api::ErrorKind::NotFound, "no"),
            }
        }
        fn events(&self) -> std::sync::Arc<crate::events::Bus> {
            self.0.clone()
        }
    }

    #[tokio::test]
    async fn a_past_window_streams_its_events_and_ends() {
        use tower::ServiceExt as _;
        let bus = std::sync::Arc::new(crate::events::Bus::default());
        let at = |secs: i64, mut e: Event| {
            e.time_nano = secs * 1_000_000_000;
            e
        };
        bus.publish(at(
            100,
            Event::new(Kind::Container, "start", "a").attr("name", "web"),
        ));
        bus.publish(at(200, Event::new(Kind::Image, "pull", "busybox")));
        bus.publish(at(
            300,
            Event::new(Kind::Container, "die", "a").attr("name", "web"),
        ));
        bus.publish(at(
            400,
            Event::new(Kind::Container, "destroy", "a").attr("name", "web"),
        ));
        let app = super::super::router(std::sync::Arc::new(Fake(bus)));
        let filters = "%7B%22label%22%3A%5B%22app%3Dfront%22%5D%7D";
        let req =
            axum::http::Request::get(format!("/events?since=150&until=350&filters={filters}"))
                .body(Body::empty())
                .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        assert_eq!(resp.status(), axum::http::StatusCode::OK);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let lines: Vec<Value> = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        // The image pull has no label; start and destroy are outside the window.
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["Action"], "die");
        assert_eq!(lines[0]["Actor"]["Attributes"]["app"], "front");
    }
}
