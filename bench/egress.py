#!/usr/bin/env python3
"""Latency the egress gateway adds to an agent's HTTPS call, against the same call made
directly from the host in the same run.

Sets up an HTTPS upstream in a network namespace of its own (the worker's own addresses are
never reachable from a sandbox), with a certificate from a CA made here, and a DNS server
naming it `llm.test`. Starts a release `clrk dev` whose gateway trusts that CA and allows
`llm.test:443`, then times -n requests (POST, JSON, the upstream answers like an LLM
provider with usage):

- direct: from this script on the host, straight to the upstream;
- proxied: from a Python agent in a gVisor sandbox, through the gateway (TLS terminated with
  the gateway's CA, the credential header injected, usage metered, the record and span
  written), which opens its own TLS connection upstream.

Each is timed twice: a new connection per request (the agent's TLS handshake with the
gateway plus the gateway's with the upstream) and one kept-alive connection (the gateway
still connects upstream per request). Medians, p90 and the added time are printed.

Needs root, runsc, openssl and python3. Usage: sudo python3 bench/egress.py [-n 100] [--clrk PATH]
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UPSTREAM_PY = os.path.join(REPO, "crates", "clrk", "tests", "fixtures", "llm_upstream.py")
NETNS, VETH = "clrkbench-up", "egbench0"
HOST_IP, UP_IP = "10.252.7.1", "10.252.7.2"
BODY = json.dumps({"model": "bench", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]})

# The timing loop, run on the host and inside the agent alike.
CLIENT = r'''
import http.client, json, socket, ssl, sys, time
def run(ip, n, keepalive, cafile=None, headers=None):
    ctx = ssl.create_default_context(cafile=cafile)
    times, conn = [], None
    for _ in range(n):
        t = time.perf_counter()
        if conn is None or not keepalive:
            raw = socket.create_connection((ip, 443), timeout=30)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = http.client.HTTPSConnection("llm.test", 443, context=ctx, timeout=30)
            conn.sock = ctx.wrap_socket(raw, server_hostname="llm.test")
        conn.request("POST", "/v1/messages", body=BODY, headers=headers or {"content-type": "application/json"})
        r = conn.getresponse()
        r.read()
        assert r.status == 200, r.status
        times.append((time.perf_counter() - t) * 1000)
        if not keepalive:
            conn.close()
    return times
'''


def sh(cmd, check=True):
    return subprocess.run(cmd, shell=True, check=check, capture_output=True, text=True)


def make_certs(dir):
    sh(f"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
       f"-subj /CN=bench-ca -keyout {dir}/ca.key -out {dir}/ca.crt")
    sh(f"openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=llm.test "
       f"-keyout {dir}/llm.key -out {dir}/llm.csr")
    with open(f"{dir}/ext", "w") as f:
        f.write("subjectAltName=DNS:llm.test\n")
    sh(f"openssl x509 -req -in {dir}/llm.csr -CA {dir}/ca.crt -CAkey {dir}/ca.key "
       f"-CAcreateserial -days 2 -extfile {dir}/ext -out {dir}/llm.crt")


def dns_server():
    """Answers A llm.test with the upstream, NXDOMAIN otherwise; returns its port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))

    def serve():
        while True:
            q, peer = sock.recvfrom(4096)
            qid, _, qd = struct.unpack(">HHH", q[:6])
            i, labels = 12, []
            while q[i]:
                labels.append(q[i + 1:i + 1 + q[i]].decode().lower())
                i += 1 + q[i]
            qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
            question = q[12:i + 5]
            known = ".".join(labels) == "llm.test"
            answers = b""
            if known and qtype == 1:
                answers = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(UP_IP)
            flags = 0x8180 if known else 0x8183
            header = struct.pack(">HHHHHH", qid, flags, 1, 1 if answers else 0, 0, 0)
            sock.sendto(header + question + answers, peer)

    threading.Thread(target=serve, daemon=True).start()
    return sock.getsockname()[1]


def upstream(dir):
    sh(f"ip netns del {NETNS}; ip link del {VETH}", check=False)
    sh(f"ip netns add {NETNS} && ip link add {VETH} type veth peer name eth0 netns {NETNS} && "
       f"ip addr add {HOST_IP}/30 dev {VETH} && ip link set {VETH} up && "
       f"ip -n {NETNS} addr add {UP_IP}/30 dev eth0 && ip -n {NETNS} link set eth0 up && "
       f"ip -n {NETNS} link set lo up")
    proc = subprocess.Popen(["ip", "netns", "exec", NETNS, "python3", UPSTREAM_PY, UP_IP, "443",
                             f"{dir}/llm.crt", f"{dir}/llm.key"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def start_clrk(clrk, clrk_dir, dns_port):
    env = dict(os.environ, CLRK_DIR=clrk_dir)
    proc = subprocess.Popen([clrk, "dev", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0",
                             "--dns-upstream", f"127.0.0.1:{dns_port}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=open(f"{clrk_dir}/log", "w"))
    deadline = time.time() + 60
    while not os.path.exists(f"{clrk_dir}/dev.json"):
        assert time.time() < deadline, "clrk dev did not start"
        time.sleep(0.1)
    time.sleep(0.5)
    return proc, env


def manifests(ca_pem):
    bundle = "".join("      " + line + "\n" for line in ca_pem.strip().splitlines())
    agent = json.dumps(AGENT)
    return f"""apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressGateway
metadata: {{name: bench}}
spec:
  upstreamTLS:
    additionalTrustBundle: |
{bundle}---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: AIProviderRoute
metadata: {{name: llm}}
spec:
  parentRefs: [{{name: bench}}]
  matches: [{{provider: anthropic, hostnames: [llm.test]}}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: CredentialInjectionPolicy
metadata: {{name: key}}
spec:
  parentRefs: [{{name: bench}}]
  destinationHostnames: [llm.test]
  secretRef: {{name: llm}}
  headerName: x-api-key
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: TaskAgent
metadata: {{name: egress-bench}}
spec:
  timeout: 10m
  egressRefs: [{{gatewayRef: bench}}]
  template:
    spec:
      image: "host:"
      command: ["python3", "-c", {agent}]
"""


AGENT = CLIENT + r'''
data = json.load(sys.stdin)["data"]
BODY = data["body"]
ip = socket.getaddrinfo("llm.test", 443, socket.AF_INET)[0][4][0]
print(json.dumps({"new": run(ip, data["n"], False), "keepalive": run(ip, data["n"], True)}), flush=True)
'''


def summary(name, xs):
    xs = sorted(xs)
    p90 = xs[int(len(xs) * 0.9) - 1]
    return f"{name:<28} median {statistics.median(xs):7.2f} ms   p90 {p90:7.2f} ms"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=100)
    ap.add_argument("--clrk", default=os.path.join(REPO, "target", "release", "clrk"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="clrk-egress-bench-", dir="/var/tmp")
    procs = []
    try:
        make_certs(work)
        procs.append(upstream(work))
        dns_port = dns_server()
        clrk, env = start_clrk(args.clrk, work, dns_port)
        procs.append(clrk)
        ca_pem = open(f"{work}/ca.crt").read()
        with open(f"{work}/m.yaml", "w") as f:
            f.write(manifests(ca_pem))
        subprocess.run([args.clrk, "secret", "set", "llm", "--from-literal", "token=bench-secret"], env=env, check=True, capture_output=True)
        subprocess.run([args.clrk, "apply", "-f", f"{work}/m.yaml"], env=env, check=True, capture_output=True)

        scope = {"BODY": BODY}
        exec(CLIENT, scope)
        direct_new = scope["run"](UP_IP, args.n, False, cafile=f"{work}/ca.crt")
        direct_keep = scope["run"](UP_IP, args.n, True, cafile=f"{work}/ca.crt")
        out = subprocess.run([args.clrk, "agents", "run-task", "egress-bench", "-i",
                              json.dumps({"n": args.n, "body": BODY})],
                             env=env, check=True, capture_output=True, text=True)
        proxied = json.loads(out.stdout)
        print(f"egress latency, {args.n} sequential HTTPS POSTs each (2-core machine)")
        for label, direct, via in [("new connection per request", direct_new, proxied["new"]),
                                   ("one kept-alive connection", direct_keep, proxied["keepalive"])]:
            print(f"\n{label}:")
            print(summary("  direct from the host", direct))
            print(summary("  agent through the gateway", via))
            added = statistics.median(via) - statistics.median(direct)
            print(f"  added by the gateway (median): {added:.2f} ms "
                  f"({statistics.median(via) / statistics.median(direct):.2f}x)")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        sh(f"ip netns del {NETNS}; ip link del {VETH}", check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
