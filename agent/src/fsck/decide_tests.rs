//! Unit tests of fsck's decisions over fake inventories.

use super::*;
use std::path::Path;

const M: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const C: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const L: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
const CHAIN: &str = "4444444444444444444444444444444444444444444444444444444444444444";

fn layout() -> Layout {
    Layout {
        store: "/s".into(),
        records: "/s/agent".into(),
        bundles: "/run/b".into(),
    }
}

/// One image `web` (manifest, config, one layer unpacked), imported, used by container `web`
/// which has a spec, a record and a mounted bundle.
fn healthy() -> Inventory {
    let mut inv = Inventory::default();
    for d in [M, C, L] {
        inv.store.blobs.insert(d.into(), BlobState::Intact);
    }
    inv.store.docs.insert(
        M.into(),
        Doc::Manifest {
            config: C.into(),
            layers: vec![L.into()],
            chain_ids: vec![format!("sha256:{CHAIN}")],
        },
    );
    inv.store
        .names
        .push(("docker.io/library/web:1".into(), M.into()));
    inv.store.imports.push(("aa".into(), Some(M.into())));
    inv.store.layer_dirs.push(CHAIN.into());
    inv.store.containers.push(("web".into(), Some(M.into())));
    inv.specs.insert("web".into());
    inv.records.push(("web".into(), Some(M.into())));
    inv.bundles.push(("web".into(), true));
    inv
}

fn repairs(inv: &Inventory) -> Vec<(String, Result<Repair, String>)> {
    decide(inv, &layout())
        .into_iter()
        .map(|f| (f.object, f.repair))
        .collect()
}

#[test]
fn a_healthy_host_has_no_findings() {
    assert_eq!(repairs(&healthy()), vec![]);
}

#[test]
fn a_corrupt_layer_blob_is_removed_and_the_unpacked_layer_keeps_the_image() {
    let mut inv = healthy();
    inv.store
        .blobs
        .insert(L.into(), BlobState::Mismatch(C.into()));
    let r = decide(&inv, &layout());
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].object, format!("blob {L}"));
    assert!(r[0].problem.contains(C), "{}", r[0].problem);
    assert_eq!(
        r[0].repair,
        Ok(Repair::Remove(Path::new("/s/blobs/sha256").join(&L[7..])))
    );
}

#[test]
fn a_layer_neither_stored_nor_unpacked_drops_the_name_and_the_import() {
    let mut inv = healthy();
    inv.store.blobs.remove(L);
    inv.store.layer_dirs.clear();
    assert_eq!(
        repairs(&inv),
        vec![
            (
                "image docker.io/library/web:1".into(),
                Ok(Repair::DropName("docker.io/library/web:1".into()))
            ),
            (
                "import aa".into(),
                Ok(Repair::Remove("/s/imports/aa".into()))
            ),
        ]
    );
}

#[test]
fn a_corrupt_manifest_or_missing_config_drops_the_name() {
    let mut inv = healthy();
    inv.store
        .blobs
        .insert(M.into(), BlobState::Unreadable("EIO".into()));
    let r = decide(&inv, &layout());
    assert!(
        r.iter().any(
            |f| f.repair == Ok(Repair::DropName("docker.io/library/web:1".into()))
                && f.problem.contains("manifest")
        ),
        "{r:?}"
    );
    let mut inv = healthy();
    inv.store.blobs.remove(C);
    let r = decide(&inv, &layout());
    assert!(
        r.iter().any(|f| f.problem == format!("config {C} missing")),
        "{r:?}"
    );
}

#[test]
fn temp_files_partial_layers_and_finished_downloads_go_partial_downloads_stay() {
    let mut inv = healthy();
    inv.store.layer_dirs.push(".tmp-abc-1-0".into());
    inv.store.ingest.push((L[7..].into(), true));
    inv.store.ingest.push((C[7..].into(), false)); // resumable
    inv.store.ingest.push(("import-abcdef-1-2".into(), false));
    inv.store.temp_files.push("/s/.tmp-index.json-9-0".into());
    inv.temp_files.push("/s/agent/.tmp-web.json-9-1".into());
    let got: Vec<String> = repairs(&inv)
        .into_iter()
        .map(|(o, r)| format!("{o} {}", r.unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![
            "layer .tmp-abc-1-0 remove /s/layers/.tmp-abc-1-0".to_owned(),
            format!("ingest {} remove /s/ingest/{}", &L[7..], &L[7..]),
            "ingest import-abcdef-1-2 remove /s/ingest/import-abcdef-1-2".into(),
            "file /s/.tmp-index.json-9-0 remove /s/.tmp-index.json-9-0".into(),
            "file /s/agent/.tmp-web.json-9-1 remove /s/agent/.tmp-web.json-9-1".into(),
        ]
    );
}

#[test]
fn leftovers_of_gone_containers_are_removed_unless_mounted() {
    let mut inv = healthy();
    inv.stopped.push("old".into());
    inv.stopped.push("web".into()); // held stopped: kept
    inv.bundles.push(("old".into(), false));
    inv.bundles.push(("busy".into(), true));
    inv.store.containers.push(("old".into(), Some(M.into())));
    let r = repairs(&inv);
    assert_eq!(
        r,
        vec![
            (
                "stop marker old".into(),
                Ok(Repair::Remove("/s/agent/old.stopped".into()))
            ),
            ("bundle old".into(), Ok(Repair::Remove("/run/b/old".into()))),
            (
                "bundle busy".into(),
                Err("its root filesystem is still mounted: a shim may still run it".into())
            ),
            (
                "rootfs old".into(),
                Ok(Repair::Remove("/s/containers/old".into()))
            ),
        ]
    );
}

#[test]
fn a_name_with_only_a_record_is_still_a_container() {
    let mut inv = healthy();
    inv.specs.clear(); // spec removed while berthd was down: berthd stops it on its next pass
    assert_eq!(repairs(&inv), vec![]);
}

#[test]
fn an_unreadable_record_is_removed() {
    let mut inv = healthy();
    inv.records[0].1 = None;
    assert_eq!(
        repairs(&inv),
        vec![(
            "record web".into(),
            Ok(Repair::Remove("/s/agent/web.json".into()))
        )]
    );
}

#[test]
fn a_truncated_rootfs_record_is_rewritten_from_berthds_record() {
    let mut inv = healthy();
    inv.store.containers[0].1 = None;
    assert_eq!(
        repairs(&inv),
        vec![(
            "rootfs web".into(),
            Ok(Repair::WriteContainerRecord {
                id: "web".into(),
                image: "docker.io/library/web:1".into(),
                digest: M.into()
            })
        )]
    );
    // Without a record naming a stored image, there is nothing to rewrite it from.
    inv.records[0].1 = Some(C.replace('2', "5"));
    let r = decide(&inv, &layout());
    assert_eq!(r.len(), 1);
    assert!(r[0].repair.is_err(), "{r:?}");
}

#[test]
fn network_leftovers_of_gone_containers_are_reported_and_left_to_the_sweep() {
    let mut inv = healthy();
    inv.networked.push(("web".into(), vec!["netns", "lease"]));
    assert_eq!(repairs(&inv), vec![]);
    inv.networked
        .push(("old".into(), vec!["network record", "lease"]));
    let r = decide(&inv, &layout());
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].object, "network state old");
    assert_eq!(
        r[0].problem,
        "network record, lease of a container that no longer exists"
    );
    assert!(
        r[0].repair
            .as_ref()
            .is_err_and(|e| e.contains("network sweep"))
    );
}
