//! berthd's raw libc calls that no crate wraps: returning freed heap to the kernel. Runs in
//! berthd.
#![allow(unsafe_code)]

/// Gives the pages glibc's allocator holds free (in every thread's arena) back to the kernel.
/// berthd idles for days after a burst of passes; without this the burst's peak stays resident.
pub fn trim_heap() {
    // SAFETY: malloc_trim only walks glibc's own allocator state; no pointers are passed.
    unsafe {
        libc::malloc_trim(0);
    }
}
