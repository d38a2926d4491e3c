//! Crafted layers beyond the escapes of `image_unpack.rs`, each with its expected outcome (the
//! table in README.md): whiteouts aimed outside the root or at `.`/`..`, setuid/setgid bits and
//! xattrs (kept, except overlayfs's own), sparse-file and tar bombs stopped by the configurable
//! limits, a 10,000-deep tree, and truncated or corrupt gzip and zstd streams.

use berth_agent::image::limits::{Limit, UnpackLimits};
use berth_agent::image::unpack::UnpackError;
use berth_tests::layers::Case;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

fn gzip(raw: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(raw).unwrap();
    e.finish().unwrap()
}

/// Writes a tar of one file `zeros` of `size` zero bytes to `w` (a compressor), never holding it.
fn zeros_tar(size: u64, w: &mut impl Write) {
    w.write_all(&zeros_header(size)).unwrap();
    let block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        w.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    // the last block's padding (sizes here are whole blocks) and the end-of-archive blocks
    w.write_all(&[0u8; 1024]).unwrap();
}

fn limit_of(r: Result<impl std::fmt::Debug, UnpackError>) -> (Limit, String) {
    match r {
        Err(UnpackError::Limit(e)) => (e.limit, UnpackError::Limit(e).to_string()),
        other => panic!("expected a limit error, got {other:?}"),
    }
}

#[test]
#[ignore = "needs root: chown and whiteout device nodes while unpacking"]
fn image_unpack_whiteouts_aimed_outside_or_at_dot_are_refused() {
    let cases = [
        // `..` as the whiteout's target: removing it would empty the layer root's parent
        ("whiteout of ..", "reg('.wh...', b'')"),
        ("whiteout of .. below", "dir_('a')\nreg('a/.wh...', b'')"),
        ("whiteout of .", "reg('a/keep')\nreg('a/.wh..', b'')"),
        ("whiteout in ../", "reg('../outside/.wh.secret', b'')"),
        (
            "whiteout through a symlink out",
            "sym('ln', 'OUTSIDE')\nreg('ln/.wh.secret', b'')",
        ),
        (
            "whiteout through a relative symlink out",
            "sym('up', '../outside')\nreg('up/.wh.secret', b'')",
        ),
        (
            "opaque marker through a symlink out",
            "sym('ln', 'OUTSIDE')\nreg('ln/.wh..wh..opq', b'')",
        ),
    ];
    for (what, body) in cases {
        let c = Case::new();
        let r = c.run(body);
        c.assert_contained(what);
        if what.contains("symlink") {
            // resolved inside the root: the whiteout lands there, or the entry is refused
            if r.is_ok() {
                assert!(
                    c.t.path().join("root").join(&c.outside()[1..]).exists(),
                    "{what}"
                );
            }
        } else {
            let e = r.expect_err(what).to_string();
            assert!(e.contains("escapes the layer root"), "{what}: {e}");
        }
    }
}

#[test]
#[ignore = "needs root: chown, setuid bits, trusted and security xattrs"]
fn image_unpack_setuid_setgid_and_xattrs_kept_overlay_xattrs_dropped() {
    let c = Case::new();
    // security.capability v2: cap_net_raw (13) permitted and effective
    c.run(
        r#"
reg('suid', mode=0o4755, uid=0)
reg('sgid', mode=0o2755, gid=50)
dir_('sgiddir', mode=0o2775, gid=50)
i = tarfile.TarInfo('caps'); i.size = 1; i.mode = 0o755
i.pax_headers = {'SCHILY.xattr.security.capability': '\x01\x00\x00\x02\x00\x20\x00\x00' + '\x00' * 12,
                 'SCHILY.xattr.user.note': 'kept', 'SCHILY.xattr.trusted.berth': 'kept'}
t.addfile(i, io.BytesIO(b'x'))
i = tarfile.TarInfo('redirected'); i.type = tarfile.DIRTYPE; i.mode = 0o755
i.pax_headers = {'SCHILY.xattr.trusted.overlay.redirect': '/etc', 'SCHILY.xattr.trusted.overlay.opaque': 'y',
                 'SCHILY.xattr.trusted.overlay.metacopy': ''}
t.addfile(i)
"#,
    )
    .expect("unpack");
    let root = c.t.path().join("root");
    let mode = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("suid"), 0o4755, "setuid kept");
    assert_eq!(mode("sgid"), 0o2755, "setgid kept");
    assert_eq!(mode("sgiddir"), 0o2775, "setgid directory kept");
    assert_eq!(std::fs::metadata(root.join("sgid")).unwrap().gid(), 50);
    let x = |p: &str, k: &str| {
        berth_agent::image::sys::fgetxattr(std::fs::File::open(root.join(p)).unwrap(), k).unwrap()
    };
    assert_eq!(
        x("caps", "security.capability").map(|v| v.len()),
        Some(20),
        "file capabilities kept"
    );
    assert_eq!(x("caps", "user.note").as_deref(), Some(&b"kept"[..]));
    assert_eq!(x("caps", "trusted.berth").as_deref(), Some(&b"kept"[..]));
    for k in [
        "trusted.overlay.redirect",
        "trusted.overlay.opaque",
        "trusted.overlay.metacopy",
    ] {
        assert_eq!(
            x("redirected", k),
            None,
            "{k}: overlayfs's own xattr taken from a layer"
        );
    }
    // getcap agrees where it is installed
    if let Ok(o) = Command::new("getcap").arg(root.join("caps")).output() {
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("cap_net_raw"), "{out}");
    }
}

#[test]
#[ignore = "needs root: chown while unpacking"]
fn image_unpack_sparse_bomb_is_refused_before_any_data() {
    let c = Case::new();
    let p = c.t.path().join("src");
    std::fs::create_dir(&p).unwrap();
    let sparse = |name: &str, size: &str| {
        let f = p.join(name);
        assert!(
            Command::new("truncate")
                .args(["-s", size])
                .arg(&f)
                .status()
                .unwrap()
                .success()
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(&f)
            .unwrap()
            .write_all(b"end")
            .unwrap();
    };
    // 1 TiB, of which 3 bytes are data: a tar of a few KiB
    sparse("huge", "1T");
    let tarball = c.t.path().join("sparse.tar");
    let ok = Command::new("tar")
        .args(["--sparse", "--format=gnu", "-cf"])
        .arg(&tarball)
        .args(["-C"])
        .arg(&p)
        .arg("huge")
        .status()
        .unwrap();
    assert!(ok.success());
    let raw = std::fs::read(&tarball).unwrap();
    assert!(raw.len() < 64 << 10, "the tar is small: {}", raw.len());
    let t0 = std::time::Instant::now();
    let (limit, msg) = limit_of(c.unpack(&gzip(&raw), &UnpackLimits::default()));
    assert_eq!(limit, Limit::Size);
    assert!(msg.contains("image.max_layer_size"), "{msg}");
    assert!(
        t0.elapsed().as_secs() < 5,
        "refused late: {:?}",
        t0.elapsed()
    );
    assert!(
        !c.t.path().join("root/huge").exists(),
        "refused before the file was made"
    );
    // A sparse file within the limit is kept sparse.
    let c = Case::new();
    std::fs::remove_file(p.join("huge")).unwrap();
    sparse("big", "256M");
    assert!(
        Command::new("tar")
            .args(["--sparse", "--format=gnu", "-cf"])
            .arg(&tarball)
            .arg("-C")
            .arg(&p)
            .arg("big")
            .status()
            .unwrap()
            .success()
    );
    c.unpack(&std::fs::read(&tarball).unwrap(), &UnpackLimits::default())
        .expect("unpack");
    let m = std::fs::metadata(c.t.path().join("root/big")).unwrap();
    assert_eq!(m.len(), (256 << 20) + 3);
    assert!(
        m.blocks() * 512 < 1 << 20,
        "holes kept: {} blocks",
        m.blocks()
    );
}

#[test]
#[ignore = "needs root: chown while unpacking"]
fn image_unpack_tar_bombs_stop_at_each_configured_limit() {
    // gzip: 16 MiB of zeros in about 16 KiB
    let c = Case::new();
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        zeros_tar(16 << 20, &mut e);
        e.finish().unwrap()
    };
    let small = UnpackLimits {
        max_layer_size: 8 << 20,
        ..UnpackLimits::default()
    };
    let (limit, msg) = limit_of(c.unpack(&gz, &small));
    assert_eq!(limit, Limit::Size);
    assert!(
        msg.contains("past 8388608 bytes") && msg.contains("image.max_layer_size"),
        "{msg}"
    );
    // the same layer passes the defaults (its ratio is not judged below 64 MiB)
    let c2 = Case::new();
    c2.unpack(&gz, &UnpackLimits::default())
        .expect("within the defaults");
    // zstd: 4 GiB of zeros in well under 1 MiB stops on the default ratio soon after 64 MiB
    let c3 = Case::new();
    // one frame of a tar header and 128 MiB of zeros, then 31 frames of zeros (concatenated
    // frames are one stream): compressing 4 GiB here would take longer than the test
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    zeros_tar(4 << 30, &mut Take(128 << 20, &mut enc));
    let mut zst = enc.finish().unwrap();
    let zeros = zstd::encode_all(&vec![0u8; 128 << 20][..], 3).unwrap();
    for _ in 1..32 {
        zst.extend_from_slice(&zeros);
    }
    assert!(zst.len() < 1 << 20, "{}", zst.len());
    let (limit, msg) = limit_of(c3.unpack(&zst, &UnpackLimits::default()));
    assert_eq!(limit, Limit::Ratio);
    assert!(
        msg.contains("more than 1000:1") && msg.contains("image.max_expansion_ratio"),
        "{msg}"
    );
    // entries
    let c5 = Case::new();
    let (limit, msg) = limit_of(c5.run_with(
        "for n in range(20): reg('f%d' % n)",
        &UnpackLimits {
            max_entries: 10,
            ..UnpackLimits::default()
        },
    ));
    assert_eq!(limit, Limit::Entries);
    assert!(
        msg.contains("more than 10 entries") && msg.contains("image.max_entries"),
        "{msg}"
    );
    for c in [c, c3, c5] {
        c.assert_contained("bomb");
    }
}

/// A writer that passes on only the first `.0` bytes.
struct Take<'a, W>(u64, &'a mut W);

impl<W: Write> Write for Take<'_, W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = (b.len() as u64).min(self.0) as usize;
        self.1.write_all(&b[..n])?;
        self.0 -= n as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.1.flush()
    }
}

/// The header of one regular file `zeros` of `size` bytes.
fn zeros_header(size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_path("zeros").unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    h.as_bytes().to_vec()
}

#[test]
#[ignore = "needs root: chown while unpacking"]
fn image_unpack_ten_thousand_deep_tree() {
    let c = Case::new();
    let r = c.run("p = ''\nfor n in range(10000):\n    p += 'd/'\n    dir_(p)\nreg(p + 'leaf')");
    let e = r.expect_err("a path past PATH_MAX").to_string();
    assert!(
        e.contains("layer entry") && e.contains("File name too long"),
        "{e}"
    );
    c.assert_contained("deep tree");
    // what was made (about 2,000 levels, the kernel's limit on one path) is removable, as the
    // store removes a partial layer
    std::fs::remove_dir_all(c.t.path().join("root")).expect("partial layer removed");
    // 2,000 levels fit and unpack whole
    let c = Case::new();
    c.run("p = ''\nfor n in range(2000):\n    p += 'd/'\n    dir_(p)\nreg(p + 'leaf')")
        .expect("2,000 levels");
    assert!(
        c.t.path()
            .join("root")
            .join("d/".repeat(2000))
            .join("leaf")
            .exists()
    );
}

#[test]
#[ignore = "needs root: chown while unpacking"]
fn image_unpack_truncated_and_corrupt_streams_fail_cleanly() {
    let c = Case::new();
    let raw = {
        let mut body = String::new();
        for n in 0..50 {
            body.push_str(&format!("reg('f{n}', bytes(range(256)) * 64)\n"));
        }
        c.run(&body).expect("the intact layer");
        std::fs::read(c.layer()).unwrap()
    };
    let gz = gzip(&raw);
    let zst = zstd::encode_all(&raw[..], 3).unwrap();
    for (name, data) in [("gzip", &gz), ("zstd", &zst)] {
        let half = &data[..data.len() / 2];
        let no_trailer = &data[..data.len() - 4];
        let mut flipped = data.clone();
        let mid = flipped.len() / 2;
        for b in &mut flipped[mid..mid + 16] {
            *b ^= 0x5a;
        }
        for (what, bad) in [
            ("truncated", half),
            ("trailer cut", no_trailer),
            ("corrupt", &flipped[..]),
        ] {
            let c = Case::new();
            match c.unpack(bad, &UnpackLimits::default()) {
                Err(UnpackError::Read(_)) | Err(UnpackError::Entry { .. }) => {}
                other => panic!("{name} {what}: {other:?}"),
            }
            c.assert_contained(what);
        }
    }
}
