#!/usr/bin/env python3
"""Peak memory of certgate while it streams 1 GB down and 1 GB up.

Starts a plain HTTP/1.1 upstream (Python, generates/discards the bytes), certgate with
verify: on in front of it (PKI from `certgate certs init` in a temp dir), then runs
`curl` with the client certificate: one 1 GB download, one 1 GB upload (PUT of a sparse
file, streamed). Samples certgate's /proc/<pid>/status VmHWM (peak RSS) and prints:

    baseline VmHWM: 12.3 MB
    download 1024 MB in 4.1 s, VmHWM 20.5 MB
    upload   1024 MB in 5.0 s, VmHWM 21.0 MB
    PASS: peak RSS 21.0 MB < 64 MB

Usage: python3 benches/memory/stream_1gb.py [--bin target/release/certgate] [--size-mb 1024]
       [--http 1.1|2]
Not part of CI (it moves 2 GB through the gateway); run it by hand.
"""

from __future__ import annotations

import argparse
import http.server
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT_MB = 64
CHUNK = b"\xa5" * (1024 * 1024)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    size = 0

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(self.size))
        self.end_headers()
        left = self.size
        while left > 0:
            n = min(left, len(CHUNK))
            self.wfile.write(CHUNK[:n])
            left -= n

    def do_PUT(self):
        left = int(self.headers.get("Content-Length", "0"))
        got = 0
        while left > 0:
            data = self.rfile.read(min(left, 1024 * 1024))
            if not data:
                break
            got += len(data)
            left -= len(data)
        body = f"{got}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def vmhwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "target" / "debug" / "certgate"))
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--http", choices=["1.1", "2"], default="2",
                    help="client to gateway protocol (the upstream is HTTP/1.1)")
    args = ap.parse_args()
    size = args.size_mb * 1024 * 1024
    Upstream.size = size

    upstream_port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", upstream_port), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        subprocess.run([args.bin, "certs", "init", "--dir", str(d / "certs")], check=True,
                       capture_output=True)
        port = free_port()
        certs = d / "certs"
        (d / "gateway.yaml").write_text(f"""
log: {{ level: warn, access: "off" }}
servers:
  - name: bench
    listen: ["127.0.0.1:{port}"]
    tls: {{ cert: {certs}/server.crt, key: {certs}/server.key }}
    client_auth: {{ verify: on, ca: {certs}/ca.crt }}
    routes:
      - match: {{ path_prefix: / }}
        upstream: app
        max_body_size: 0
        timeouts: {{ read: 120s, send: 120s }}
upstreams:
  app:
    servers: ["127.0.0.1:{upstream_port}"]
""")
        blob = d / "upload.bin"
        with open(blob, "wb") as f:  # sparse: costs no disk
            f.truncate(size)
        gw = subprocess.Popen([args.bin, "-c", str(d / "gateway.yaml"), "run",
                               "--pid-file", str(d / "certgate.pid")],
                              stdout=subprocess.DEVNULL, stderr=open(d / "certgate.log", "wb"))
        try:
            wait_port(port)
            time.sleep(0.3)
            print(f"baseline VmHWM: {vmhwm_kb(gw.pid) / 1024:.1f} MB")
            curl = ["curl", "-sS", "--fail", "--cacert", str(certs / "ca.crt"),
                    "--cert", str(certs / "client.crt"), "--key", str(certs / "client.key"),
                    "--resolve", f"localhost:{port}:127.0.0.1",
                    "--http1.1" if args.http == "1.1" else "--http2"]
            url = f"https://localhost:{port}"
            peaks = []
            for label, extra in (("download", ["-o", "/dev/null", f"{url}/download"]),
                                 ("upload  ", ["-o", "-", "-T", str(blob), f"{url}/upload"])):
                start = time.monotonic()
                out = subprocess.run(curl + extra, capture_output=True, text=True)
                took = time.monotonic() - start
                if out.returncode != 0:
                    print(f"{label} failed: {out.stderr}", file=sys.stderr)
                    print((d / "certgate.log").read_text()[-3000:], file=sys.stderr)
                    return 1
                if label.strip() == "upload" and out.stdout.strip() != str(size):
                    print(f"upload: upstream received {out.stdout.strip()} bytes, not {size}",
                          file=sys.stderr)
                    return 1
                peak = vmhwm_kb(gw.pid) / 1024
                peaks.append(peak)
                print(f"{label} {args.size_mb} MB in {took:.1f} s, VmHWM {peak:.1f} MB")
            peak = max(peaks)
            verdict = "PASS" if peak < LIMIT_MB else "FAIL"
            print(f"{verdict}: peak RSS {peak:.1f} MB {'<' if peak < LIMIT_MB else '>='} {LIMIT_MB} MB")
            return 0 if peak < LIMIT_MB else 1
        finally:
            gw.terminate()
            gw.wait(timeout=10)
            server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
