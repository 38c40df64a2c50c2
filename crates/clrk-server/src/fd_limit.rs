//! The process's file-descriptor limit, raised at start to the hard limit.
//!
//! Every connection, sandbox pipe and store handle is a descriptor. The soft limit many
//! systems start with (1024) is reached long before the connection caps of the listeners; the
//! hard limit is what the administrator granted, so clrk takes all of it.

use rustix::process::{Resource, getrlimit, setrlimit};

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the limit now in force. A
/// failure is logged, not fatal: the listeners' caps still hold.
pub fn raise() -> Option<u64> {
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return limit.current;
    }
    limit.current = limit.maximum;
    match setrlimit(Resource::Nofile, limit) {
        Ok(()) => {
            tracing::debug!(limit = ?limit.current, "raised the file-descriptor limit");
            limit.current
        }
        Err(error) => {
            tracing::warn!(%error, "could not raise the file-descriptor limit to the hard limit");
            getrlimit(Resource::Nofile).current
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
        assert_eq!(super::raise(), hard);
        assert_eq!(
            rustix::process::getrlimit(rustix::process::Resource::Nofile).current,
            hard
        );
    }
}
