//! berthd's answers to native API requests (the `berth` CLI's and, through the Docker API's
//! backend, the Docker API's): status, inspect, container and image operations, events, volumes
//! and networks. Runs in berthd.

use super::*;

/// The specs of every container that has a readable one.
async fn desired_specs(ctx: &RealCtx) -> Vec<(String, spec::Spec)> {
    let names = ctx.all_names().await.unwrap_or_default();
    names
        .into_iter()
        .filter_map(|n| Some((n.clone(), ctx.desired(&n)?.spec.ok()?)))
        .collect()
}

/// Whether the container's shim froze it (where systemd could not).
async fn shim_paused(bundle: &Path) -> bool {
    let dir = bundle.to_owned();
    if !dir.join(berth_proto::SOCKET_FILE).exists() {
        return false;
    }
    tokio::task::spawn_blocking(move || {
        berth_proto::protocol::ShimClient::for_bundle(&dir)
            .and_then(|mut c| c.state())
            .is_ok_and(|s| s.paused)
    })
    .await
    .unwrap_or(false)
}

/// The problems of the networks a container is on (edited or removed since it joined them).
fn network_problems(ctx: &RealCtx, st: &crate::reconcile::status::ContainerStatus) -> Vec<String> {
    let (Some(n), Some(net)) = (&ctx.settings.network, &st.network) else {
        return Vec::new();
    };
    let running = [(st.name.clone(), net.clone())];
    crate::network::report::report(&n.declared.load(), &running)
        .into_iter()
        .filter(|r| r.containers.iter().any(|m| m.container == st.name))
        .flat_map(|r| r.problems)
        .collect()
}

pub(super) async fn handle(sh: &Shared, req: Request) -> Response {
    let ctx = &sh.ctx;
    // The board with what each shim reports of its network.
    let with_net = |mut st: crate::reconcile::status::ContainerStatus| {
        st.network = berth_proto::NetworkStatus::load(&ctx.settings.bundle_dir.join(&st.name));
        st
    };
    let known = |name: &str| ctx.board.get(name).map(with_net);
    match req {
        Request::Ps => Response::ok(
            ctx.board
                .all()
                .into_iter()
                .map(with_net)
                .collect::<Vec<_>>(),
        ),
        Request::Status { name } => match known(&name) {
            Some(st) => {
                let unit = sh.systemd.status(&unit_name(&name)).await.ok().flatten();
                let network_problems = network_problems(ctx, &st);
                let paused = shim_paused(&ctx.settings.bundle_dir.join(&name)).await;
                let disk = crate::image::pull::free_bytes(&sh.cfg.state_dir)
                    .and_then(|f| reconcile::status::disk_note(&sh.cfg.state_dir, f));
                Response::ok(json!({
                    "status": st,
                    "network_problems": network_problems,
                    "disk": disk,
                    "paused": paused,
                    "unit": unit.map(|u| json!({
                        "name": u.name, "active_state": u.active_state, "sub_state": u.sub_state,
                        "result": u.result, "main_pid": u.main_pid, "n_restarts": u.n_restarts,
                        "exec_main_status": u.exec_main_status, "invocation_id": u.invocation_id,
                        "freezer_state": u.freezer_state,
                        "control_group": u.control_group,
                    })),
                }))
            }
            None => Response::err(ErrorKind::NotFound, format!("no container {name}")),
        },
        Request::Inspect { name } => {
            let Some(st) = known(&name) else {
                return Response::err(ErrorKind::NotFound, format!("no container {name}"));
            };
            let desired = ctx.desired(&name);
            let config: Option<serde_json::Value> =
                std::fs::read(ctx.settings.bundle_dir.join(&name).join("config.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
            let shim: Option<serde_json::Value> =
                std::fs::read(ctx.settings.bundle_dir.join(&name).join("shim.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
            let paused = shim_paused(&ctx.settings.bundle_dir.join(&name)).await
                || sh
                    .systemd
                    .status(&unit_name(&name))
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|u| u.freezer_state == "frozen");
            Response::ok(json!({
                "status": st,
                "paused": paused,
                "spec_file": desired.as_ref().map(|d| d.path.display().to_string()),
                "spec": desired.as_ref().and_then(|d| d.spec.as_ref().ok()),
                "spec_error": desired.as_ref().and_then(|d| d.spec.as_ref().err().map(|e| e.to_string())),
                "record": ctx.record(&name),
                "bundle": ctx.settings.bundle_dir.join(&name),
                "oci_config": config,
                "shim_config": shim,
            }))
        }
        Request::Diff => {
            let names = match ctx.all_names().await {
                Ok(n) => n,
                Err(e) => return Response::err(ErrorKind::Internal, e),
            };
            let mut out = serde_json::Map::new();
            for n in names {
                let d = match reconcile::decide(ctx, &n).await {
                    Ok(d) => serde_json::to_value(d).unwrap_or_default(),
                    Err(e) => json!({"action": "error", "error": e.to_string()}),
                };
                out.insert(n, d);
            }
            Response::ok(out)
        }
        Request::Restart { name } => {
            if ctx.desired(&name).is_none() {
                return Response::err(ErrorKind::NotFound, format!("no container {name}"));
            }
            if let Err(e) = ctx.hold_stopped(&name, false) {
                return Response::err(ErrorKind::Internal, e);
            }
            ctx.request_restart(&name);
            let _ = sh.triggers.send(Trigger::Now(name.clone()));
            container_event(sh, "restart", &name, None);
            Response::ok(json!({"restarting": name}))
        }
        Request::Stop { name }
        | Request::Start { name }
        | Request::Kill { name, .. }
        | Request::Pause { name, .. }
            if ctx.desired(&name).is_none() =>
        {
            Response::err(ErrorKind::NotFound, format!("no container {name}"))
        }
        Request::Kill { name, signal } => {
            let sig = match spec::Signal::parse(&signal) {
                Ok(s) => s,
                Err(e) => return Response::err(ErrorKind::Invalid, e),
            };
            let dir = ctx.settings.bundle_dir.join(&name);
            let n = sig.number();
            let sent = tokio::task::spawn_blocking(move || {
                berth_proto::protocol::ShimClient::for_bundle(&dir)
                    .and_then(|mut c| c.kill(n, false))
            })
            .await;
            match sent {
                Ok(Ok(())) => {
                    container_event(sh, "kill", &name, Some(("signal", n.to_string())));
                    Response::ok(json!({"killed": name, "signal": sig.0}))
                }
                Ok(Err(e)) => Response::err(
                    ErrorKind::Conflict,
                    format!("cannot signal container {name}: {e} (is it running?)"),
                ),
                Err(e) => Response::err(ErrorKind::Internal, e),
            }
        }
        Request::Pause { name, paused } => {
            let unit = unit_name(&name);
            let up =
                matches!(sh.systemd.status(&unit).await, Ok(Some(u)) if u.active_state.is_up());
            if !up {
                return Response::err(
                    ErrorKind::Conflict,
                    format!("container {name} is not running"),
                );
            }
            match sh.systemd.freeze_unit(&unit, paused).await {
                Ok(()) => Response::ok(json!({"paused": paused, "name": name, "by": "systemd"})),
                // systemd freezes through the unified cgroup hierarchy alone: elsewhere the
                // container's runtime freezes it (its shim reports it paused).
                Err(e) if e.to_string().contains("Error.NotSupported") => {
                    let dir = ctx.settings.bundle_dir.join(&name);
                    let r = tokio::task::spawn_blocking(move || {
                        berth_proto::protocol::ShimClient::for_bundle(&dir)
                            .and_then(|mut c| c.pause(paused))
                    })
                    .await;
                    match r {
                        Ok(Ok(())) => {
                            Response::ok(json!({"paused": paused, "name": name, "by": "runtime"}))
                        }
                        Ok(Err(e)) => Response::err(ErrorKind::Internal, e),
                        Err(e) => Response::err(ErrorKind::Internal, e),
                    }
                }
                Err(e) => Response::err(ErrorKind::Internal, e),
            }
        }
        Request::Stop { name } => match ctx.hold_stopped(&name, true) {
            Ok(()) => {
                let _ = sh.triggers.send(Trigger::Now(name.clone()));
                Response::ok(json!({"stopping": name}))
            }
            Err(e) => Response::err(ErrorKind::Internal, e),
        },
        Request::Start { name } => match ctx.hold_stopped(&name, false) {
            Ok(()) => {
                // Started even when its last run finished and its restart policy would leave
                // it so: starting it is what was asked.
                ctx.request_restart(&name);
                let _ = sh.triggers.send(Trigger::Now(name.clone()));
                Response::ok(json!({"starting": name}))
            }
            Err(e) => Response::err(ErrorKind::Internal, e),
        },
        Request::Pull { image } => {
            let spec = spec::Spec {
                image: Some(image.clone()),
                ..Default::default()
            };
            let progress: reconcile::Progress = Arc::new(|_, _| {});
            use reconcile::Images;
            match ctx.images.pull(&spec, progress).await {
                Ok(i) => {
                    let _ = sh.triggers.send(Trigger::All);
                    image_event(sh, "pull", &image);
                    Response::ok(json!({"image": image, "digest": i.digest}))
                }
                Err(e) => Response::err(ErrorKind::Internal, e),
            }
        }
        Request::Images => match sh.store.list() {
            Ok(l) => Response::ok(l),
            Err(e) => Response::err(ErrorKind::Internal, e),
        },
        Request::Rmi { image, force } => match sh.store.remove(&image, force) {
            Ok(()) => {
                image_event(sh, "untag", &image);
                image_event(sh, "delete", &image);
                Response::ok(json!({"removed": image}))
            }
            Err(e) => Response::err(store_error_kind(&e), e),
        },
        Request::Image { image } => match sh.store.image(&image) {
            Ok(Some(i)) => Response::ok(json!({
                "name": i.name, "digest": i.digest, "size": i.size(), "config": i.config,
            })),
            Ok(None) => Response::err(
                ErrorKind::NotFound,
                format!("no image {image} in the store"),
            ),
            Err(e) => Response::err(store_error_kind(&e), e),
        },
        Request::Tag { image, name } => match sh.store.tag(&image, &name) {
            Ok(n) => {
                image_event(sh, "tag", &n);
                Response::ok(json!({"image": image, "name": n}))
            }
            Err(e) => Response::err(store_error_kind(&e), e),
        },
        Request::Info => Response::ok(json!({
            "spec_dir": sh.cfg.spec_dir, "run_dir": sh.cfg.run_dir, "state_dir": sh.cfg.state_dir, "bundle_dir": sh.cfg.bundle_dir(),
            "journal_dir": sh.cfg.journal_dir, "systemd": sh.cfg.systemd, "version": env!("CARGO_PKG_VERSION"),
            "network_sweep": sh.swept.lock().map(|h| h.iter().cloned().collect::<Vec<_>>()).unwrap_or_default(),
        })),
        Request::Apply {
            name,
            yaml,
            stopped,
        } => {
            if !spec::is_valid_name(&name) {
                return Response::err(
                    ErrorKind::Invalid,
                    format!("invalid container name `{name}`"),
                );
            }
            for ext in ["yaml", "yml"] {
                let p = sh.cfg.spec_dir.join(format!("{name}.{ext}"));
                if p.exists() {
                    return Response::err(
                        ErrorKind::Conflict,
                        format!("{name} is defined by {}; edit that file", p.display()),
                    );
                }
            }
            let path = sh.cfg.api_spec_dir().join(format!("{name}.yaml"));
            let parsed = match spec::parse(&path, &yaml) {
                Ok(p) => p,
                Err(e) => return Response::err(ErrorKind::Invalid, e),
            };
            // Held before the spec appears, so that no pass starts it in between.
            if stopped && let Err(e) = ctx.hold_stopped(&name, true) {
                return Response::err(ErrorKind::Internal, e);
            }
            if let Err(e) = crate::fsutil::write_atomic(&path, yaml.as_bytes()) {
                return Response::err(
                    ErrorKind::Internal,
                    format!("writing {}: {e}", path.display()),
                );
            }
            if stopped && ctx.board.get(&name).is_none() {
                // Held from the start, it never shows a `created` phase on the board.
                let mut st = crate::reconcile::status::ContainerStatus::new(
                    &name,
                    crate::reconcile::status::Phase::Stopped,
                );
                st.image = parsed.image.clone();
                sh.ctx
                    .board
                    .events
                    .publish(crate::events::Event::container("create", &st));
            }
            let _ = sh.triggers.send(Trigger::Now(name.clone()));
            Response::ok(json!({"applied": name}))
        }
        Request::Delete { name } => {
            let path = sh.cfg.api_spec_dir().join(format!("{name}.yaml"));
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    let _ = sh.triggers.send(Trigger::Now(name.clone()));
                    Response::ok(json!({"deleted": name}))
                }
                Err(_) if ctx.desired(&name).is_some() => Response::err(
                    ErrorKind::Conflict,
                    format!(
                        "{name} is defined by a file in {}; remove that file",
                        sh.cfg.spec_dir.display()
                    ),
                ),
                Err(_) => Response::err(
                    ErrorKind::NotFound,
                    format!("no API-managed container {name}"),
                ),
            }
        }
        Request::Networks | Request::Network { .. } => {
            let Some(n) = &ctx.settings.network else {
                return Response::err(ErrorKind::Internal, "networking is off");
            };
            let running: Vec<(String, berth_proto::NetworkStatus)> = ctx
                .board
                .all()
                .into_iter()
                .map(with_net)
                .filter_map(|s| Some((s.name.clone(), s.network?)))
                .collect();
            let all = crate::network::report::report(&n.declared.load(), &running);
            match req {
                Request::Network { name } => match all.into_iter().find(|r| r.name == name) {
                    Some(r) => Response::ok(r),
                    None => Response::err(ErrorKind::NotFound, format!("no network {name}")),
                },
                _ => Response::ok(all),
            }
        }
        Request::Events { since } => Response::ok(
            ctx.board
                .events
                .history()
                .into_iter()
                .filter(|e| since.is_none_or(|s| e.time_nano > s))
                .collect::<Vec<_>>(),
        ),
        Request::Gc => {
            let in_use: Vec<String> = ctx
                .board
                .all()
                .into_iter()
                .filter_map(|s| s.image_digest)
                .collect();
            match sh.store.gc(&in_use).await {
                Ok(r) => Response::ok(r),
                Err(e) => Response::err(ErrorKind::Internal, e),
            }
        }
        Request::Login {
            server,
            username,
            password,
        } => match sh
            .cfg
            .registry_config()
            .check_login(&server, &username, &password)
            .await
        {
            Ok(()) => {
                Response::ok(json!({"registry": crate::image::registry::login_host(&server)}))
            }
            Err(e @ crate::image::registry::LoginError::Refused { .. }) => {
                Response::err(ErrorKind::Invalid, e)
            }
            Err(e) => Response::err(ErrorKind::Internal, e),
        },
        Request::ImageSave { images, path } => {
            let store = sh.store.clone();
            let saved =
                tokio::task::spawn_blocking(move || store.save_archive(&images, Path::new(&path)))
                    .await;
            match saved {
                Ok(Ok(names)) => Response::ok(json!({"saved": names})),
                Ok(Err(e)) => Response::err(store_error_kind(&e), e),
                Err(e) => Response::err(ErrorKind::Internal, e),
            }
        }
        Request::ImageLoad { path } => {
            match sh.store.import_archive(Path::new(&path), None).await {
                Ok(img) => {
                    let _ = sh.triggers.send(Trigger::All);
                    Response::ok(json!({"name": img.name, "digest": img.digest}))
                }
                Err(e) => Response::err(ErrorKind::Invalid, e),
            }
        }
        Request::Rootfs { name } => {
            let image = ctx.desired(&name).and_then(|d| d.spec.ok()?.image);
            let Some(image) = image else {
                return Response::err(
                    ErrorKind::Conflict,
                    format!("container {name} has no root filesystem until it first starts"),
                );
            };
            match sh.store.prepare_rootfs(&name, &image).await {
                Ok(p) => Response::ok(p.rootfs),
                Err(e) => Response::err(store_error_kind(&e), e),
            }
        }
        Request::Volumes | Request::VolumeCreate { .. } | Request::VolumeRemove { .. } => {
            let specs = desired_specs(ctx).await;
            let users = crate::volume::users(specs.iter().map(|(n, s)| (n.as_str(), s)));
            crate::volume::answer(&ctx.settings.volumes_dir, req, &users)
        }
        Request::NetworkCreate { .. } | Request::NetworkRemove { .. } => {
            let Some(n) = &ctx.settings.network else {
                return Response::err(ErrorKind::Internal, "networking is off");
            };
            let specs = desired_specs(ctx).await;
            let r = crate::network::api::handle(&n.declared, req, &specs);
            let _ = sh.triggers.send(Trigger::All);
            r
        }
        Request::Reconcile => {
            let _ = sh.triggers.send(Trigger::All);
            let _ = ctx.units.list().await;
            Response::ok(json!({"reconcile": "queued"}))
        }
    }
}
