#!/usr/bin/env python3
"""What the server → worker hop costs: a cluster against `clrk dev`, measured in one run.

Starts, from a release build, on a bridge and network namespaces it creates (names starting
with `cbn`, removed at exit, Ctrl-C included):

- PostgreSQL (initdb in a temp dir, run as the `postgres` user) on a free port of the
  bridge's address, and a `docker-registry` beside it holding a busybox image (pushed with
  skopeo from an OCI layout written by oci_layout.py);
- one `clrk server` in a namespace of its own and three `clrk worker`s (pool `runc`) in
  three more, all pulling from that registry;
- then, alone, a `clrk dev` in the root namespace pulling the same image.

Both get a WorkerPool `runc` (runtime: runc) and a busybox `cat` agent with the same
`warmPoolSize` (spread over the three workers in the cluster). Measured through the HTTP
ingress of the server and of `clrk dev`, each with its pool full:

1. latency of warm requests one at a time (p50, p99), and the p50 the hop adds;
2. requests per second at concurrency 16 (closed loop, as bench/warm.py).

Prints a Markdown table.

Usage: sudo python3 bench/cluster.py [-n 300] [--duration 10] [--pool 18] [--clrk PATH]
"""

import argparse
import glob
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import warm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
API_VERSION = "clrk.apoxy.dev/v1alpha1"
PREFIX = "cbn"
WORKERS = 3
CONCURRENCY = 16
INGRESS, API, LINK, HEALTH = 8080, 7070, 7071, 7072
# Every step execs the next, so the process started is the program; the cgroup mounts are
# bound back over the fresh sysfs `ip netns exec` mounts (the runtimes need them).
IN_NETNS = ("mount --rbind /sys/fs/cgroup /mnt && exec ip netns exec \"$0\" sh -c "
            "'mount --rbind /mnt /sys/fs/cgroup && exec \"$@\"' sh \"$@\"")


def log(msg):
    print("cluster.py: " + msg, file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


def run(*argv, check=True, **kw):
    out = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and out.returncode != 0:
        raise BenchError("%s: %s%s" % (" ".join(argv), out.stdout, out.stderr))
    return out


def free_port(ip):
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def wait_until(what, check, timeout=120, proc=None, log_path=None):
    deadline = time.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if (proc and proc.poll() is not None) or time.time() > deadline:
            tail = open(log_path).read()[-3000:] if log_path and os.path.exists(log_path) else ""
            raise BenchError("%s did not happen\n%s" % (what, tail))
        time.sleep(0.1)


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status
    except Exception:  # noqa: BLE001 (not up yet)
        return 0


def connects(ip, port):
    try:
        socket.create_connection((ip, port), timeout=1).close()
        return True
    except OSError:
        return False


class Network:
    """A bridge `cbnbr<K>` at 10.249.K.1/24 and namespaces `cbn-<K>-<i>` at 10.249.K.(10 + i)."""

    def __init__(self):
        self.namespaces, self.veths, self.bridge = [], [], None

    def create(self, count):
        """Made step by step, so that `remove` finds whatever a failure left half made."""
        used = run("ip", "-4", "-o", "addr").stdout
        self.k = next((k for k in range(1, 250) if " 10.249.%d." % k not in used), None)
        if self.k is None:
            raise BenchError("no free 10.249.K.0/24 subnet")
        self.bridge = "%sbr%d" % (PREFIX, self.k)
        self.gateway = "10.249.%d.1" % self.k
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", self.gateway + "/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        for i in range(count):
            ns, veth = "%s-%d-%d" % (PREFIX, self.k, i), "%s%dh%d" % (PREFIX, self.k, i)
            run("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self.veths.append(veth)
            run("ip", "link", "set", veth, "master", self.bridge, "up")
            run("ip", "netns", "exec", ns, "ip", "addr", "add", "%s/24" % self.ip(i), "dev", "eth0")
            run("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
            run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")

    def ip(self, i):
        return "10.249.%d.%d" % (self.k, 10 + i)

    def command(self, i, argv):
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", IN_NETNS,
                self.namespaces[i]] + argv

    def remove(self):
        for ns in self.namespaces:
            # Whatever still runs in it (a worker that did not stop) goes with it.
            pids = run("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                run("kill", "-9", pid, check=False)
            run("ip", "netns", "del", ns, check=False)
        for veth in self.veths:
            run("ip", "link", "del", veth, check=False)
        if self.bridge:
            run("ip", "link", "del", self.bridge, check=False)


class Bench:
    def __init__(self, args, work):
        self.args, self.work = args, work
        self.procs = []  # (name, Popen, log path), stopped in reverse order
        self.net = None
        self.pg_data = None

    # -- processes

    def spawn(self, name, argv, env=None):
        path = os.path.join(self.work, name + ".log")
        logf = open(path, "w")
        proc = subprocess.Popen(argv, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL,
                                env={**os.environ, "RUST_LOG": "warn", **(env or {})},
                                start_new_session=True)  # Ctrl-C reaches us, we stop them
        self.procs.append((name, proc, path))
        return proc, path

    def stop(self, name):
        for n, proc, _ in self.procs:
            if n == name and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def cleanup(self):
        for name, proc, _ in reversed(self.procs):
            if proc.poll() is None:
                self.stop(name)
        if self.pg_data:
            run("runuser", "-u", "postgres", "--", self.pg_bin("pg_ctl"), "-D", self.pg_data, "-m",
                "immediate", "stop", check=False)
        if self.net:
            self.net.remove()

    # -- services

    def pg_bin(self, tool):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/" + tool))
        if not found:
            raise BenchError("no PostgreSQL under /usr/lib/postgresql (scripts/setup.sh installs it)")
        return found[-1]

    def start_postgres(self):
        home = os.path.join(self.work, "pg")
        os.makedirs(home)
        shutil.chown(home, "postgres", "postgres")
        self.pg_data = os.path.join(home, "data")
        run("runuser", "-u", "postgres", "--", self.pg_bin("initdb"), "-D", self.pg_data, "-A", "trust",
            "-U", "postgres", "--no-sync", cwd=home)
        with open(os.path.join(self.pg_data, "pg_hba.conf"), "a") as f:
            f.write("host all all samenet trust\n")
        port = free_port(self.net.gateway)
        run("runuser", "-u", "postgres", "--", self.pg_bin("pg_ctl"), "-D", self.pg_data, "-w",
            "-l", os.path.join(home, "server.log"), "-o",
            "-k %s -p %d -c listen_addresses=%s -c fsync=off -c synchronous_commit=off "
            "-c max_connections=300" % (home, port, self.net.gateway), "start")
        run("runuser", "-u", "postgres", "--", self.pg_bin("psql"), "-h", self.net.gateway, "-p", str(port),
            "-U", "postgres", "-c", "CREATE DATABASE clrk")
        return "postgres://postgres@%s:%d/clrk" % (self.net.gateway, port)

    def start_registry(self):
        port = free_port(self.net.gateway)
        host = "%s:%d" % (self.net.gateway, port)
        config = os.path.join(self.work, "registry.yml")
        with open(config, "w") as f:
            f.write("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\n"
                    "http:\n  addr: %s\n" % (os.path.join(self.work, "registry"), host))
        proc, path = self.spawn("registry", ["docker-registry", "serve", config])
        wait_until("the registry listening", lambda: connects(self.net.gateway, port), proc=proc, log_path=path)
        layout = os.path.join(self.work, "layout")
        warm.write_images(layout, {"cat": (warm.busybox_tree(), ["/bin/busybox", "cat"])})
        run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", "oci:%s:cat" % layout,
            "docker://%s/bench/cat:1" % host)
        return host

    def start_cluster(self, database, registry):
        env = {"CLRK_DIR": os.path.join(self.work, "server")}
        secret, token = os.path.join(self.work, "secret"), os.path.join(self.work, "token")
        ip = self.net.ip(0)
        proc, path = self.spawn("server", self.net.command(0, [
            self.args.clrk, "server", "--database", database, "--listen", "%s:%d" % (ip, INGRESS),
            "--api", "%s:%d" % (ip, API), "--token-file", token, "--cluster-secret-file", secret,
            "--insecure-registry", registry]), env)
        api = "http://%s:%d" % (ip, API)
        wait_until("clrk server ready", lambda: http_status(api + "/readyz") == 200, proc=proc, log_path=path)
        for i in range(WORKERS):
            name, ip = "worker-%d" % i, self.net.ip(1 + i)
            proc, path = self.spawn(name, self.net.command(1 + i, [
                self.args.clrk, "worker", "--database", database, "--pool", "runc", "--name", name,
                "--listen", "%s:%d" % (ip, LINK), "--health", "%s:%d" % (ip, HEALTH),
                "--data-dir", os.path.join(self.work, name), "--cluster-secret-file", secret,
                "--insecure-registry", registry]), {"CLRK_DIR": os.path.join(self.work, name + "-cli")})
            wait_until(name + " ready", lambda: http_status("http://%s:%d/readyz" % (ip, HEALTH)) == 200,
                       proc=proc, log_path=path)
        return Target("cluster", "http://%s:%d" % (self.net.ip(0), INGRESS), api,
                      open(token).read().strip(), self.args.clrk)

    def start_dev(self, registry):
        clrk_dir = os.path.join(self.work, "dev")
        os.makedirs(clrk_dir)
        proc, path = self.spawn("dev", [self.args.clrk, "dev", "--listen", "127.0.0.1:0", "--api",
                                        "127.0.0.1:0", "--insecure-registry", registry],
                                {"CLRK_DIR": clrk_dir})
        endpoints = os.path.join(clrk_dir, "dev.json")
        wait_until("clrk dev started", lambda: os.path.exists(endpoints), proc=proc, log_path=path)
        e = json.load(open(endpoints))
        target = Target("dev", e["ingress"], e["api"], e["token"], self.args.clrk)
        wait_until("clrk dev listing its worker", target.listed, proc=proc, log_path=path)
        return target

    # -- the run

    def measure(self, target, registry):
        target.apply({"apiVersion": API_VERSION, "kind": "WorkerPool", "metadata": {"name": "runc"},
                      "spec": {"runtime": "runc"}})
        target.apply({"apiVersion": API_VERSION, "kind": "TaskAgent", "metadata": {"name": "cat"},
                      "spec": {"workerPoolRef": "runc", "warmPoolSize": self.args.pool,
                               "template": {"spec": {"image": "%s/bench/cat:1" % registry,
                                                     "command": ["/bin/busybox", "cat"]}}}})
        target.wait_warm(self.args.pool)
        client = warm.clrk_client(target.ingress, "cat")
        for _ in range(20):  # unmeasured: connections, page cache, the pool's first refills
            warm.timed_post(client)
        target.wait_warm(self.args.pool)
        samples = []
        for _ in range(self.args.n):
            _, full, out = warm.timed_post(client)
            if warm.TEXT.encode() not in out:
                raise BenchError("unexpected answer from %s: %r" % (target.name, out[:200]))
            samples.append(full)
            # One at a time, each on a warm sandbox: let the pool refill what was taken.
            time.sleep(self.args.gap)
        target.wait_warm(self.args.pool)
        rps = warm.load(lambda: warm.clrk_client(target.ingress, "cat", keep_alive=True), CONCURRENCY,
                        self.args.duration)
        return samples, rps, target.warm()


class Target:
    """A server's ingress and control API, and the CLI pointed at it."""

    def __init__(self, name, ingress, api, token, clrk):
        self.name, self.ingress, self.api, self.token, self.clrk = name, ingress, api, token, clrk

    def apply(self, doc):
        path = tempfile.mktemp(suffix=".json", dir="/var/tmp")
        with open(path, "w") as f:
            json.dump(doc, f)
        try:
            run(self.clrk, "apply", "-f", path,
                env={**os.environ, "CLRK_SERVER": self.api, "CLRK_TOKEN": self.token})
        finally:
            os.unlink(path)

    def warm(self):
        """{worker: warm sandboxes} as the registry of workers lists them."""
        req = urllib.request.Request(self.api + "/v1/workers",
                                     headers={"Authorization": "Bearer " + self.token})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return {w["name"]: w.get("warm", 0) for w in json.load(resp)["items"]}

    def listed(self):
        try:
            return bool(self.warm())
        except OSError:
            return False

    def wait_warm(self, target):
        wait_until("%s: %d warm sandboxes" % (self.name, target), lambda: sum(self.warm().values()) >= target,
                   timeout=300)


def prerequisites(args):
    missing = []
    if os.geteuid() != 0:
        missing.append("root (sudo: namespaces, the bridge and runc need it)")
    if not os.access(args.clrk, os.X_OK):
        missing.append("%s (cargo build --release -p clrk, or pass --clrk PATH)" % args.clrk)
    for tool in ("runc", "skopeo", "docker-registry", "ip", "unshare", "runuser"):
        if not shutil.which(tool):
            missing.append(tool + " in PATH (scripts/setup.sh)")
    if not os.path.exists(warm.BUSYBOX):
        missing.append(warm.BUSYBOX)
    if missing:
        sys.exit("cluster.py: missing prerequisites:\n  " + "\n  ".join(missing))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="warm requests one at a time (default 300)")
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between them (default 0.02)")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds of load at concurrency %d (default 10)" % CONCURRENCY)
    parser.add_argument("--pool", type=int, default=18, help="warmPoolSize of the agent (default 18)")
    parser.add_argument("--clrk", default=os.path.join(REPO, "target", "release", "clrk"),
                        help="the clrk binary (default target/release/clrk)")
    args = parser.parse_args()
    args.clrk = os.path.abspath(args.clrk)
    prerequisites(args)

    # Ctrl-C and SIGTERM unwind through `finally`, which removes everything made.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("cluster.py: terminated"))
    work = tempfile.mkdtemp(prefix="cbn-bench-", dir="/var/tmp")
    os.chmod(work, 0o755)  # the postgres user reaches its directory inside
    bench = Bench(args, work)
    results = {}
    try:
        bench.net = Network()
        bench.net.create(1 + WORKERS)
        log("PostgreSQL, registry")
        database = bench.start_postgres()
        registry = bench.start_registry()
        log("server and %d workers" % WORKERS)
        cluster = bench.start_cluster(database, registry)
        log("measuring the cluster")
        results["cluster"] = bench.measure(cluster, registry)
        for name in ["worker-%d" % i for i in range(WORKERS)] + ["server"]:
            bench.stop(name)
        log("clrk dev")
        dev = bench.start_dev(registry)
        log("measuring clrk dev")
        results["dev"] = bench.measure(dev, registry)
    except BenchError as e:
        log("error: %s" % e)
        for name, _, path in bench.procs:
            log("last lines of %s's log:\n%s" % (name, open(path).read()[-1500:]))
        sys.exit(1)
    finally:
        bench.cleanup()
        shutil.rmtree(work, ignore_errors=True)

    ms = lambda s: "%.2f ms" % (s * 1e3)
    (c_lat, c_rps, c_warm), (d_lat, d_rps, _) = results["cluster"], results["dev"]
    print("| busybox `cat`, runc, warm pool %d | p50 | p99 | req/s at concurrency %d (p50, p99) |"
          % (args.pool, CONCURRENCY))
    print("|---|---|---|---|")
    for label, lat, rps in (("`clrk dev`", d_lat, d_rps),
                            ("server → %d workers" % WORKERS, c_lat, c_rps)):
        errors = " (%s errors)" % rps[3] if rps[3] else ""
        print("| %s | %s | %s | %.0f (%s, %s)%s |" % (label, ms(statistics.median(lat)), ms(warm.pct(lat, 99)),
                                                     rps[0], ms(rps[1]), ms(rps[2]), errors))
    added = statistics.median(c_lat) - statistics.median(d_lat)
    print("| added by the hop | %s | %s | %.2f× |" % (ms(added), ms(warm.pct(c_lat, 99) - warm.pct(d_lat, 99)),
                                                     c_rps[0] / d_rps[0] if d_rps[0] else 0))
    print()
    print("n=%d sequential requests %g s apart; %g s of load after a ramp; warm sandboxes per worker "
          "after the run: %s" % (args.n, args.gap, args.duration,
                                 ", ".join("%s %d" % kv for kv in sorted(c_warm.items()))))


if __name__ == "__main__":
    main()
