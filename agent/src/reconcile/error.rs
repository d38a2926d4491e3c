//! What a reconcile pass fails with, and whether the failure can go away by itself (transient:
//! retried with backoff) or holds until the container's spec or the files it names change
//! (permanent). The classification is here, in one place, for every backend error; the controller
//! acts on it. Runs in berthd.

use crate::bundle::BundleError;
use crate::image;
use crate::systemd::SystemdError;
use std::path::PathBuf;

/// Whether retrying unchanged can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// The system may get better (a registry or systemd unreachable, a job timed out, a container
    /// that did not come up): retry with backoff.
    Transient,
    /// The same inputs fail the same way (an unknown user, a broken archive, a unit systemd
    /// rejects): no retry until the spec file or a file it names changes.
    Permanent,
}

/// The image side's failures ([`super::Images`]).
#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    #[error(transparent)]
    Store(#[from] image::Error),
    #[error("cannot read image config {path}: {source}")]
    ConfigRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("image config {digest}: {detail}")]
    Config { digest: String, detail: String },
    #[error("pull task of {image} ended abnormally: {detail}")]
    Task { image: String, detail: String },
}

impl ImagesError {
    pub fn persistence(&self) -> Persistence {
        use Persistence::*;
        use image::Error as E;
        match self {
            ImagesError::Store(e) => match e {
                // What the spec or the archive says is wrong, or the image itself is broken.
                E::Reference(_)
                | E::NoPlatform { .. }
                | E::Manifest { .. }
                | E::DiffIdMismatch { .. }
                | E::ContainerId(_)
                | E::Import { .. } => Permanent,
                // Registries, credentials, the network, the disk: all can change without the spec
                // (a tag pushed later, a credential fixed, a transfer that went wrong once).
                _ => Transient,
            },
            ImagesError::Config { .. } => Permanent,
            ImagesError::ConfigRead { .. } | ImagesError::Task { .. } => Transient,
        }
    }
}

/// Whether systemd's failure can go away by itself.
pub fn systemd_persistence(e: &SystemdError) -> Persistence {
    match e {
        // systemd says the unit itself is wrong: sending it again will not help.
        SystemdError::Invalid(_) => Persistence::Permanent,
        SystemdError::Call { source, .. } if is_rejection(source) => Persistence::Permanent,
        // Unreachable, restarting, slow, or the container did not come up (its start is retried
        // like Docker's restart policy would, with backoff).
        _ => Persistence::Transient,
    }
}

/// A D-Bus error reply that rejects the request as such (bad arguments or unit settings).
fn is_rejection(e: &zbus::Error) -> bool {
    let zbus::Error::MethodError(name, _, _) = e else {
        return false;
    };
    matches!(
        name.as_str(),
        "org.freedesktop.DBus.Error.InvalidArgs"
            | "org.freedesktop.DBus.Error.PropertyReadOnly"
            | "org.freedesktop.systemd1.BadUnitSetting"
    )
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("container {name}: the reconcile pass panicked")]
    Panicked { name: String },
    #[error("container {name}: systemd: {source}")]
    Units {
        name: String,
        /// Boxed: zbus' errors are large, and every pass returns this type.
        #[source]
        source: Box<SystemdError>,
    },
    #[error("container {name}: image: {source}")]
    Image {
        name: String,
        #[source]
        source: ImagesError,
    },
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("container {name}: cannot write state {path}: {source}")]
    State {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ReconcileError {
    pub fn persistence(&self) -> Persistence {
        use Persistence::*;
        match self {
            // The same pass over the same inputs panics again.
            ReconcileError::Panicked { .. } => Permanent,
            ReconcileError::Units { source, .. } => systemd_persistence(source),
            ReconcileError::Image { source, .. } => source.persistence(),
            ReconcileError::Bundle(b) => match b {
                BundleError::UnknownUser { .. }
                | BundleError::Oci { .. }
                | BundleError::Json { .. } => Permanent,
                // The init binary is a host package, the bundle dir a host disk.
                BundleError::Init { .. } | BundleError::Write { .. } => Transient,
                // A network declaration is fixed without touching the spec: retried.
                BundleError::Network { .. } => Transient,
            },
            ReconcileError::State { .. } => Transient,
        }
    }

    pub(crate) fn units(name: &str) -> impl FnOnce(SystemdError) -> ReconcileError + '_ {
        move |source| ReconcileError::Units {
            name: name.into(),
            source: Box::new(source),
        }
    }

    pub(crate) fn image(name: &str) -> impl FnOnce(ImagesError) -> ReconcileError + '_ {
        move |source| ReconcileError::Image {
            name: name.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method_error(name: &str) -> zbus::Error {
        let msg = zbus::Message::method_call("/", "Ping")
            .unwrap()
            .build(&())
            .unwrap();
        let name = zbus::names::OwnedErrorName::try_from(name).unwrap();
        zbus::Error::MethodError(name, None, msg)
    }

    fn call(source: zbus::Error) -> SystemdError {
        SystemdError::Call {
            method: "StartTransientUnit",
            object: "berth-web.service".into(),
            source,
        }
    }

    #[test]
    fn systemd_rejections_are_permanent_and_the_rest_transient() {
        use Persistence::*;
        for (e, want) in [
            (SystemdError::Invalid("x".into()), Permanent),
            (
                call(method_error("org.freedesktop.DBus.Error.InvalidArgs")),
                Permanent,
            ),
            (
                call(method_error("org.freedesktop.systemd1.UnitExists")),
                Transient,
            ),
            (call(zbus::Error::Failure("bus gone".into())), Transient),
            (
                SystemdError::Disconnected {
                    unit: "u".into(),
                    job: "j".into(),
                },
                Transient,
            ),
            (
                SystemdError::JobFailed {
                    unit: "u".into(),
                    job: "j".into(),
                    result: "failed".into(),
                    unit_result: "exit-code".into(),
                    exit_status: 1,
                    logs: vec![],
                },
                Transient,
            ),
        ] {
            assert_eq!(systemd_persistence(&e), want, "{e}");
        }
    }

    #[test]
    fn image_errors_split_by_whether_the_spec_must_change() {
        let permanent = ImagesError::Store(image::Error::NoPlatform {
            image: "x".into(),
            platform: "linux/s390x".into(),
        });
        assert_eq!(permanent.persistence(), Persistence::Permanent);
        let broken_archive = ImagesError::Store(image::Error::Import {
            path: "/srv/x.tar".into(),
            detail: "no manifest.json".into(),
        });
        assert_eq!(broken_archive.persistence(), Persistence::Permanent);
        for e in [
            image::Error::NotFound {
                image: "x".into(),
                registry: "r".into(),
                what: "manifest".into(),
            },
            image::Error::TooManyRequests {
                image: "x".into(),
                registry: "r".into(),
                retry_after: None,
            },
            image::Error::Transport {
                image: "x".into(),
                registry: "r".into(),
                detail: "connection refused".into(),
            },
        ] {
            let e = ImagesError::Store(e);
            assert_eq!(e.persistence(), Persistence::Transient, "{e}");
        }
        let bad_user = ReconcileError::Bundle(BundleError::UnknownUser {
            name: "web".into(),
            user: "www".into(),
            file: "/etc/passwd",
        });
        assert_eq!(bad_user.persistence(), Persistence::Permanent);
        assert_eq!(
            ReconcileError::Panicked { name: "web".into() }.persistence(),
            Persistence::Permanent
        );
    }
}
