//! The mount namespace runsc (`run`, or `create` and `start`) needs to take over a sandbox's
//! network namespace.
//!
//! Before copying a namespace's interfaces, this runsc build refuses to work on the host's
//! root network namespace, and it recognises that by `/proc/sys/net/core/rmem_default`
//! existing, which recent kernels show in every namespace. So runsc gets a private mount
//! namespace with an empty tmpfs over `/proc/sys/net`, invisible to the rest of the host.

use rustix::mount::{MountFlags, MountPropagationFlags, mount, mount_change};
use rustix::thread::{UnshareFlags, unshare_unsafe};

/// Runs in the forked child right before `exec` of runsc: only raw syscalls, no allocation.
/// It is the body of the one `pre_exec` hook, the only place clrk allows `unsafe`.
#[allow(unsafe_code)]
pub(crate) fn hide_proc_sys_net() -> std::io::Result<()> {
    // SAFETY: only the mount namespace is unshared, not the file descriptor table, and the
    // child is single-threaded between fork and exec.
    unsafe { unshare_unsafe(UnshareFlags::NEWNS)? };
    // Downstream: the host's later unmounts (a deleted netns file) still reach the copy, and
    // the tmpfs below never propagates back to the host.
    mount_change(
        c"/",
        MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
    )?;
    mount(
        c"none",
        c"/proc/sys/net",
        c"tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        None,
    )?;
    Ok(())
}
