//! Bundles written for runc run unchanged under berth-runtime (run in the test process, as root).

use berth_tests::bundle::{Bundle, Runtime, unique};

/// `runc spec` lists ambient capabilities without an inheritable set, which the kernel cannot
/// honour; runc warns and runs the container. berth-runtime must do the same, with the same
/// resulting capability sets.
#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_runc_spec_with_ambient_caps_runs_like_runc() {
    let mut seen = Vec::new();
    for (label, rt) in [("berth", Runtime::berth()), ("runc", Runtime::runc())] {
        let id = unique(&format!("ambient-{label}"));
        let cg = format!("/{id}");
        let b = Bundle::busybox(
            std::path::Path::new("runc"),
            &[
                "sh",
                "-c",
                "grep -E '^Cap(Inh|Prm|Eff|Amb)' /proc/self/status",
            ],
            &cg,
        );
        assert!(
            b.config["process"]["capabilities"]["ambient"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
                && b.config["process"]["capabilities"]
                    .get("inheritable")
                    .is_none(),
            "runc spec no longer writes ambient caps without inheritable ones: {}",
            b.config["process"]["capabilities"]
        );
        rt.track(&id, &cg);
        let out = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
        assert!(
            out.status.success(),
            "{label} run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        seen.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    assert!(seen[0].contains("CapAmb:\t0000000000000000"), "{}", seen[0]);
    assert_eq!(
        seen[0], seen[1],
        "berth and runc give different capability sets"
    );
}
