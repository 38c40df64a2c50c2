#!/usr/bin/env python3
"""Cold invocation latency of clrk against the raw OCI runtime, measured in one run.

Starts a release `clrk dev` in a temporary CLRK_DIR, applies the guide's word-count agent
(Python, `host:` image) and a busybox `cat` agent, and times N requests of each through the
HTTP ingress (every request is a cold start: a fresh gVisor sandbox). The baseline is
`runsc run` of an equivalent bundle (same rootfs, same command, same overlay and network
flags), timed the same way, in the same run. Prints a Markdown table.

Usage: sudo python3 bench/cold_start.py [-n 20]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLRK = os.path.join(REPO, "target", "release", "clrk")
AGENT_PY = os.path.join(REPO, "examples", "word-count", "agent.py")
BODY = json.dumps({"text": "hello world from clrk"}).encode()

AGENTS = {
    "word-count (python)": ["python3", AGENT_PY],
    "busybox cat": ["/bin/busybox", "cat"],
}


def manifest(name, command):
    return json.dumps({
        "apiVersion": "clrk.apoxy.dev/v1alpha1",
        "kind": "TaskAgent",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"image": "host:", "command": command}}},
    })


def start_clrk(clrk_dir):
    log = open(os.path.join(clrk_dir, "server.log"), "w")
    proc = subprocess.Popen(
        [CLRK, "dev", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0"],
        env={**os.environ, "CLRK_DIR": clrk_dir, "RUST_LOG": "warn"},
        stdout=log, stderr=log, stdin=subprocess.DEVNULL,
    )
    endpoints = os.path.join(clrk_dir, "dev.json")
    deadline = time.time() + 60
    while not os.path.exists(endpoints):
        if proc.poll() is not None or time.time() > deadline:
            sys.exit("clrk dev did not start; see " + log.name)
        time.sleep(0.05)
    return proc, json.load(open(endpoints))


def invoke(ingress, agent):
    req = urllib.request.Request(ingress + "/", data=BODY, method="POST", headers={
        "X-Clrk-TaskAgent": "default/" + agent,
        "Content-Type": "application/json",
    })
    start = time.perf_counter()
    with urllib.request.urlopen(req) as resp:
        out = resp.read()
    elapsed = time.perf_counter() - start
    assert resp.status == 200, out
    return elapsed, out


def raw_runsc(workdir, command):
    """`runsc run` of a bundle shaped like clrk's: host root, memory overlay, no network."""
    bundle = os.path.join(workdir, "bundle")
    os.makedirs(bundle, exist_ok=True)
    config = {
        "ociVersion": "1.0.2",
        "process": {
            "user": {"uid": 0, "gid": 0}, "args": command, "cwd": "/",
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        },
        "root": {"path": "/", "readonly": False},
        "hostname": "clrk",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"},
        ],
        "linux": {"namespaces": [{"type": t} for t in ["pid", "ipc", "uts", "mount", "network"]]},
    }
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    root = os.path.join(workdir, "runsc-root")
    envelope = json.dumps({"specversion": "1.0", "id": "raw", "data": {"text": "hello world from clrk"}}) + "\n"
    start = time.perf_counter()
    proc = subprocess.run(
        ["runsc", "--root", root, "--network=none", "--overlay2=root:memory", "run", "--bundle", bundle,
         "raw-%d" % time.monotonic_ns()],
        input=envelope.encode(), capture_output=True,
    )
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    return elapsed


def summary(samples):
    s = sorted(samples)
    return statistics.median(s), s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=20, help="requests per agent (default 20)")
    args = parser.parse_args()
    if not os.path.exists(CLRK):
        sys.exit("build first: cargo build --release -p clrk")
    clrk_dir = tempfile.mkdtemp(prefix="clrk-bench-")
    proc, endpoints = start_clrk(clrk_dir)
    rows = []
    try:
        for i, (label, command) in enumerate(AGENTS.items()):
            name = "bench-%d" % i
            path = os.path.join(clrk_dir, name + ".json")
            open(path, "w").write(manifest(name, command))
            subprocess.run([CLRK, "apply", "-f", path], check=True, env={**os.environ, "CLRK_DIR": clrk_dir},
                           stdout=subprocess.DEVNULL)
            invoke(endpoints["ingress"], name)  # warm the page cache, not a sandbox
            clrk_times = [invoke(endpoints["ingress"], name)[0] for _ in range(args.n)]
            raw_runsc(clrk_dir, command)
            raw_times = [raw_runsc(clrk_dir, command) for _ in range(args.n)]
            rows.append((label, summary(clrk_times), summary(raw_times)))
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(clrk_dir, ignore_errors=True)

    print("| cold invocation (n=%d) | clrk p50 | clrk p90 | raw `runsc run` p50 | ratio p50 |" % args.n)
    print("|---|---|---|---|---|")
    for label, (c50, c90), (r50, _) in rows:
        print("| %s | %.0f ms | %.0f ms | %.0f ms | %.2f× |" % (label, c50 * 1e3, c90 * 1e3, r50 * 1e3, c50 / r50))


if __name__ == "__main__":
    main()
