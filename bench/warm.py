#!/usr/bin/env python3
"""Warm and cold invocations, throughput and warm-pool memory of clrk, against baselines timed in the same run.

Starts a release `clrk dev` in a temporary CLRK_DIR and applies the guide's word-count agent
(Python) and a busybox `cat` agent, each on runsc (`image: host:`) and on runc (an OCI
layout built here: busybox, or the host's python3 with only the files the agent loads, since
runc cannot run `host:`). Through the HTTP ingress it times, per agent and runtime, the time
to the first byte of the response and to its end:

- cold: the agent without a warm pool (every request boots a sandbox);
- warm: the same agent with `warmPoolSize: 4`, each request sent once the pool is full again
  and its sandboxes have had time to block on stdin.

Each in both response modes: buffered (the default: stdout held until the agent exits, so the
first byte comes with the last) and streaming (`spec.streaming.enabled: true`).

Baselines, same run, same rootfs and command:

- (a) the raw runtime: `runsc run` / `runc run` of an equivalent bundle, stdin piped, timed
  from the start of the runtime to the first stdout byte and to stdout EOF (cold ratio);
- (b) the pre-started floor: the same `run` started ahead, left until the agent is blocked
  reading stdin (runc: its /proc/PID/syscall; runsc: --settle seconds after the pid file), then
  timed from writing the envelope and closing stdin (warm ratio);
- (c) adnanh's `webhook` running the agent per request with no sandbox;
- (d) a plain fork/exec of the agent from this script.

Then sustained throughput (runsc, warm pool of 4, buffered) at concurrency 1, 4 and 16 against the
same agent without a pool, with `sandboxReuse` (one sandbox runs executions one after another),
and against webhook; and memory: clrk's RSS before and after a pool
fills, and the PSS of every process of the pool's sandboxes divided by their number.

Usage: sudo python3 bench/warm.py [-n 30] [--quick] [--skip-runc] [--skip-webhook] [--clrk PATH]
"""

import argparse
import collections
import http.client
import io
import select
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

import oci_layout

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENT_PY = os.path.join(REPO, "examples", "word-count", "agent.py")
TEXT = "hello world from clrk"
BODY = json.dumps({"text": TEXT}).encode()
# The envelope the baselines write to the agent's stdin, shaped like clrk's.
ENVELOPE = (json.dumps({
    "specversion": "1.0", "id": "bench", "source": "clrk://default/bench",
    "type": "dev.apoxy.clrk.taskagent.invoke", "datacontenttype": "application/json",
    "data": {"text": TEXT},
}) + "\n").encode()
API_VERSION = "clrk.apoxy.dev/v1alpha1"
# clrk's PATH inside sandboxes (crates/clrk-dispatch/src/launch.rs): `python3` resolves with it.
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PYTHON = shutil.which("python3", path=SANDBOX_PATH) or "/usr/bin/python3"
BUSYBOX = "/bin/busybox"
LEVELS = (1, 4, 16)
# (key, label, command under runsc with image host:, command in the runc image).
AGENTS = [
    ("wc", "word-count (python)", ["python3", AGENT_PY], ["/usr/bin/python3", "/app/agent.py"]),
    ("cat", "busybox cat", [BUSYBOX, "cat"], ["/bin/busybox", "cat"]),
]
MTIME = 1_700_000_000


def log(msg):
    print("warm.py: " + msg, file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# ---------------------------------------------------------------- images and rootfs


class Tree:
    """Files of a root filesystem, in tar order: dirs, regular files and symlinks by path."""

    def __init__(self):
        self.entries = {}  # relative path -> ("dir", mode) | ("file", bytes, mode) | ("link", target)

    def add_dir(self, path, mode=0o755):
        path = path.strip("/")
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            self.entries.setdefault("/".join(parts[:i]), ("dir", mode))

    def add_parent(self, path):
        parent = os.path.dirname(path.strip("/"))
        if parent:
            self.add_dir(parent)

    def add_file(self, path, data, mode):
        self.add_parent(path)
        self.entries[path.strip("/")] = ("file", data, mode)

    def add_link(self, path, target):
        self.add_parent(path)
        self.entries[path.strip("/")] = ("link", target)

    def add_host_path(self, path, depth=0):
        """Copies host `path` in, every symlink on the way recreated as a symlink."""
        if depth > 40:
            raise BenchError("symlink loop at " + path)
        parts = path.strip("/").split("/")
        cur = ""
        for i, part in enumerate(parts):
            cur += "/" + part
            if os.path.islink(cur):
                target = os.readlink(cur)
                self.add_link(cur, target)
                base = target if target.startswith("/") else os.path.join(os.path.dirname(cur), target)
                rest = parts[i + 1:]
                return self.add_host_path(os.path.normpath(os.path.join(base, *rest)), depth + 1)
        if os.path.isdir(cur):
            self.add_dir(cur)
        else:
            st = os.stat(cur)
            with open(cur, "rb") as f:
                self.add_file(cur, f.read(), st.st_mode & 0o7777)

    def tar(self):
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for path in sorted(self.entries, key=lambda p: (self.entries[p][0] != "dir", p)):
                entry = self.entries[path]
                info = tarfile.TarInfo(path)
                info.mtime = MTIME
                if entry[0] == "dir":
                    info.type, info.mode = tarfile.DIRTYPE, entry[1]
                    tar.addfile(info)
                elif entry[0] == "link":
                    info.type, info.linkname, info.mode = tarfile.SYMTYPE, entry[1], 0o777
                    tar.addfile(info)
                else:
                    info.size, info.mode = len(entry[1]), entry[2]
                    tar.addfile(info, io.BytesIO(entry[1]))
        return raw.getvalue()

    def unpack(self, root):
        for path in sorted(self.entries, key=lambda p: (self.entries[p][0] != "dir", p)):
            entry, dest = self.entries[path], os.path.join(root, path)
            if entry[0] == "dir":
                os.makedirs(dest, exist_ok=True)
                os.chmod(dest, entry[1])
            elif entry[0] == "link":
                os.symlink(entry[1], dest)
            else:
                with open(dest, "wb") as f:
                    f.write(entry[1])
                os.chmod(dest, entry[2])


def base_tree():
    tree = Tree()
    for d in ("proc", "dev", "sys", "tmp", "etc"):
        tree.add_dir(d)
    tree.entries["tmp"] = ("dir", 0o1777)
    return tree


def busybox_tree():
    tree = base_tree()
    tree.add_host_path(BUSYBOX)  # with /bin -> usr/bin on a merged-/usr host
    return tree


# Run by the host python3 with the agent: lists every file the agent's run loads.
PY_FILES = r"""
import io, json, os, runpy, sys
agent, out = sys.argv[1], sys.argv[2]
sys.argv = [agent]
stdout, sys.stdout = sys.stdout, io.StringIO()
runpy.run_path(agent, run_name="__main__")
sys.stdout = stdout
files = set()
for m in list(sys.modules.values()):
    for attr in ("__file__", "__cached__"):
        f = getattr(m, attr, None)
        if isinstance(f, str) and os.path.isabs(f) and os.path.exists(f):
            files.add(f)
with open(out, "w") as f:
    json.dump({"files": sorted(files), "prefix": sys.prefix, "version": "%d.%d" % sys.version_info[:2]}, f)
"""


def python_tree(work):
    """The host's python3 and only what the word-count agent loads, plus agent.py at /app."""
    out = os.path.join(work, "pyfiles.json")
    proc = subprocess.run(["/usr/bin/python3", "-c", PY_FILES, AGENT_PY, out], input=ENVELOPE,
                          capture_output=True)
    if proc.returncode != 0:
        raise BenchError("listing the python agent's files failed: " + proc.stderr.decode())
    info = json.load(open(out))
    tree = base_tree()
    lib = os.path.join(info["prefix"], "lib", "python" + info["version"])
    binaries = ["/usr/bin/python3", os.path.realpath("/usr/bin/python3")]
    binaries += [f for f in info["files"] if f.endswith(".so")]
    for path in ["/usr/bin/python3", os.path.join(lib, "os.py")] + info["files"]:
        tree.add_host_path(path)
    tree.add_dir(os.path.join(lib, "lib-dynload"))  # exec_prefix landmark
    for binary in binaries:  # shared libraries and the loader
        ldd = subprocess.run(["ldd", binary], capture_output=True, text=True)
        for line in ldd.stdout.splitlines():
            for word in line.split():
                if word.startswith("/") and os.path.exists(word):
                    tree.add_host_path(word)
    with open(AGENT_PY, "rb") as f:
        tree.add_file("app/agent.py", f.read(), 0o755)
    return tree


def write_images(layout, images):
    """An OCI layout with one single-layer image per tag; images: {tag: (Tree, entrypoint)}."""
    oci_layout.write_layout(layout, {
        tag: ([tree.tar()], entrypoint, ["PATH=" + SANDBOX_PATH])
        for tag, (tree, entrypoint) in images.items()
    })


# ---------------------------------------------------------------- raw runtime baselines

CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
        "CAP_SETUID", "CAP_NET_BIND_SERVICE"]


def bundle_config(runtime, rootfs, args, cid):
    """The config.json clrk writes (crates/clrk-sandbox/src/bundle.rs), without masks or limits."""
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False, "user": {"uid": 0, "gid": 0}, "args": args, "cwd": "/",
            "env": ["PATH=" + SANDBOX_PATH], "noNewPrivileges": True,
            "capabilities": {"bounding": CAPS, "effective": CAPS, "permitted": CAPS},
        },
        "root": {"path": rootfs, "readonly": runtime == "runc"},
        "hostname": "clrk",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "cgroupsPath": "clrk/" + cid,  # where clrk puts its own sandboxes' cgroups
        },
    }


def runtime_argv(runtime, root):
    if runtime == "runsc":
        return ["runsc", "--root", root, "--network=none", "--overlay2=root:memory"]
    return ["runc", "--root", root]


def read_all(fd):
    """(time of the first byte, time of EOF, bytes) of a pipe."""
    chunks, first = [], None
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return first, time.perf_counter(), b"".join(chunks)
        if first is None:
            first = time.perf_counter()
        chunks.append(chunk)


class RawRuntime:
    """`run` of a bundle equivalent to clrk's, cold (a) or pre-started (b)."""

    def __init__(self, bench, runtime, rootfs, args):
        self.bench, self.runtime, self.rootfs, self.args = bench, runtime, rootfs, args
        self.root = os.path.join(bench.work, "raw-" + runtime)
        self.bench.raw_roots.add((runtime, self.root))
        os.makedirs(self.root, exist_ok=True)

    def _start(self, pid_file=None):
        cid = "bench-raw-%d" % time.monotonic_ns()
        bundle = os.path.join(self.bench.work, "bundles", cid)
        os.makedirs(bundle)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(bundle_config(self.runtime, self.rootfs, self.args, cid), f)
        argv = runtime_argv(self.runtime, self.root) + ["run", "--bundle", bundle]
        if pid_file:
            argv += ["--pid-file", os.path.join(bundle, "pid")]
        err = open(os.path.join(bundle, "stderr"), "w+")
        proc = subprocess.Popen(argv + [cid], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        self.bench.procs.append(proc)
        return proc, bundle, err

    def _finish(self, proc, bundle, err, out):
        rc = proc.wait()
        self.bench.procs.remove(proc)
        err.seek(0)
        msg = err.read()
        err.close()
        shutil.rmtree(bundle, ignore_errors=True)
        if rc != 0:
            raise BenchError("%s run exited %d: %s" % (self.runtime, rc, msg.strip()))
        return out

    def cold(self):
        start = time.perf_counter()
        proc, bundle, err = self._start()
        proc.stdin.write(ENVELOPE)
        proc.stdin.close()
        first, end, out = read_all(proc.stdout.fileno())
        self._finish(proc, bundle, err, out)
        return first - start, end - start, out

    def prestarted(self, settle):
        proc, bundle, err = self._start(pid_file=True)
        pid_file = os.path.join(bundle, "pid")
        deadline = time.time() + 60
        while not os.path.exists(pid_file) or not open(pid_file).read().strip():
            if proc.poll() is not None or time.time() > deadline:
                err.seek(0)
                raise BenchError("%s run did not start: %s" % (self.runtime, err.read().strip()))
            time.sleep(0.01)
        pid = int(open(pid_file).read().strip())
        if self.runtime == "runc":
            if not wait_reading_stdin(pid, 30):
                raise BenchError("runc container %d never blocked on stdin" % pid)
        else:
            time.sleep(settle)
        start = time.perf_counter()
        proc.stdin.write(ENVELOPE)
        proc.stdin.close()
        first, end, out = read_all(proc.stdout.fileno())
        self._finish(proc, bundle, err, out)
        return first - start, end - start, out


    def prestarted_created(self, settle):
        """(b') runsc only: `create` with the agent's stdio, `start`, left `settle` s; then timed
        from writing the envelope to stdout EOF and on to the sandbox process's exit, which is
        when the program's status is known without a `run` process (clrk reads it then)."""
        assert self.runtime == "runsc"
        cid = "bench-cs-%d" % time.monotonic_ns()
        bundle = os.path.join(self.bench.work, "bundles", cid)
        os.makedirs(bundle)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(bundle_config(self.runtime, self.rootfs, self.args, cid), f)
        base = runtime_argv(self.runtime, self.root)
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        err = open(os.path.join(bundle, "stderr"), "w+")
        try:
            created = subprocess.run(base + ["create", "--bundle", bundle, "--pid-file", os.path.join(bundle, "pid"),
                                             cid], stdin=stdin_r, stdout=stdout_w, stderr=err)
            os.close(stdin_r)
            os.close(stdout_w)
            if created.returncode != 0 or subprocess.run(base + ["start", cid], stderr=err).returncode != 0:
                err.seek(0)
                raise BenchError("runsc create/start failed: %s" % err.read().strip())
            pidfd = os.pidfd_open(int(open(os.path.join(bundle, "pid")).read().strip()))
            time.sleep(settle)
            start = time.perf_counter()
            os.write(stdin_w, ENVELOPE)
            os.close(stdin_w)
            stdin_w = None
            first, _, out = read_all(stdout_r)
            select.select([pidfd], [], [], 60)
            end = time.perf_counter()
            os.close(pidfd)
        finally:
            for fd in (stdin_w, stdout_r):
                if fd is not None:
                    os.close(fd)
            subprocess.run(base + ["delete", "--force", cid], capture_output=True)
            err.close()
            shutil.rmtree(bundle, ignore_errors=True)
        return first - start, end - start, out


def reading_stdin(pid):
    """Is host process `pid` blocked in read(0, …)? (/proc/PID/syscall: number then args)."""
    try:
        with open("/proc/%d/syscall" % pid) as f:
            words = f.read().split()
    except OSError:
        return False
    return len(words) > 1 and words[0] == "0" and words[1] == "0x0"


def wait_reading_stdin(pid, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if reading_stdin(pid):
            return True
        time.sleep(0.005)
    return False


def fork_exec(argv):
    """(d): the agent as a child of this script, envelope on stdin."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={"PATH": SANDBOX_PATH})
    proc.stdin.write(ENVELOPE)
    proc.stdin.close()
    first, end, out = read_all(proc.stdout.fileno())
    if proc.wait() != 0:
        raise BenchError("%s exited %d" % (argv, proc.returncode))
    return first - start, end - start, out


# ---------------------------------------------------------------- HTTP


class Client:
    """POSTs to one URL; a new connection per request unless keep_alive."""

    def __init__(self, url, headers, body, keep_alive=False):
        assert url.startswith("http://")
        hostport, _, path = url[len("http://"):].partition("/")
        host, _, port = hostport.rpartition(":")
        self.host, self.port, self.path = host, int(port), "/" + path
        self.headers, self.body, self.keep_alive, self.conn = headers, body, keep_alive, None

    def post(self):
        """(seconds to the first body byte, seconds to the end, status, body)."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=300)
        start = time.perf_counter()
        try:
            self.conn.request("POST", self.path, self.body, self.headers)
            resp = self.conn.getresponse()
            first = resp.read(1)
            t_first = time.perf_counter()
            rest = resp.read()
            end = time.perf_counter()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            raise
        if not self.keep_alive or resp.will_close:
            self.conn.close()
            self.conn = None
        return t_first - start, end - start, resp.status, first + rest


def clrk_client(ingress, agent, keep_alive=False):
    return Client(ingress + "/", {"X-Clrk-TaskAgent": "default/" + agent, "Content-Type": "application/json"},
                  BODY, keep_alive)


def webhook_client(url, keep_alive=False):
    # The hook's wrapper adds the newline back.
    return Client(url, {"Content-Type": "application/json"}, ENVELOPE.rstrip(b"\n"), keep_alive)


def timed_post(client):
    first, full, status, out = client.post()
    if status != 200:
        raise BenchError("HTTP %d from %s: %s" % (status, client.path, out[:300]))
    return first, full, out


def load(make_client, concurrency, duration, probe=None):
    """Closed-loop load: (requests/s, p50 s, p99 s, errors, CPU) over `duration` seconds, counting
    the requests that end in that window, which opens after a ramp of min(2 s, duration / 2).
    `errors` is an `Errors`: how many failed, by HTTP status or exception. CPU is what `probe`
    (a function returning a tuple of CPU seconds) counted over the window, per request, or None."""
    lock, latencies, errors = threading.Lock(), [], Errors()
    opens = time.perf_counter() + min(2.0, duration / 2)
    stop = opens + duration
    probed = []

    def prober():
        for at in (opens, stop):
            time.sleep(max(0.0, at - time.perf_counter()))
            probed.append(probe())

    def worker():
        client = make_client()
        while time.perf_counter() < stop:
            try:
                _, full, status, _ = client.post()
                why = None if status == 200 else "HTTP %d" % status
            except (OSError, http.client.HTTPException) as e:
                why, full = type(e).__name__, 0
            end = time.perf_counter()
            with lock:
                if why:
                    errors[why] += 1
                elif opens <= end <= stop:
                    latencies.append(full)
        if client.conn:
            client.conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    if probe:
        threads.append(threading.Thread(target=prober, daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration + 300)
    cpu = None
    if len(probed) == 2 and latencies:
        cpu = tuple((b - a) / len(latencies) for a, b in zip(*probed))
    return len(latencies) / duration, pct(latencies, 50), pct(latencies, 99), errors, cpu


TICK = os.sysconf("SC_CLK_TCK")


def host_cpu():
    """CPU seconds the whole host has spent busy (all but idle and iowait), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICK


def process_cpu(pid):
    """(own, reaped children's) CPU seconds of process `pid`, from /proc/PID/stat."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return 0.0, 0.0
    f = stat[stat.rindex(")") + 2:].split()
    return (int(f[11]) + int(f[12])) / TICK, (int(f[13]) + int(f[14])) / TICK


class RawClient:
    """A raw `runsc run` per request, shaped like `Client` for `load`."""

    conn = None

    def __init__(self, raw):
        self.raw = raw

    def post(self):
        first, full, out = self.raw.cold()
        return first, full, 200, out


class Errors(collections.Counter):
    """Failed requests by HTTP status or exception; `%d` gives their number, `str` the detail,
    e.g. "2 (HTTP 429: 2)"."""

    def __int__(self):
        return sum(self.values())

    def __index__(self):
        return int(self)

    def __str__(self):
        detail = ", ".join("%s: %d" % kv for kv in sorted(self.items()))
        return "%d (%s)" % (int(self), detail) if self else "0"


def pct(samples, p):
    """Nearest-rank percentile; None without samples."""
    if not samples:
        return None
    s = sorted(samples)
    return s[max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=30):
    deadline = time.time() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                raise BenchError(what + " did not start")
            time.sleep(0.05)


# ---------------------------------------------------------------- memory


def processes():
    """{pid: (ppid, cmdline)} of every process."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
            with open("/proc/%s/cmdline" % name, "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        out[int(name)] = (ppid, cmdline)
    return out


def kib(pid, field, path="status"):
    try:
        with open("/proc/%d/%s" % (pid, path)) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def sandbox_pss(ids):
    """Sum of Pss (KiB) over processes whose command line names one of `ids`, and their
    descendants (runsc's sandbox, gofer and ptrace stubs; runc's container processes)."""
    procs = processes()
    members = {pid for pid, (_, cmd) in procs.items() if any(i in cmd for i in ids)}
    grew = True
    while grew:
        new = {pid for pid, (ppid, _) in procs.items() if ppid in members and pid not in members}
        members |= new
        grew = bool(new)
    return sum(kib(pid, "Pss", "smaps_rollup") for pid in members), len(members)


# ---------------------------------------------------------------- clrk


class Clrk:
    def __init__(self, binary, clrk_dir):
        self.binary, self.dir = binary, clrk_dir
        self.env = {**os.environ, "CLRK_DIR": clrk_dir, "RUST_LOG": "warn"}
        self.log_path = os.path.join(clrk_dir, "server.log")
        self.data = os.path.join(clrk_dir, "dev")
        self.roots = {"runsc": os.path.join(self.data, "sandboxes", "state"),
                      "runc": os.path.join(self.data, "sandboxes-runc", "state")}
        self.proc = None
        self.first_seen = {}

    def start(self):
        logf = open(self.log_path, "w")
        self.proc = subprocess.Popen([self.binary, "dev", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0"],
                                     env=self.env, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
        endpoints = os.path.join(self.dir, "dev.json")
        deadline = time.time() + 60
        while not os.path.exists(endpoints):
            if self.proc.poll() is not None or time.time() > deadline:
                raise BenchError("clrk dev did not start: " + open(self.log_path).read()[-2000:])
            time.sleep(0.05)
        time.sleep(0.1)
        self.ingress = json.load(open(endpoints))["ingress"]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def rss(self):
        return kib(self.proc.pid, "VmRSS")

    def _cli(self, verb, doc):
        path = os.path.join(self.dir, "%s-%d.json" % (doc["metadata"]["name"], time.monotonic_ns()))
        with open(path, "w") as f:
            json.dump(doc, f)
        out = subprocess.run([self.binary, verb, "-f", path], env=self.env, capture_output=True, text=True)
        if out.returncode != 0:
            raise BenchError("clrk %s %s: %s%s" % (verb, doc["metadata"]["name"], out.stdout, out.stderr))

    def apply(self, doc):
        self._cli("apply", doc)

    def delete(self, doc):
        self._cli("delete", doc)

    def containers(self, runtime):
        """{id: pid} of the live (created or running) containers of `runtime`."""
        root = self.roots[runtime]
        if not os.path.isdir(root):
            return {}
        out = subprocess.run([runtime, "--root", root, "list", "--format=json"], capture_output=True, text=True)
        if out.returncode != 0:
            return {}
        listed = json.loads(out.stdout or "null") or []
        return {c["id"]: c.get("pid", 0) for c in listed if c.get("status") in ("created", "running")}

    def wait_pool(self, runtime, target, prev, settle, timeout, give_up=None):
        """Waits until `target` live containers exist, not all of them from `prev` (the used one
        was replaced), each ready: blocked on stdin (runc) or `settle` s old (runsc). Returns the
        ids seen last (fewer than `target` on timeout)."""
        start = time.time()
        while True:
            live = self.containers(runtime)
            now = time.time()
            for cid in live:
                self.first_seen.setdefault(cid, now)
            full = len(live) >= target and not (prev and prev <= set(live))
            if full and target:
                if runtime == "runc":
                    ready = all(reading_stdin(pid) for pid in live.values())
                else:
                    ready = all(now - self.first_seen[c] >= settle for c in live)
                if ready:
                    return set(live)
            elif full:
                return set(live)
            if now - start > timeout or (give_up and not live and now - start > give_up):
                return set(live)
            time.sleep(0.05)

    def wait_empty(self, runtime, timeout=60):
        deadline = time.time() + timeout
        while self.containers(runtime) and time.time() < deadline:
            time.sleep(0.1)


def agent_doc(name, image, command, runtime, pool, streaming=False, reuse=False):
    spec = {"template": {"spec": {"image": image, "command": command}}}
    if reuse:
        spec["sandboxReuse"] = {}  # the defaults: 100 executions, 10 minutes
    if streaming:
        spec["streaming"] = {"enabled": True}
    if runtime == "runc":
        spec["workerPoolRef"] = "runc"
    if pool:
        spec["warmPoolSize"] = pool
    return {"apiVersion": API_VERSION, "kind": "TaskAgent", "metadata": {"name": name}, "spec": spec}


# ---------------------------------------------------------------- the run


class Bench:
    def __init__(self, args, work):
        self.args, self.work = args, work
        self.procs = []  # runtime and agent processes to kill on the way out
        self.raw_roots = set()
        self.clrk = None
        self.webhook = None
        self.latency = {}  # (agent, row) -> (ttfb samples, full samples)
        self.notes = []
        self.memory = []
        self.held = {}  # (agent, runtime) -> sandboxes the warm pool held once filled
        self.tput = {}  # (agent, system, level) -> (rps, p50, p99, errors)

    # -- helpers

    def sample(self, key, fn, check):
        fn()  # one unmeasured run: page cache, image unpack, pool claim path
        firsts, fulls = [], []
        for _ in range(self.args.n):
            first, full, out = fn()
            if check not in out:
                raise BenchError("%s: unexpected output %r" % (key, out[:300]))
            firsts.append(first)
            fulls.append(full)
        self.latency[key] = (firsts, fulls)
        log("%-40s TTFB p50 %6.1f ms, full p50 %6.1f ms" % (
            " / ".join(key), statistics.median(firsts) * 1e3, statistics.median(fulls) * 1e3))

    def images(self):
        """{(agent, runtime): (image, command, raw rootfs, raw argv)}."""
        out = {}
        trees, entry = {"cat": busybox_tree()}, {"cat": ["/bin/busybox", "cat"]}
        if not self.args.skip_runc:
            try:
                trees["wc"], entry["wc"] = python_tree(self.work), ["/usr/bin/python3", "/app/agent.py"]
            except (BenchError, OSError) as e:
                self.notes.append("word-count under runc not measured: no python rootfs (%s)" % e)
            layout = os.path.join(self.work, "layout")
            write_images(layout, {k: (trees[k], entry[k]) for k in trees})
            for key, tree in trees.items():
                rootfs = os.path.join(self.work, "rootfs-" + key)
                tree.unpack(rootfs)
                out[(key, "runc")] = ("oci:%s:%s" % (layout, key), entry[key], rootfs, entry[key])
        for key, _, host_cmd, _ in AGENTS:
            out[(key, "runsc")] = ("host:", host_cmd, "/", host_cmd)
        return out

    def start_webhook(self):
        hooks = []
        for key, _, host_cmd, _ in AGENTS:
            script = os.path.join(self.work, "hook-%s.sh" % key)
            argv = " ".join("'%s'" % a for a in [shutil.which(host_cmd[0], path=SANDBOX_PATH)] + host_cmd[1:])
            with open(script, "w") as f:
                f.write("#!/bin/sh\n# webhook passes the raw request body as $1\nprintf '%%s\\n' \"$1\" | exec %s\n"
                        % argv)
            os.chmod(script, 0o755)
            hooks.append({
                "id": key, "execute-command": script, "http-methods": ["POST"],
                "include-command-output-in-response": True,
                "pass-arguments-to-command": [{"source": "raw-request-body"}],
            })
        path = os.path.join(self.work, "hooks.json")
        with open(path, "w") as f:
            json.dump(hooks, f)
        port = free_port()
        self.webhook = subprocess.Popen(["webhook", "-hooks", path, "-ip", "127.0.0.1", "-port", str(port)],
                                        stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.work, "webhook.log"), "w"))
        wait_port(port, self.webhook, "webhook")
        self.webhook_url = "http://127.0.0.1:%d/hooks/" % port

    # -- phases

    def latency_cells(self, images):
        a = self.args
        for key, label, _, _ in AGENTS:
            check = b'"word_count": 4' if key == "wc" else TEXT.encode()
            for runtime in self.runtimes:
                if (key, runtime) not in images:
                    continue
                image, command, rootfs, raw_argv = images[(key, runtime)]
                # cold through clrk, then (a)
                cold = agent_doc("cold-%s-%s" % (key, runtime), image, command, runtime, 0)
                self.clrk.apply(cold)
                client = clrk_client(self.clrk.ingress, cold["metadata"]["name"])
                self.sample((key, "clrk cold", runtime), lambda: timed_post(client), check)
                # The response mode is no part of the revision: the same agent, streaming.
                self.clrk.apply(agent_doc(cold["metadata"]["name"], image, command, runtime, 0, True))
                self.sample((key, "clrk cold streaming", runtime), lambda: timed_post(client), check)
                raw = RawRuntime(self, runtime, rootfs, raw_argv)
                self.sample((key, "raw cold", runtime), raw.cold, check)
                # warm through clrk (and the pool's memory), then (b)
                warm = agent_doc("warm-%s-%s" % (key, runtime), image, command, runtime, a.pool)
                self.fill_pool(key, label, runtime, warm)
                client = clrk_client(self.clrk.ingress, warm["metadata"]["name"])
                state = {"ids": self.pool_ids}

                def warm_post():
                    state["ids"] = self.clrk.wait_pool(runtime, self.pool_target, state["ids"], a.settle, 60)
                    return timed_post(client)

                self.sample((key, "clrk warm", runtime), warm_post, check)
                self.clrk.apply(agent_doc(warm["metadata"]["name"], image, command, runtime, a.pool, True))
                self.sample((key, "clrk warm streaming", runtime), warm_post, check)
                self.drop_pool(runtime, warm)
                self.sample((key, "raw warm", runtime), lambda: raw.prestarted(a.settle), check)
                if runtime == "runsc":
                    self.sample((key, "raw warm created", runtime), lambda: raw.prestarted_created(a.settle), check)
            if self.webhook:
                hook = webhook_client(self.webhook_url + key)
                self.sample((key, "webhook", ""), lambda: timed_post(hook), check)
            argv = [PYTHON, AGENT_PY] if key == "wc" else [BUSYBOX, "cat"]
            self.sample((key, "fork", ""), lambda: fork_exec(argv), check)

    def fill_pool(self, key, label, runtime, doc):
        a = self.args
        before = self.clrk.rss()
        self.clrk.apply(doc)
        ids = self.clrk.wait_pool(runtime, a.pool, set(), a.settle, 120, give_up=a.fill_timeout)
        after = self.clrk.rss()
        pss, nprocs = sandbox_pss(ids) if ids else (0, 0)
        self.pool_ids, self.pool_target = ids, min(len(ids), a.pool)
        self.memory.append((label, runtime, len(ids), before, after, pss, nprocs))
        self.held[(key, runtime)] = len(ids)
        if len(ids) < a.pool:
            self.notes.append("%s on %s: the warm pool held %d of %d sandboxes (%s), so its \"warm\" requests "
                              "were %s" % (label, runtime, len(ids), a.pool,
                                           "no sandbox within --fill-timeout: warm pools have no effect in "
                                           "this build" if not ids else "timed out filling",
                                           "cold" if not ids else "partly cold"))
        log("%s/%s warm pool: %d sandboxes, clrk RSS %d -> %d KiB, PSS %d KiB over %d processes" % (
            label, runtime, len(ids), before, after, pss, nprocs))

    def drop_pool(self, runtime, doc):
        self.clrk.delete(doc)
        self.clrk.wait_empty(runtime)

    def throughput(self, images):
        a = self.args
        for key, label, _, _ in AGENTS:
            image, command, rootfs, raw_argv = images[(key, "runsc")]
            warm = agent_doc("tput-warm-%s" % key, image, command, "runsc", a.pool)
            self.fill_pool_quiet(warm)
            name = warm["metadata"]["name"]
            for level in LEVELS:
                self.clrk.wait_pool("runsc", self.pool_target, None, a.settle, 60)
                self.run_load(key, "clrk warm", level, lambda: clrk_client(self.clrk.ingress, name, True))
            self.drop_pool("runsc", warm)
            reused = agent_doc("tput-reuse-%s" % key, image, command, "runsc", a.pool, reuse=True)
            self.fill_pool_quiet(reused)
            name = reused["metadata"]["name"]
            for level in LEVELS:
                self.clrk.wait_pool("runsc", self.pool_target, None, a.settle, 60)
                self.run_load(key, "clrk reuse", level, lambda: clrk_client(self.clrk.ingress, name, True))
            self.drop_pool("runsc", reused)
            cold = "cold-%s-runsc" % key
            for level in LEVELS:
                self.run_load(key, "clrk cold", level, lambda: clrk_client(self.clrk.ingress, cold, True))
            raw = RawRuntime(self, "runsc", rootfs, raw_argv)
            for level in LEVELS:
                self.run_load(key, "raw run", level, lambda: RawClient(raw))
            if self.webhook:
                for level in LEVELS:
                    self.run_load(key, "webhook", level, lambda: webhook_client(self.webhook_url + key, True))

    def fill_pool_quiet(self, doc):
        self.clrk.apply(doc)
        ids = self.clrk.wait_pool("runsc", self.args.pool, set(), self.args.settle, 120,
                                  give_up=self.args.fill_timeout)
        self.pool_target = min(len(ids), self.args.pool)
        if len(ids) < self.args.pool:
            self.notes.append("throughput of %s: the warm pool held %d of %d sandboxes" % (
                doc["metadata"]["name"], len(ids), self.args.pool))

    def run_load(self, key, system, level, make_client):
        server = self.clrk.proc.pid

        def probe():
            # clrk's own (the server process), the runtime commands it reaped, this script's
            # children (the raw loop's `runsc run`, each with its sandbox), the whole host.
            own, reaped = process_cpu(server)
            t = os.times()
            return own, reaped, t.children_user + t.children_system, host_cpu()

        res = load(make_client, level, self.args.duration, probe)
        self.tput[(key, system, level)] = res
        log("throughput %s %s c=%d: %.1f req/s, %s errors" % (key, system, level, res[0], res[3]))

    def run(self):
        a = self.args
        self.runtimes = ["runsc"] + ([] if a.skip_runc else ["runc"])
        log("building images in " + self.work)
        images = self.images()
        self.clrk = Clrk(a.clrk, os.path.join(self.work, "clrk"))
        os.makedirs(self.clrk.dir)
        self.clrk.start()
        if not a.skip_runc:
            self.clrk.apply({"apiVersion": API_VERSION, "kind": "WorkerPool", "metadata": {"name": "runc"},
                             "spec": {"runtime": "runc"}})
        if not a.skip_webhook:
            self.start_webhook()
        self.latency_cells(images)
        self.throughput(images)

    def cleanup(self):
        for proc in list(self.procs):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        if self.webhook and self.webhook.poll() is None:
            self.webhook.terminate()
            self.webhook.wait()
        roots = set(self.raw_roots)
        if self.clrk:
            self.clrk.stop()
            roots |= {(rt, root) for rt, root in self.clrk.roots.items()}
        for runtime, root in roots:  # whatever a crash left behind
            if not os.path.isdir(root):
                continue
            out = subprocess.run([runtime, "--root", root, "list", "--quiet"], capture_output=True, text=True)
            for cid in out.stdout.split():
                subprocess.run([runtime, "--root", root, "delete", "--force", cid], capture_output=True)

    # -- tables

    def print_tables(self):
        a = self.args
        ms = lambda s: "%.1f ms" % (s * 1e3) if s < 0.1 else "%.0f ms" % (s * 1e3)
        print("| latency (n=%d) | TTFB p50 | TTFB p99 | full p50 | full p99 | ratio TTFB p50 | ratio full p50 |"
              % a.n)
        print("|---|---|---|---|---|---|---|")
        names = {"clrk cold": "clrk cold, buffered", "clrk cold streaming": "clrk cold, streaming",
                 "raw cold": "(a) raw `%s run`",
                 "clrk warm": "clrk warm (pool %d), buffered" % a.pool,
                 "clrk warm streaming": "clrk warm (pool %d), streaming" % a.pool,
                 "raw warm": "(b) pre-started `%s run`, stdin blocked",
                 "raw warm created": "(b') pre-started `%s create` + `start`, stdin blocked, to the sandbox's exit"}
        for key, label, _, _ in AGENTS:
            print("| **%s** | | | | | | |" % label)
            for runtime in self.runtimes:
                for row, base in (("clrk cold", "raw cold"), ("clrk cold streaming", "raw cold"),
                                  ("raw cold", None), ("clrk warm", "raw warm"),
                                  ("clrk warm streaming", "raw warm"), ("raw warm", None),
                                  ("raw warm created", "raw warm")):
                    cell = self.latency.get((key, row, runtime))
                    if not cell:
                        continue
                    name = names[row] % runtime if "%s" in names[row] else "%s, %s" % (names[row], runtime)
                    if row.startswith("clrk warm") and self.held.get((key, runtime), 0) < a.pool:
                        name += " ⚠ held %d" % self.held.get((key, runtime), 0)
                    ratio = ["1.00×", "1.00×"] if base is None else ["–", "–"]
                    if base and (key, base, runtime) in self.latency:
                        b = self.latency[(key, base, runtime)]
                        ratio = ["%.2f× (%s)" % (statistics.median(cell[i]) / statistics.median(b[i]),
                                                 "a" if base == "raw cold" else "b") for i in (0, 1)]
                    print("| %s | %s | %s | %s | %s | %s | %s |" % (
                        name, ms(statistics.median(cell[0])), ms(pct(cell[0], 99)),
                        ms(statistics.median(cell[1])), ms(pct(cell[1], 99)), ratio[0], ratio[1]))
            for row, name in (("webhook", "(c) `webhook`, no sandbox"), ("fork", "(d) fork/exec, no sandbox")):
                cell = self.latency.get((key, row, ""))
                if cell:
                    print("| %s | %s | %s | %s | %s | | |" % (
                        name, ms(statistics.median(cell[0])), ms(pct(cell[0], 99)),
                        ms(statistics.median(cell[1])), ms(pct(cell[1], 99))))
        print()
        print("| throughput, runsc (%g s per cell after a ramp) | concurrency | clrk warm (pool %d) req/s | p50 | p99 "
              "| clrk cold req/s | raw `runsc run` loop req/s | `webhook` req/s | clrk `sandboxReuse` req/s "
              "| warm / cold | cold / raw | warm / webhook | reuse / warm |" % (a.duration, a.pool))
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        rate = lambda r: "–" if not r else ("%.1f" % r[0]) + (" (%s err)" % r[3] if r[3] else "")
        ratio = lambda x, y: "%.2f×" % (x[0] / y[0]) if x and y and y[0] else "–"
        for key, label, _, _ in AGENTS:
            for level in LEVELS:
                w = self.tput.get((key, "clrk warm", level))
                c = self.tput.get((key, "clrk cold", level))
                r = self.tput.get((key, "raw run", level))
                h = self.tput.get((key, "webhook", level))
                u = self.tput.get((key, "clrk reuse", level))
                if not w:
                    continue
                print("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    label, level, rate(w), ms(w[1]) if w[1] else "–", ms(w[2]) if w[2] else "–",
                    rate(c), rate(r), rate(h), rate(u), ratio(w, c), ratio(c, r), ratio(w, h), ratio(u, w)))
        print()
        print("| CPU per execution, runsc (same cells) | concurrency | clrk warm: clrk / reaped / host "
              "| clrk cold: clrk / reaped / host | raw `runsc run` loop: runtime / host "
              "| clrk `sandboxReuse`: clrk / host |")
        print("|---|---|---|---|---|---|")
        cpu = lambda r, i: "%.0f ms" % (r[4][i] * 1e3) if r and r[4] else "–"
        for key, label, _, _ in AGENTS:
            for level in LEVELS:
                w, c, r, u = (self.tput.get((key, s, level))
                              for s in ("clrk warm", "clrk cold", "raw run", "clrk reuse"))
                if not (w or c or r):
                    continue
                print("| %s | %d | %s / %s / %s | %s / %s / %s | %s / %s | %s / %s |" % (
                    label, level, cpu(w, 0), cpu(w, 1), cpu(w, 3), cpu(c, 0), cpu(c, 1), cpu(c, 3),
                    cpu(r, 2), cpu(r, 3), cpu(u, 0), cpu(u, 3)))
        print()
        print("CPU: clrk = the server process's own; reaped = the runtime commands it ran and waited "
              "for (`create`, `start`, `delete`, …; a sandbox started with `create` is not its child, so "
              "its kernel's CPU is only in host); runtime = `runsc run` with its sandbox, as this script "
              "reaped them; host = every CPU's busy time over the cell, whatever ran (other load included), "
              "per execution.")
        print()
        print("| warm pool memory | sandboxes | clrk RSS before | clrk RSS after | PSS per warm sandbox |")
        print("|---|---|---|---|---|")
        for label, runtime, count, before, after, pss, nprocs in self.memory:
            per = "%.1f MiB (%d processes)" % (pss / count / 1024, nprocs) if count else "–"
            print("| %s, %s | %d | %.1f MiB | %.1f MiB | %s |" % (label, runtime, count, before / 1024,
                                                                 after / 1024, per))
        if self.notes:
            print()
            for note in self.notes:
                print("- " + note)


def prerequisites(args):
    missing = []
    if os.geteuid() != 0:
        missing.append("root (run with sudo: the runtimes need it)")
    if not os.access(args.clrk, os.X_OK):
        missing.append("%s (cargo build --release -p clrk, or pass --clrk PATH)" % args.clrk)
    tools = ["runsc", "ldd"] + ([] if args.skip_runc else ["runc"]) + ([] if args.skip_webhook else ["webhook"])
    for tool in tools:
        if not shutil.which(tool):
            hint = {"webhook": "apt-get install -y webhook, or pass --skip-webhook",
                    "runc": "apt-get install -y runc, or pass --skip-runc"}.get(tool, "install it")
            missing.append("%s in PATH (%s)" % (tool, hint))
    for path in (BUSYBOX, "/usr/bin/python3", AGENT_PY):
        if not os.path.exists(path):
            missing.append(path)
    if missing:
        sys.exit("warm.py: missing prerequisites:\n  " + "\n  ".join(missing))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=None, help="samples per latency cell (default 30, 5 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a smoke test: n=5 and 2 s per throughput cell")
    parser.add_argument("--duration", type=float, default=None, help="seconds per throughput cell (default 10)")
    parser.add_argument("--pool", type=int, default=4, help="warmPoolSize of the warm agents (default 4)")
    parser.add_argument("--settle", type=float, default=1.5,
                        help="seconds a fresh runsc sandbox is given to block on stdin (default 1.5)")
    parser.add_argument("--fill-timeout", type=float, default=15,
                        help="give up on a warm pool after this many seconds with no sandbox (default 15)")
    parser.add_argument("--skip-runc", action="store_true", help="measure runsc only")
    parser.add_argument("--skip-webhook", action="store_true", help="no webhook baseline")
    parser.add_argument("--clrk", default=os.path.join(REPO, "target", "release", "clrk"),
                        help="the clrk binary (default target/release/clrk)")
    args = parser.parse_args()
    args.n = args.n or (5 if args.quick else 30)
    args.duration = args.duration or (2.0 if args.quick else 10.0)
    args.clrk = os.path.abspath(args.clrk)
    prerequisites(args)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit("warm.py: terminated"))
    work = tempfile.mkdtemp(prefix="clrk-bench-warm-", dir="/var/tmp")
    bench = Bench(args, work)
    try:
        bench.run()
    except BenchError as e:
        log("error: %s" % e)
        if bench.clrk and os.path.exists(bench.clrk.log_path):
            log("last lines of clrk's log:\n" + open(bench.clrk.log_path).read()[-2000:])
        sys.exit(1)
    finally:
        bench.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    bench.print_tables()


if __name__ == "__main__":
    main()
