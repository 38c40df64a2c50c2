//! The image config's `User` (`name`, `uid`, `name:group`, `uid:gid`) as numeric ids, looked
//! up in the root filesystem's own `/etc/passwd` and `/etc/group` the way docker does.

use std::io::Read as _;

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::error::ImageError;
use crate::store::Rootfs;

impl Rootfs {
    /// The uid and gid `user` names inside this root filesystem. A numeric user without a
    /// group takes its primary group from `/etc/passwd` if listed there, else gid 0.
    ///
    /// ```
    /// let host = clrk_image::Rootfs { path: "/".into(), host: true };
    /// assert_eq!(host.user_ids("root").unwrap(), (0, 0));
    /// assert_eq!(host.user_ids("1234:55").unwrap(), (1234, 55));
    /// ```
    pub fn user_ids(&self, user: &str) -> Result<(u32, u32), ImageError> {
        let bad = |reason: String| ImageError::BadUser {
            user: user.to_owned(),
            reason,
        };
        let (name, group) = match user.split_once(':') {
            Some((name, group)) => (name, Some(group)),
            None => (user, None),
        };
        if name.is_empty() || group == Some("") {
            return Err(bad("expected NAME, UID, NAME:GROUP or UID:GID".into()));
        }
        let passwd = self.read_etc("passwd").map_err(&bad)?;
        let entry =
            passwd_entries(&passwd).find(|(n, uid, _)| *n == name || uid.to_string() == name);
        let (uid, primary_gid) = match (name.parse::<u32>(), entry) {
            (Ok(uid), entry) => (uid, entry.map_or(0, |(_, _, gid)| gid)),
            (Err(_), Some((_, uid, gid))) => (uid, gid),
            (Err(_), None) => {
                return Err(bad(format!(
                    "there is no user {name:?} in the image's /etc/passwd"
                )));
            }
        };
        let gid = match group {
            None => primary_gid,
            Some(group) => match group.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => {
                    let groups = self.read_etc("group").map_err(&bad)?;
                    group_entries(&groups)
                        .find(|(n, _)| *n == group)
                        .map(|(_, gid)| gid)
                        .ok_or_else(|| {
                            bad(format!(
                                "there is no group {group:?} in the image's /etc/group"
                            ))
                        })?
                }
            },
        };
        Ok((uid, gid))
    }

    /// `/etc/<file>` of this root, resolved inside it (a symlink cannot lead out of the
    /// image); empty when absent.
    fn read_etc(&self, file: &str) -> Result<String, String> {
        let root = rustix::fs::open(&self.path, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
            .map_err(|e| format!("cannot open the root filesystem: {e}"))?;
        let path = format!("etc/{file}");
        let fd = match rustix::fs::openat2(
            &root,
            &path,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT,
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(String::new()),
            Err(e) => return Err(format!("cannot read /{path} of the image: {e}")),
        };
        let mut text = String::new();
        std::fs::File::from(fd)
            .take(4 << 20)
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read /{path} of the image: {e}"))?;
        Ok(text)
    }
}

/// `name:x:uid:gid:…` lines.
fn passwd_entries(text: &str) -> impl Iterator<Item = (&str, u32, u32)> {
    text.lines().filter_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let uid = fields.nth(1)?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((name, uid, gid))
    })
}

/// `name:x:gid:members` lines.
fn group_entries(text: &str) -> impl Iterator<Item = (&str, u32)> {
    text.lines().filter_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let gid = fields.nth(1)?.parse().ok()?;
        Some((name, gid))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs(passwd: &str, group: &str) -> (tempfile::TempDir, Rootfs) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), passwd).unwrap();
        std::fs::write(dir.path().join("etc/group"), group).unwrap();
        let rootfs = Rootfs {
            path: dir.path().to_owned(),
            host: false,
        };
        (dir, rootfs)
    }

    #[test]
    fn names_and_numbers_resolve_like_docker() {
        let (_dir, r) = rootfs(
            "root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1001::/home/agent:/bin/sh\n",
            "root:x:0:\nstaff:x:50:agent\n",
        );
        assert_eq!(r.user_ids("agent").unwrap(), (1000, 1001));
        assert_eq!(r.user_ids("1000").unwrap(), (1000, 1001));
        assert_eq!(r.user_ids("4242").unwrap(), (4242, 0));
        assert_eq!(r.user_ids("agent:staff").unwrap(), (1000, 50));
        assert_eq!(r.user_ids("agent:7").unwrap(), (1000, 7));
        let err = r.user_ids("nobody").unwrap_err().to_string();
        assert!(
            err.contains("nobody") && err.contains("/etc/passwd"),
            "{err}"
        );
        let err = r.user_ids("agent:wheel").unwrap_err().to_string();
        assert!(err.contains("wheel") && err.contains("/etc/group"), "{err}");
        assert!(r.user_ids(":5").is_err());
    }

    #[test]
    fn a_symlinked_passwd_is_read_inside_the_image() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::create_dir_all(dir.path().join("real")).unwrap();
        std::fs::write(dir.path().join("real/passwd"), "inside:x:7:8::/:/bin/sh\n").unwrap();
        // Absolute: outside the image it would be the host's file.
        std::os::unix::fs::symlink("/real/passwd", dir.path().join("etc/passwd")).unwrap();
        let r = Rootfs {
            path: dir.path().to_owned(),
            host: false,
        };
        assert_eq!(r.user_ids("inside").unwrap(), (7, 8));
        assert!(r.user_ids("root").is_err(), "the host's passwd was read");
    }
}
