//! Registry documents through berth's own decoding (agent/src/image/manifest.rs): a manifest or
//! index, the platform choice from an index, and an image config blob (oci-spec's configuration,
//! Docker's healthcheck, and the `ImageConfig` a container is merged with, with its chain ids).
#![no_main]

use berth_agent::image::manifest::{self, Document};
use berth_agent::spec::effective::ImageConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match manifest::parse_document(data) {
        Ok(Document::Index(i)) => {
            let _ = manifest::choose_platform(&i, &manifest::host_platform());
            for d in i.manifests() {
                let _ = (manifest::media_type(d), manifest::ref_name(d));
                let _ = manifest::digest_hex(d.digest().as_ref());
            }
        }
        Ok(Document::Manifest(m)) => {
            for d in m.layers().iter().chain(std::iter::once(m.config())) {
                let _ = (manifest::media_type(d), manifest::digest_hex(d.digest().as_ref()));
            }
        }
        Err(_) => {}
    }
    if let Ok((cfg, _healthcheck)) = manifest::parse_config_blob(data) {
        let chain = manifest::chain_ids(cfg.rootfs().diff_ids());
        assert_eq!(chain.len(), cfg.rootfs().diff_ids().len());
    }
    let _ = ImageConfig::from_config_blob(data);
});
