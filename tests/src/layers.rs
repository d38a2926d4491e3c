//! Crafted layer tarballs for the unpacker's tests: a tar built from a Python `tarfile` snippet, and
//! a case directory with a layer root beside an `outside` directory that nothing may touch. Runs
//! in the test process.

use berth_agent::image::limits::UnpackLimits;
use berth_agent::image::unpack::{UnpackError, Unpacked, unpack_layer_with};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// Builds a tar at `out` from a Python snippet that adds members to `t` (helpers: `reg`, `sym`, `hard`, `dir_`).
pub fn tar(out: &Path, body: &str) {
    let script = format!(
        r#"
import tarfile, io, sys
t = tarfile.open(sys.argv[1], 'w', format=tarfile.PAX_FORMAT)
def reg(name, data=b'x', **kw):
    i = tarfile.TarInfo(name); i.size = len(data)
    for k, v in kw.items(): setattr(i, k, v)
    t.addfile(i, io.BytesIO(data))
def sym(name, target):
    i = tarfile.TarInfo(name); i.type = tarfile.SYMTYPE; i.linkname = target; t.addfile(i)
def hard(name, target):
    i = tarfile.TarInfo(name); i.type = tarfile.LNKTYPE; i.linkname = target; t.addfile(i)
def dir_(name, **kw):
    i = tarfile.TarInfo(name); i.type = tarfile.DIRTYPE; i.mode = 0o755
    for k, v in kw.items(): setattr(i, k, v)
    t.addfile(i)
{body}
t.close()
"#
    );
    let o = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "python: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

pub struct Case {
    pub t: tempfile::TempDir,
}

impl Default for Case {
    fn default() -> Self {
        Case::new()
    }
}

impl Case {
    pub fn new() -> Case {
        let t = tempfile::Builder::new()
            .prefix("berth-unpack-")
            .tempdir()
            .unwrap();
        std::fs::create_dir(t.path().join("root")).unwrap();
        std::fs::create_dir(t.path().join("outside")).unwrap();
        std::fs::write(t.path().join("outside/secret"), "secret").unwrap();
        Case { t }
    }
    pub fn outside(&self) -> String {
        self.t.path().join("outside").display().to_string()
    }
    pub fn run(&self, body: &str) -> Result<(), UnpackError> {
        self.run_with(body, &UnpackLimits::default()).map(|_| ())
    }
    /// Builds the layer from `body` and unpacks it within `limits`.
    pub fn run_with(&self, body: &str, limits: &UnpackLimits) -> Result<Unpacked, UnpackError> {
        let body = body.replace("OUTSIDE", &self.outside());
        let p = self.layer();
        tar(&p, &body);
        self.unpack(&std::fs::read(&p).unwrap(), limits)
    }
    /// The layer tarball `run_with` writes.
    pub fn layer(&self) -> std::path::PathBuf {
        self.t.path().join("layer.tar")
    }
    /// Unpacks `stream` (a tar, gzip or zstd stream) into the layer root.
    pub fn unpack(&self, stream: &[u8], limits: &UnpackLimits) -> Result<Unpacked, UnpackError> {
        unpack_layer_with(stream, &self.t.path().join("root"), limits)
    }
    /// Nothing outside the root changed.
    pub fn assert_contained(&self, what: &str) {
        let names: Vec<String> = std::fs::read_dir(self.t.path().join("outside"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec!["secret".to_string()],
            "{what}: something was written outside the layer root"
        );
        let m = std::fs::metadata(self.t.path().join("outside/secret")).unwrap();
        assert_eq!(
            std::fs::read_to_string(self.t.path().join("outside/secret")).unwrap(),
            "secret",
            "{what}"
        );
        assert_eq!(
            m.nlink(),
            1,
            "{what}: a hard link to a file outside the root was made"
        );
        let tnames: Vec<String> = std::fs::read_dir(self.t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            tnames
                .iter()
                .all(|n| ["root", "outside", "layer.tar"].contains(&n.as_str())),
            "{what}: {tnames:?}"
        );
    }
}
