//! The pipes between clrk and a sandbox's program. clrk makes them itself rather than letting
//! `Command` do it: under runsc the program's stdio is that of `runsc create`, which exits once
//! the container exists while the sandbox keeps the pipes, and the `runsc start` after it
//! writes why a program could not start on the same stderr.

use std::os::fd::OwnedFd;

use rustix::pipe::{PipeFlags, pipe_with};
use tokio::net::unix::pipe::{Receiver, Sender};

/// clrk's ends: what the program reads and what it writes.
#[derive(Debug)]
pub(crate) struct Stdio {
    pub(crate) stdin: Option<Sender>,
    pub(crate) stdout: Option<Receiver>,
    pub(crate) stderr: Option<Receiver>,
}

impl Stdio {
    /// All three ends; `None` once any was taken.
    pub(crate) fn take_all(&mut self) -> Option<(Sender, Receiver, Receiver)> {
        match (self.stdin.take(), self.stdout.take(), self.stderr.take()) {
            (Some(stdin), Some(stdout), Some(stderr)) => Some((stdin, stdout, stderr)),
            (stdin, stdout, stderr) => {
                *self = Stdio {
                    stdin,
                    stdout,
                    stderr,
                };
                None
            }
        }
    }
}

/// The runtime's ends, given to the command that starts the container; clrk closes its copies
/// once that command is spawned, so that the program's exit is an EOF on [`Stdio::stdout`].
#[derive(Debug)]
pub(crate) struct ChildEnds {
    pub(crate) stdin: OwnedFd,
    pub(crate) stdout: OwnedFd,
    pub(crate) stderr: OwnedFd,
}

/// Three pipes, close-on-exec on clrk's side (a runtime started at the same time for another
/// sandbox must not hold them open). Needs a tokio runtime.
pub(crate) fn pipes() -> std::io::Result<(Stdio, ChildEnds)> {
    let (stdin_read, stdin_write) = pipe_with(PipeFlags::CLOEXEC)?;
    let (stdout_read, stdout_write) = pipe_with(PipeFlags::CLOEXEC)?;
    let (stderr_read, stderr_write) = pipe_with(PipeFlags::CLOEXEC)?;
    Ok((
        Stdio {
            stdin: Some(Sender::from_owned_fd(stdin_write)?),
            stdout: Some(Receiver::from_owned_fd(stdout_read)?),
            stderr: Some(Receiver::from_owned_fd(stderr_read)?),
        },
        ChildEnds {
            stdin: stdin_read,
            stdout: stdout_write,
            stderr: stderr_write,
        },
    ))
}
