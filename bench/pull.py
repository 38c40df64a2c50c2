#!/usr/bin/env python3
"""Image pull time at `clrk apply`, cold and with a warm layer cache, against skopeo.

Builds a 50 MB image (busybox plus a layer of incompressible data), pushes it to Debian's
`docker-registry` on a loopback port, starts a release `clrk dev` with a fresh data dir and
times `clrk apply` of an agent using it:

- cold: nothing cached, every blob downloaded, verified and unpacked;
- warm: a second tag whose config differs (so a new manifest and revision) but whose layers
  are the same: only the manifest and config travel.

The baseline is `skopeo copy docker://… oci:DIR` of the same image from the same registry,
timed in the same run (a download and verify without unpacking). Prints a Markdown table.

Usage: sudo python3 bench/pull.py [-n 5] [--mb 50]
"""

import argparse
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

import oci_layout

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLRK = os.path.join(REPO, "target", "release", "clrk")


def layer(files):
    """An uncompressed tar layer of (path, bytes, mode) entries, deterministic."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for path, data, mode in files:
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), mode, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def build_image(layout, mb, tags):
    """An OCI layout holding one image per tag: same layers, configs differing by tag."""
    busybox = open("/bin/busybox", "rb").read()
    base = layer([("bin/busybox", busybox, 0o755)])
    data = layer([("data/blob", os.urandom(mb * 1_000_000), 0o644)])
    return oci_layout.write_layout(layout, {
        tag: ([base, data], ["/bin/busybox", "echo", tag], []) for tag in tags
    })


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_registry(workdir):
    host = f"127.0.0.1:{free_port()}"
    config = os.path.join(workdir, "registry.yml")
    with open(config, "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                f"    rootdirectory: {workdir}/registry\nhttp:\n  addr: {host}\n")
    proc = subprocess.Popen(["docker-registry", "serve", config],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(host.split(":")).close()
            return proc, host
        except OSError:
            if time.time() > deadline:
                sys.exit("docker-registry did not start")
            time.sleep(0.05)


def start_clrk(clrk_dir, registry):
    log = open(os.path.join(clrk_dir, "server.log"), "w")
    proc = subprocess.Popen(
        [CLRK, "dev", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0",
         "--insecure-registry", registry],
        env={**os.environ, "CLRK_DIR": clrk_dir, "RUST_LOG": "warn"},
        stdout=log, stderr=log, stdin=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while not os.path.exists(os.path.join(clrk_dir, "dev.json")):
        if proc.poll() is not None or time.time() > deadline:
            sys.exit("clrk dev did not start; see " + log.name)
        time.sleep(0.05)
    return proc


def timed(args, env=None):
    start = time.perf_counter()
    out = subprocess.run(args, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"{' '.join(args)} failed: {out.stderr}")
    return elapsed


def apply(clrk_dir, name, image):
    path = os.path.join(clrk_dir, name + ".json")
    with open(path, "w") as f:
        json.dump({
            "apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "TaskAgent",
            "metadata": {"name": name},
            "spec": {"template": {"spec": {"image": image}}},
        }, f)
    return timed([CLRK, "apply", "-f", path], env={**os.environ, "CLRK_DIR": clrk_dir})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5, help="runs of each (default 5)")
    parser.add_argument("--mb", type=int, default=50, help="size of the data layer in MB")
    args = parser.parse_args()
    if not os.path.exists(CLRK):
        sys.exit("build first: cargo build --release -p clrk")

    work = tempfile.mkdtemp(prefix="clrk-bench-pull-", dir="/var/tmp")
    registry = None
    try:
        layout = os.path.join(work, "layout")
        size = build_image(layout, args.mb, ["cold", "warm"])
        registry, host = start_registry(work)
        for tag in ("cold", "warm"):
            subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                            f"oci:{layout}:{tag}", f"docker://{host}/bench:{tag}"], check=True)

        cold, warm, skopeo = [], [], []
        for i in range(args.n):
            target = os.path.join(work, f"skopeo-{i}")
            skopeo.append(timed(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                                 f"docker://{host}/bench:cold", f"oci:{target}:x"]))
            shutil.rmtree(target)
            clrk_dir = os.path.join(work, f"clrk-{i}")
            os.makedirs(clrk_dir)
            server = start_clrk(clrk_dir, host)
            try:
                cold.append(apply(clrk_dir, "cold", f"{host}/bench:cold"))
                warm.append(apply(clrk_dir, "warm", f"{host}/bench:warm"))
            finally:
                server.terminate()
                server.wait()
            shutil.rmtree(clrk_dir)

        base = statistics.median(skopeo)
        print(f"| image pull at apply ({size / 1e6:.0f} MB compressed, n={args.n}) | median "
              f"| vs `skopeo copy` |")
        print("|---|---|---|")
        print(f"| `skopeo copy docker://… oci:` (download + verify) | {base * 1000:.0f} ms | 1.00× |")
        for label, runs in (("clrk apply, cold cache (download, verify, unpack)", cold),
                            ("clrk apply, warm layer cache (new tag, same layers)", warm)):
            med = statistics.median(runs)
            print(f"| {label} | {med * 1000:.0f} ms | {med / base:.2f}× |")
    finally:
        if registry:
            registry.terminate()
            registry.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
