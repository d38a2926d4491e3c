//! Layer unpacking on a real filesystem: hostile tarballs (each known escape) stay inside the layer
//! root, and whiteouts, opaque dirs, owners, modes, xattrs, hard links, devices and sparse files come
//! out as overlayfs expects (checked by mounting an overlay). Tarballs are crafted with Python's tarfile.

use berth_agent::image::unpack::unpack_layer;
use berth_tests::layers::{Case, tar};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

#[test]
#[ignore = "needs root: chown and device nodes while unpacking"]
fn image_unpack_hostile_layers_stay_inside_root() {
    let pid = std::process::id();
    let cases: Vec<(&str, String, bool)> = vec![
        ("dotdot", "reg('../outside/pwned')".into(), true),
        (
            "dotdot deep",
            "reg('a/b/../../../outside/pwned')".into(),
            true,
        ),
        (
            "absolute path",
            format!("reg('/tmp/berth-pwned-{pid}')"),
            false,
        ),
        (
            "symlink out then write through",
            "sym('ln', '../outside')\nreg('ln/pwned')".into(),
            false,
        ),
        (
            "absolute symlink then write through",
            "sym('abs', 'OUTSIDE')\nreg('abs/pwned')".into(),
            false,
        ),
        (
            "symlink to root's parent chain",
            "sym('up', '..')\nreg('up/up/outside/pwned')".into(),
            false,
        ),
        (
            "dir replaced by symlink",
            "dir_('d')\nsym('d', 'OUTSIDE')\nreg('d/pwned')".into(),
            false,
        ),
        (
            "hardlink dotdot",
            "hard('hl', '../outside/secret')".into(),
            true,
        ),
        (
            "hardlink absolute",
            "hard('hl', 'OUTSIDE/secret')".into(),
            true,
        ),
        (
            "hardlink to symlink out",
            "sym('s', 'OUTSIDE/secret')\nhard('h', 's')".into(),
            false,
        ),
        (
            "file over symlink out",
            "sym('w', 'OUTSIDE/secret')\nreg('w', b'evil')".into(),
            false,
        ),
        (
            "symlinked parent of hardlink",
            "sym('p', 'OUTSIDE')\nhard('x', 'p/secret')".into(),
            true,
        ),
    ];
    for (what, body, must_fail) in cases {
        let c = Case::new();
        let r = c.run(&body);
        if must_fail {
            assert!(r.is_err(), "{what}: a hostile entry was accepted");
        }
        if let Err(e) = &r {
            let m = e.to_string();
            assert!(m.contains("layer entry"), "{what}: unclear error {m}");
        }
        c.assert_contained(what);
        assert!(
            !Path::new(&format!("/tmp/berth-pwned-{pid}")).exists(),
            "{what}: absolute path escaped"
        );
    }
    // contained results land inside the root
    let c = Case::new();
    c.run(&format!(
        "reg('/tmp/berth-pwned-{pid}')\ndir_('inner')\nsym('abs', '/inner')\nreg('abs/ok')"
    ))
    .unwrap();
    assert!(
        c.t.path()
            .join(format!("root/tmp/berth-pwned-{pid}"))
            .exists()
    );
    assert!(
        c.t.path().join("root/inner/ok").exists(),
        "an absolute symlink resolves inside the root"
    );
    let c = Case::new();
    c.run("sym('s', 'OUTSIDE/secret')\nhard('h', 's')").unwrap();
    assert!(
        std::fs::symlink_metadata(c.t.path().join("root/h"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

struct Mount(std::path::PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
#[ignore = "needs root: chown, mknod, trusted xattrs, overlay mount"]
fn image_unpack_metadata_whiteouts_and_overlay() {
    let t = tempfile::Builder::new()
        .prefix("berth-unpack-meta-")
        .tempdir()
        .unwrap();
    let p = t.path().join("l.tar");
    tar(
        &p,
        r#"
dir_('d', mode=0o750, uid=1234, gid=5678)
i = tarfile.TarInfo('d/f'); data = b'hello'; i.size = len(data); i.mode = 0o4755; i.uid = 1234; i.gid = 5678
i.pax_headers = {'SCHILY.xattr.user.berth': 'v1'}
t.addfile(i, io.BytesIO(data))
hard('d/h', 'd/f')
i = tarfile.TarInfo('dev/null2'); i.type = tarfile.CHRTYPE; i.devmajor = 1; i.devminor = 3; i.mode = 0o666; t.addfile(i)
i = tarfile.TarInfo('p'); i.type = tarfile.FIFOTYPE; i.mode = 0o600; t.addfile(i)
reg('sp', b'\0' * (8 << 20) + b'end')
reg('.wh.gone', b'')
dir_('o')
reg('o/.wh..wh..opq', b'')
reg('o/new', b'new')
"#,
    );
    for comp in ["none", "gzip", "zstd"] {
        let src = match comp {
            "none" => p.clone(),
            c => {
                // compressed in-process: no zstd/gzip tools needed
                let out = t.path().join(format!("l.tar.{c}"));
                let raw = std::fs::read(&p).unwrap();
                let data = if c == "gzip" {
                    let mut e =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    std::io::Write::write_all(&mut e, &raw).unwrap();
                    e.finish().unwrap()
                } else {
                    zstd::encode_all(&raw[..], 3).unwrap()
                };
                std::fs::write(&out, data).unwrap();
                out
            }
        };
        let root = t.path().join(format!("root-{comp}"));
        std::fs::create_dir(&root).unwrap();
        let u = unpack_layer(std::fs::File::open(&src).unwrap(), &root).expect("unpack");
        let sum = Command::new("sha256sum").arg(&p).output().unwrap();
        assert_eq!(
            u.diff_id,
            format!(
                "sha256:{}",
                String::from_utf8_lossy(&sum.stdout)
                    .split_whitespace()
                    .next()
                    .unwrap()
            ),
            "{comp}: diff id is the uncompressed digest"
        );
        let d = std::fs::metadata(root.join("d")).unwrap();
        assert_eq!((d.uid(), d.gid(), d.mode() & 0o7777), (1234, 5678, 0o750));
        let f = std::fs::metadata(root.join("d/f")).unwrap();
        assert_eq!(
            (f.uid(), f.gid(), f.mode() & 0o7777),
            (1234, 5678, 0o4755),
            "setuid kept after chown"
        );
        assert_eq!(
            f.ino(),
            std::fs::metadata(root.join("d/h")).unwrap().ino(),
            "hard link"
        );
        let fd = std::fs::File::open(root.join("d/f")).unwrap();
        assert_eq!(
            berth_agent::image::sys::fgetxattr(&fd, "user.berth")
                .unwrap()
                .as_deref(),
            Some(&b"v1"[..])
        );
        let n = std::fs::metadata(root.join("dev/null2")).unwrap();
        assert!(n.file_type().is_char_device());
        assert_eq!(n.rdev(), nix::sys::stat::makedev(1, 3));
        assert!(
            std::fs::metadata(root.join("p"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
        let sp = std::fs::metadata(root.join("sp")).unwrap();
        assert_eq!(sp.len(), (8 << 20) + 3);
        assert!(
            sp.blocks() * 512 < 1 << 20,
            "{comp}: zeros not kept sparse ({} blocks)",
            sp.blocks()
        );
        let w = std::fs::metadata(root.join("gone")).unwrap();
        assert!(
            w.file_type().is_char_device() && w.rdev() == 0,
            "whiteout is a 0:0 char device"
        );
        assert!(!root.join(".wh.gone").exists());
        let o = std::fs::File::open(root.join("o")).unwrap();
        assert_eq!(
            berth_agent::image::sys::fgetxattr(&o, "trusted.overlay.opaque")
                .unwrap()
                .as_deref(),
            Some(&b"y"[..])
        );
    }
    // the kernel agrees: an overlay of a lower layer and this one hides what was deleted
    let lower = t.path().join("lower");
    std::fs::create_dir_all(lower.join("o")).unwrap();
    std::fs::write(lower.join("gone"), "old").unwrap();
    std::fs::write(lower.join("o/old"), "old").unwrap();
    std::fs::write(lower.join("kept"), "kept").unwrap();
    let (upper, work, merged) = (t.path().join("u"), t.path().join("w"), t.path().join("m"));
    for d in [&upper, &work, &merged] {
        std::fs::create_dir(d).unwrap();
    }
    let opts = format!(
        "lowerdir={}:{},upperdir={},workdir={}",
        t.path().join("root-gzip").display(),
        lower.display(),
        upper.display(),
        work.display()
    );
    nix::mount::mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    )
    .expect("overlay mount");
    let _m = Mount(merged.clone());
    assert!(
        !merged.join("gone").exists(),
        "whiteout hides the lower file"
    );
    assert!(
        !merged.join("o/old").exists(),
        "opaque dir hides the lower dir's content"
    );
    assert!(merged.join("o/new").exists());
    assert_eq!(
        std::fs::read_to_string(merged.join("kept")).unwrap(),
        "kept"
    );
    assert_eq!(
        std::fs::read_to_string(merged.join("d/f")).unwrap(),
        "hello"
    );
}
