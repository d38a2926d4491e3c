//! `readiness: notify` end to end under a real systemd: berthd points the container's
//! NOTIFY_SOCKET at the shim's proxy, the application's own sd_notify (Debian's systemd-notify,
//! run from the host's /usr mounted read-only, since busybox has none) makes the unit active, and
//! its STATUS= reaches systemd. Until then the unit stays `activating`.

use berth_tests::agent::{Agent, IMAGE};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// systemd-notify through the host's dynamic loader: the image is busybox only.
const NOTIFY: &str = "/host/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 \
    --library-path /host/usr/lib/x86_64-linux-gnu:/host/usr/lib/x86_64-linux-gnu/systemd \
    /host/usr/bin/systemd-notify";

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn agent_readiness_notify_waits_for_the_application() {
    let a = Agent::start("agent-notify").unwrap();
    a.start_berthd(false).unwrap();
    // The application reports ready only once /tmp/go exists, which the test creates later.
    a.write(
        "app",
        &format!(
            "image_file: {IMAGE}\nnetwork_mode: none\nreadiness: notify\n\
             volumes: [\"/usr:/host/usr:ro\"]\n\
             command: [sh, -c, 'until test -f /tmp/go; do sleep 0.1; done; \
             {NOTIFY} --ready --status=serving && exec sleep 3600; echo notify failed: $?; exit 7']\n"
        ),
    );
    a.wait(T, "app's unit activating", || {
        a.show("app", "ActiveState") == "activating"
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        a.show("app", "ActiveState"),
        "activating",
        "the unit became active before the application said READY=1"
    );
    let out = a.berth(&["exec", "app", "touch", "/tmp/go"]).unwrap();
    assert!(out.status.success(), "{out:?}");
    a.wait(T, "app active after READY=1", || a.active("app"))
        .unwrap();
    assert_eq!(a.show("app", "StatusText"), "serving");
    // The container still runs: the notify step succeeded and the program went on.
    let out = a.berth(&["exec", "app", "test", "-f", "/tmp/go"]).unwrap();
    assert!(out.status.success(), "{out:?}");
}
