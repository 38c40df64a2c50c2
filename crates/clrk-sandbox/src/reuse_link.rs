//! clrk's end of a reused sandbox: the init's frames (`reuse_init`) turned into one execution
//! after another, each with its own stdout, stderr and exit status.
//!
//! The frames come from inside the sandbox, so they are read as untrusted input: a frame's
//! bytes are copied through a small buffer, never allocated at the length it claims, and a
//! frame out of turn (output before the agent is ready, an exit status of the wrong size, an
//! unknown kind) ends the link, and with it every further execution in that sandbox.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
use tokio::net::unix::pipe::{Receiver, Sender};
use tokio::sync::{mpsc, oneshot};

use crate::reuse_init::{encode, frame};

/// Bytes buffered between the init and one execution's reader, per stream, before the init
/// (and so the agent) waits.
const STREAM_BUFFER: usize = 64 << 10;
/// The init's own stderr kept for errors: its last line, at most this long.
const INIT_LINE: usize = 512;

/// One execution in a reused sandbox.
#[derive(Debug)]
pub struct Execution {
    /// The agent's stdout; ends when the agent and what it left are gone.
    pub stdout: DuplexStream,
    /// The agent's stderr.
    pub stderr: DuplexStream,
    /// The agent's exit status (the code, or 128 + the signal that ended it); an error when
    /// the sandbox ended or broke its protocol first.
    pub exit: oneshot::Receiver<i32>,
}

/// Where the frames of the execution in progress go.
struct Sinks {
    stdout: DuplexStream,
    stderr: DuplexStream,
    /// Taken when the exit status comes.
    exit: Option<oneshot::Sender<i32>>,
}

/// The frames of one reused sandbox.
#[derive(Debug)]
pub(crate) struct Link {
    envelopes: mpsc::Sender<Vec<u8>>,
    turns: mpsc::Sender<Sinks>,
    executions: u32,
    init_said: Arc<Mutex<String>>,
    /// Why the frames stopped being read, once they have.
    broken: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Sinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sinks")
    }
}

impl Link {
    /// Takes over a reused sandbox's stdio: a task writes envelopes, one reads frames, one
    /// keeps the init's own last word on stderr.
    pub(crate) fn new(id: &str, stdin: Sender, stdout: Receiver, stderr: Receiver) -> Link {
        let (envelopes, to_write) = mpsc::channel(1);
        let (turns, to_serve) = mpsc::channel(1);
        let init_said = Arc::new(Mutex::new(String::new()));
        let broken = Arc::new(Mutex::new(None));
        tokio::spawn(write_envelopes(stdin, to_write));
        tokio::spawn(read_frames(
            stdout,
            to_serve,
            Arc::clone(&broken),
            id.to_owned(),
        ));
        tokio::spawn(keep_last_line(stderr, Arc::clone(&init_said)));
        Link {
            envelopes,
            turns,
            executions: 0,
            init_said,
            broken,
        }
    }

    /// Starts the next execution with `envelope` on its agent's stdin.
    pub(crate) fn next(&mut self, envelope: Vec<u8>) -> Option<Execution> {
        let (stdout, stdout_sink) = tokio::io::duplex(STREAM_BUFFER);
        let (stderr, stderr_sink) = tokio::io::duplex(STREAM_BUFFER);
        let (exit_sink, exit) = oneshot::channel();
        let sinks = Sinks {
            stdout: stdout_sink,
            stderr: stderr_sink,
            exit: Some(exit_sink),
        };
        // Capacity 1 and one execution at a time: both have room unless the link has ended.
        self.turns.try_send(sinks).ok()?;
        self.envelopes
            .try_send(encode(frame::ENVELOPE, &envelope))
            .ok()?;
        self.executions += 1;
        Some(Execution {
            stdout,
            stderr,
            exit,
        })
    }

    /// Executions started so far.
    pub(crate) fn executions(&self) -> u32 {
        self.executions
    }

    /// Why the link stopped: the last line the init wrote on its own stderr, else what was
    /// wrong with its frames; `None` while it works.
    pub(crate) fn why_stopped(&self) -> Option<String> {
        let said = self.init_said.lock().expect("init line").trim().to_owned();
        let broken = self.broken.lock().expect("link end").clone();
        broken.map(|frames| if said.is_empty() { frames } else { said })
    }
}

async fn write_envelopes(mut stdin: Sender, mut envelopes: mpsc::Receiver<Vec<u8>>) {
    while let Some(envelope) = envelopes.recv().await {
        if stdin.write_all(&envelope).await.is_err() {
            return;
        }
    }
    // The link is dropped with its sandbox: end of input ends the init.
}

/// Serves one execution after another from the init's frames, until the sandbox ends or says
/// something out of turn; then says why in `broken`, before the execution's streams end.
async fn read_frames(
    mut from: Receiver,
    mut turns: mpsc::Receiver<Sinks>,
    broken: Arc<Mutex<Option<String>>>,
    id: String,
) {
    let mut ready = false;
    while let Some(mut sinks) = turns.recv().await {
        if let Err(reason) = serve(&mut from, &mut sinks, &mut ready).await {
            tracing::info!(sandbox = %id, %reason, "a reused sandbox's link ended");
            *broken.lock().expect("link end") = Some(reason);
            return;
        }
        // Dropping the sinks ends the execution's streams.
    }
}

/// One execution's frames, up to its exit status.
async fn serve(from: &mut Receiver, sinks: &mut Sinks, ready: &mut bool) -> Result<(), String> {
    loop {
        let (kind, len) = header(from).await?;
        match kind {
            frame::READY if len == 0 && !*ready => *ready = true,
            frame::STDOUT | frame::STDERR if *ready => {
                let sink = match kind {
                    frame::STDOUT => &mut sinks.stdout,
                    _ => &mut sinks.stderr,
                };
                let copied = tokio::io::copy(&mut (&mut *from).take(u64::from(len)), sink)
                    .await
                    .map_err(|e| format!("relaying output: {e}"))?;
                if copied != u64::from(len) {
                    return Err("the sandbox ended inside a frame".into());
                }
            }
            frame::EXIT if *ready && len == 4 => {
                let mut code = [0u8; 4];
                from.read_exact(&mut code)
                    .await
                    .map_err(|e| format!("reading an exit status: {e}"))?;
                *ready = false;
                if let Some(exit) = sinks.exit.take() {
                    let _ = exit.send(i32::from_be_bytes(code));
                }
                return Ok(());
            }
            other => {
                return Err(format!(
                    "frame {:?} of {len} bytes out of turn",
                    char::from(other)
                ));
            }
        }
    }
}

async fn header(from: &mut Receiver) -> Result<(u8, u32), String> {
    let mut head = [0u8; 5];
    from.read_exact(&mut head)
        .await
        .map_err(|e| format!("the sandbox's output ended: {e}"))?;
    Ok((
        head[0],
        u32::from_be_bytes([head[1], head[2], head[3], head[4]]),
    ))
}

/// Keeps the last line of the init's stderr (bounded); the rest is dropped.
async fn keep_last_line(mut stderr: impl AsyncRead + Unpin, into: Arc<Mutex<String>>) {
    let mut buf = [0u8; 4096];
    let mut line = String::new();
    loop {
        let n = match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        for part in String::from_utf8_lossy(&buf[..n]).split_inclusive('\n') {
            if line.ends_with('\n') {
                line.clear();
            }
            if line.len() < INIT_LINE {
                line.extend(part.chars().take(INIT_LINE - line.len()));
            }
            if part.ends_with('\n') && !line.ends_with('\n') {
                line.push('\n');
            }
            *into.lock().expect("init line") = line.clone();
        }
    }
}
