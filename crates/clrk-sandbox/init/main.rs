//! clrk's init for a reused sandbox (`spec.sandboxReuse`): the container's first process,
//! which runs the agent once per execution, one execution after another, in one sandbox.
//!
//! Built on its own, statically linked and with the standard library only (clrk-sandbox's
//! build script), so it runs in any image. It talks to clrk over its stdin and stdout in
//! frames of `[kind: u8][length: u32, big-endian][bytes]`:
//!
//! - clrk → init: `E` the envelope of the next execution;
//! - init → clrk: `R` (the next agent is started and blocked on its stdin), `O` and `S` (a
//!   chunk of its stdout, stderr), `X` (its exit status as an i32: the code, or 128 + the
//!   signal that ended it).
//!
//! Between executions every other process of the sandbox is killed and reaped, and `/tmp`
//! is emptied, so an execution finds what a fresh sandbox would have, but for the guest
//! kernel's state. End of stdin ends the init, and with it the sandbox.

use std::io::{self, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;

/// The largest envelope accepted; clrk's own cap on a request body is 32 MiB.
const MAX_ENVELOPE: u32 = 64 << 20;
/// Bytes read from the agent's stdout or stderr at a time.
const CHUNK: usize = 64 << 10;

const SIGKILL: i32 = 9;

unsafe extern "C" {
    fn kill(pid: i32, signal: i32) -> i32;
    fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
    fn prctl(option: i32, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> i32;
    fn signal(signal: i32, handler: extern "C" fn(i32)) -> usize;
    fn _exit(code: i32) -> !;
}

const SIGTERM: i32 = 15;

/// As a sandbox's first process the init would ignore SIGTERM: when clrk stops the sandbox,
/// it ends at once, and the sandbox with it.
extern "C" fn stop(_: i32) {
    // SAFETY: `_exit` is async-signal-safe.
    #[allow(unsafe_code)]
    unsafe {
        _exit(128 + SIGTERM)
    }
}

const PR_SET_DUMPABLE: i32 = 4;

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if std::process::id() != 1 {
        // Killing "every other process" is only safe as a sandbox's first process.
        eprintln!("clrk-init: must run as a sandbox's first process (pid 1)");
        std::process::exit(2);
    }
    // An agent running as another user than root cannot open this process's stdio through
    // /proc and write frames of its own (the agent's programs are dumpable again after exec).
    // SAFETY: a plain system call on this process.
    #[allow(unsafe_code)]
    unsafe {
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        signal(SIGTERM, stop);
    }
    if argv.is_empty() {
        eprintln!("clrk-init: usage: clrk-init COMMAND [ARG...]");
        std::process::exit(2);
    }
    let out = Arc::new(Mutex::new(io::stdout()));
    let mut input = io::stdin().lock();
    if let Err(e) = serve(&argv, &mut input, &out) {
        eprintln!("clrk-init: {e}");
        std::process::exit(1);
    }
}

/// Runs executions until clrk closes stdin.
fn serve(
    argv: &[String],
    input: &mut impl Read,
    out: &Arc<Mutex<io::Stdout>>,
) -> io::Result<()> {
    loop {
        let mut agent = start(argv)?;
        send(out, b'R', &[])?;
        let Some(envelope) = read_frame(input)? else {
            let _ = agent.kill();
            let _ = agent.wait();
            return Ok(());
        };
        let status = run(&mut agent, envelope, out)?;
        // The next execution must not pay for what this one left.
        empty_tmp();
        send(out, b'X', &status.to_be_bytes())?;
    }
}

/// The agent, started and blocked on its stdin until its envelope comes.
fn start(argv: &[String]) -> io::Result<Child> {
    Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run {}: {e}", argv[0])))
}

/// Gives the agent its envelope, relays its output, and returns its status once it and
/// everything it left behind are gone.
fn run(
    agent: &mut Child,
    envelope: Vec<u8>,
    out: &Arc<Mutex<io::Stdout>>,
) -> io::Result<i32> {
    let mut stdin = agent.stdin.take().expect("piped");
    let writer = thread::spawn(move || {
        // An agent that exits without reading its input is no error.
        let _ = stdin.write_all(&envelope);
    });
    let relays = [
        relay(agent.stdout.take().expect("piped"), b'O', Arc::clone(out)),
        relay(agent.stderr.take().expect("piped"), b'S', Arc::clone(out)),
    ];
    let status = agent.wait()?;
    // What the agent left running goes with it, as when a fresh sandbox ends; that also
    // closes the pipes they held, so the relays end.
    kill_the_rest();
    for relay in relays {
        relay.join().map_err(|_| io::Error::other("a relay panicked"))??;
    }
    let _ = writer.join();
    Ok(code(status))
}

/// Copies `from` into frames of `kind` until it ends.
fn relay(
    mut from: impl Read + Send + 'static,
    kind: u8,
    out: Arc<Mutex<io::Stdout>>,
) -> thread::JoinHandle<io::Result<()>> {
    thread::spawn(move || {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            send(&out, kind, &buf[..n])?;
        }
    })
}

/// Kills every process but this one, and reaps them.
fn kill_the_rest() {
    // SAFETY: plain system calls; pid -1 signals every process but the caller, which is the
    // sandbox's first process (checked at start), so nothing outside the sandbox.
    #[allow(unsafe_code)]
    unsafe {
        kill(-1, SIGKILL);
        let mut status = 0;
        // Every child was just killed: wait for each until none is left (ECHILD).
        while waitpid(-1, &mut status, 0) > 0 {}
    }
}

/// Removes what the execution left in `/tmp`.
fn empty_tmp() {
    // A /tmp swapped for a link (to `/`, say) is not followed.
    if !std::fs::symlink_metadata("/tmp").is_ok_and(|m| m.is_dir()) {
        return;
    }
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let _ = match entry.file_type() {
            Ok(kind) if kind.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
    }
}

/// The exit code, or 128 + the signal, as a shell reports it.
fn code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

fn send(out: &Mutex<io::Stdout>, kind: u8, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(io::Error::other)?;
    let mut out = out.lock().map_err(|_| io::Error::other("stdout lock poisoned"))?;
    out.write_all(&[kind])?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(bytes)?;
    out.flush()
}

/// One `E` frame's bytes, or `None` at the end of input.
fn read_frame(input: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut head = [0u8; 5];
    match input.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    if head[0] != b'E' {
        return Err(io::Error::other(format!("unknown frame {:?}", head[0] as char)));
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    if len > MAX_ENVELOPE {
        return Err(io::Error::other(format!("envelope of {len} bytes is too large")));
    }
    let mut envelope = vec![0u8; len as usize];
    input.read_exact(&mut envelope)?;
    Ok(Some(envelope))
}
