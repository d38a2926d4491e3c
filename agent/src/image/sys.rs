//! The few system calls the image store needs that nix does not wrap (extended attributes on file
//! descriptors). Runs in berthd and the CLI, on blocking threads.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// Sets an extended attribute on an open file or directory.
pub fn fsetxattr(fd: impl AsFd, name: &str, value: &[u8]) -> io::Result<()> {
    let cname = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: the fd is valid for the call (borrowed), name is a NUL-terminated C string and
    // value points to value.len() readable bytes; the kernel copies both.
    let r = unsafe {
        libc::fsetxattr(
            fd.as_fd().as_raw_fd(),
            cname.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads an extended attribute of an open file or directory (None when it is not set).
pub fn fgetxattr(fd: impl AsFd, name: &str) -> io::Result<Option<Vec<u8>>> {
    let cname = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: the fd is valid for the call, name is NUL-terminated, buf has buf.len() writable bytes.
    let r = unsafe {
        libc::fgetxattr(
            fd.as_fd().as_raw_fd(),
            cname.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENODATA) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    buf.truncate(r as usize);
    Ok(Some(buf))
}
