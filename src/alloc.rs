//! Alloc: returns memory freed after a burst to the OS. The one module
//! allowed `unsafe`, audited: a single foreign call.
#![allow(unsafe_code)]

/// Lets mimalloc (the binary's global allocator) purge this thread's free
/// pages now. Without it, pages freed when a burst of connections goes idle
/// stay resident until the allocator is next busy.
pub(crate) fn collect() {
    // SAFETY: `mi_collect` takes no pointers, touches only the calling
    // thread's heap (and abandoned segments), and may be called at any time.
    unsafe { libmimalloc_sys::mi_collect(false) }
}
