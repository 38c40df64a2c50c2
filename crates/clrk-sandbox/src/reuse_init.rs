//! The init of reused sandboxes (`init/main.rs`, built static by the build script): written
//! next to the sandboxes so a bundle can mount it, and the frames clrk exchanges with it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::SandboxError;

/// Where a reused sandbox finds the init: under `/dev`, a tmpfs in every sandbox.
pub(crate) const PATH: &str = "/dev/.clrk-init";

/// Directories this process has installed the init in.
static INSTALLED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The static executable.
pub const INIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/clrk-init"));

/// Frame kinds, as `init/main.rs` documents them.
pub mod frame {
    /// clrk → init: the next execution's envelope.
    pub const ENVELOPE: u8 = b'E';
    /// init → clrk: the next agent is started and waits for its envelope.
    pub const READY: u8 = b'R';
    /// init → clrk: a chunk of the agent's stdout.
    pub const STDOUT: u8 = b'O';
    /// init → clrk: a chunk of the agent's stderr.
    pub const STDERR: u8 = b'S';
    /// init → clrk: the agent's exit status, an i32, big-endian.
    pub const EXIT: u8 = b'X';
}

/// Writes the init into `dir` (once per process and content) and returns its path.
pub fn install(dir: &Path) -> Result<PathBuf, SandboxError> {
    let path = dir.join("clrk-init");
    let mut installed = INSTALLED.lock().expect("installed inits");
    if installed.iter().any(|d| d == dir) {
        return Ok(path);
    }
    if std::fs::read(&path).is_ok_and(|held| held == INIT) {
        installed.push(dir.to_owned());
        return Ok(path);
    }
    std::fs::create_dir_all(dir).map_err(SandboxError::io(dir))?;
    let partial = dir.join(format!(".clrk-init.{}", std::process::id()));
    std::fs::write(&partial, INIT).map_err(SandboxError::io(&partial))?;
    std::fs::set_permissions(
        &partial,
        std::os::unix::fs::PermissionsExt::from_mode(0o555),
    )
    .map_err(SandboxError::io(&partial))?;
    std::fs::rename(&partial, &path).map_err(SandboxError::io(&path))?;
    installed.push(dir.to_owned());
    Ok(path)
}

/// `bytes` as one frame of `kind`.
pub fn encode(kind: u8, bytes: &[u8]) -> Vec<u8> {
    let len = u32::try_from(bytes.len()).expect("frames are under 4 GiB");
    let mut framed = Vec::with_capacity(5 + bytes.len());
    framed.push(kind);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    framed
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};

    use super::*;

    fn read_frame(from: &mut impl Read) -> Option<(u8, Vec<u8>)> {
        let mut head = [0u8; 5];
        from.read_exact(&mut head).ok()?;
        let mut bytes = vec![0u8; u32::from_be_bytes(head[1..].try_into().unwrap()) as usize];
        from.read_exact(&mut bytes).ok()?;
        Some((head[0], bytes))
    }

    /// The init as a sandbox's first process, played by a new PID namespace with its own
    /// `/tmp`: each execution gets its envelope, its output and status come back framed,
    /// and what one left (a file in /tmp, a background process) is gone for the next.
    #[test]
    fn runs_the_agent_once_per_execution_and_leaves_nothing_behind() {
        // Not under /tmp, which the namespace replaces.
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let init = install(dir.path()).unwrap();
        let agent = "ls /tmp; touch /tmp/left-behind; cat; echo err >&2; (sleep 1000 &); exit 3";
        let script = format!(
            "mount -t tmpfs none /tmp && exec {} /bin/sh -c '{agent}'",
            init.display()
        );
        let mut child = Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--mount",
                "--mount-proc",
                "sh",
                "-c",
                &script,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let mut output = child.stdout.take().unwrap();
        for n in 0..3 {
            assert_eq!(read_frame(&mut output), Some((frame::READY, Vec::new())));
            let envelope = format!("{{\"n\": {n}}}");
            input
                .write_all(&encode(frame::ENVELOPE, envelope.as_bytes()))
                .unwrap();
            let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
            let status = loop {
                match read_frame(&mut output).expect("a frame") {
                    (frame::STDOUT, bytes) => stdout.extend(bytes),
                    (frame::STDERR, bytes) => stderr.extend(bytes),
                    (frame::EXIT, bytes) => break i32::from_be_bytes(bytes.try_into().unwrap()),
                    other => panic!("unexpected frame {other:?}"),
                }
            };
            // `ls /tmp` printed nothing: the previous execution's file was removed.
            assert_eq!(String::from_utf8(stdout).unwrap(), envelope);
            assert_eq!(stderr, b"err\n");
            assert_eq!(status, 3);
        }
        drop(input);
        assert!(child.wait().unwrap().success());
    }

    #[test]
    fn outside_a_new_pid_namespace_it_refuses_to_run() {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(install(dir.path()).unwrap())
            .arg("/bin/true")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("pid 1"));
    }
}
