#!/usr/bin/env python3
"""Side-by-side load comparison: certgate, Debian's nginx and Debian's HAProxy.

Each system terminates mTLS on 127.0.0.1:18443 (client certificate required, verify
depth 2, the same identity headers, keep-alive to the upstream) in front of one shared
trivial upstream (an nginx `return 200` on 127.0.0.1:18080). The systems run one at a
time, interleaved A B C A B C over --rounds rounds, and `oha` (with client certificates)
drives each scenario for --duration seconds. The PKI is made at run time with
`certgate certs` (root -> intermediate -> server/client, ECDSA P-256 and RSA-2048).

Writes benches/RESULTS.md: medians and min-max of every scenario, and each system's
ratio to nginx measured in the same run. Nothing here asserts a speed: this is a
measurement, not a test.

Usage: python3 benches/load/run.py [--rounds 3] [--duration 10] [--idle 8000] [--systems certgate,nginx,haproxy]
                                  [--headers nginx|minimal] [--path /api/v1/orders/12345]

`--headers minimal` sends two identity headers (X-SSL-Client-Verify, X-SSL-Client-S-DN)
instead of seven: the peers format theirs per request, certgate once per connection, so
the minimal set gives certgate no head start. `--path` is the request path (default `/`).

`--systems certgate,nginx,haproxy,bare-hyper` adds a bare hyper proxy
(benches/load/bare_hyper.rs: no client certificates, no headers, no routing) to the
keep-alive and HTTP/2 rows: the floor for certgate, which runs on the same TLS, hyper,
runtime shape and allocator, so the gap between the two is certgate's own per-request work.

Needs: nginx, haproxy (apt), oha (`cargo install oha --locked`), a release build of
certgate (`cargo build --release`; built if missing).
"""

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CERTGATE = ROOT / "target" / "release" / "certgate"
BARE_HYPER = ROOT / "target" / "release" / "examples" / "bare-hyper"
PORT = 18443
UPSTREAM_PORT = 18080
URL = f"https://localhost:{PORT}/"

HEADERS = [  # identity headers every system sends: header, nginx variable, HAProxy expression
    ("X-SSL-Client-Verify", "$ssl_client_verify", "%[ssl_c_verify,bool,iif(FAILED,SUCCESS)]"),
    ("X-SSL-Client-S-DN", "$ssl_client_s_dn", "%[ssl_c_s_dn(,0,rfc2253)]"),
    ("X-SSL-Client-I-DN", "$ssl_client_i_dn", "%[ssl_c_i_dn(,0,rfc2253)]"),
    ("X-SSL-Client-Serial", "$ssl_client_serial", "%[ssl_c_serial,hex]"),
    ("X-SSL-Client-Fingerprint", "$ssl_client_fingerprint", "%[ssl_c_sha1,hex,lower]"),
    ("X-SSL-Client-V-Start", "$ssl_client_v_start", "%[ssl_c_notbefore]"),
    ("X-SSL-Client-V-End", "$ssl_client_v_end", "%[ssl_c_notafter]"),
]
# certgate always adds X-Forwarded-For, X-Real-IP and X-Forwarded-Proto; the peers are
# configured to send the same, so every upstream request carries the same header set.


def sh(*args, **kw):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True, **kw)


def make_pki(base: Path, rsa: bool) -> Path:
    """root -> intermediate -> server (full chain) and client (leaf + intermediate)."""
    d = base / ("rsa2048" if rsa else "ecdsa")
    extra = ["--rsa", "2048"] if rsa else []
    sh(CERTGATE, "certs", "init", "--dir", d, *extra)
    sh(CERTGATE, "certs", "issue", "intermediate", "--cn", "Bench Issuing CA", "--ca", d / "ca.crt", "--out", d / "int", *extra)
    sh(CERTGATE, "certs", "issue", "server", "--cn", "localhost", "--dns", "localhost", "--ip", "127.0.0.1",
       "--ca", d / "int.crt", "--out", d / "srv", *extra)
    sh(CERTGATE, "certs", "issue", "client", "--cn", "bench-client", "--o", "certgate bench",
       "--ca", d / "int.crt", "--out", d / "cli", *extra)
    # HAProxy wants certificate chain and key in one file.
    (d / "srv.pem").write_text((d / "srv.crt").read_text() + (d / "srv.key").read_text())
    return d


# ---------------------------------------------------------------- configurations

def upstream_conf(work: Path) -> Path:
    conf = work / "upstream.conf"
    conf.write_text(f"""
worker_processes 1;
pid {work}/upstream.pid;
error_log {work}/upstream-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{UPSTREAM_PORT} reuseport backlog=4096;
    location / {{ return 200 "ok\\n"; }}
  }}
}}
""")
    return conf


def certgate_conf(work: Path, pki: Path, resumption: bool, binary: Path = CERTGATE,
                  name: str = "certgate") -> list:
    conf = work / f"{name}.yaml"
    # Not `preset: nginx`: it also sends the whole client certificate (X-SSL-Client-Cert),
    # which the peers here do not.
    identity = "\n".join(f'        {h}: "{v}"' for h, v, _ in HEADERS)
    conf.write_text(f"""
log:
  level: warn
  access: off
servers:
  - name: bench
    listen: ["127.0.0.1:{PORT}"]
    tls:
      cert: {pki}/srv.crt
      key: {pki}/srv.key
      session_resumption: {"true" if resumption else "false"}
    client_auth:
      verify: on
      ca: {pki}/ca.crt
      verify_depth: 2
    identity:
      preset: none
      set:
{identity}
    routes:
      - match: {{ path_prefix: / }}
        upstream: app
upstreams:
  app:
    servers: ["127.0.0.1:{UPSTREAM_PORT}"]
    keepalive: 128
""")
    return [binary, "-c", conf, "run", "--pid-file", work / f"{name}.pid"]


def nginx_conf(work: Path, pki: Path, resumption: bool) -> list:
    conf = work / "nginx.conf"
    headers = "\n".join(f"      proxy_set_header {h} {v};" for h, v, _ in HEADERS)
    session = ("ssl_session_cache shared:SSL:10m; ssl_session_tickets on;" if resumption
               else "ssl_session_cache off; ssl_session_tickets off;")
    conf.write_text(f"""
worker_processes 2;
worker_rlimit_nofile 19000;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log error;
events {{ worker_connections 9000; }}
http {{
  access_log off;
  upstream app {{ server 127.0.0.1:{UPSTREAM_PORT}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{PORT} ssl http2;
    ssl_certificate {pki}/srv.crt;
    ssl_certificate_key {pki}/srv.key;
    ssl_client_certificate {pki}/ca.crt;
    ssl_verify_client on;
    ssl_verify_depth 2;
    {session}
    keepalive_requests 1000000;
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
{headers}
    }}
  }}
}}
""")
    return ["nginx", "-c", conf, "-g", "daemon off;"]


def haproxy_conf(work: Path, pki: Path, resumption: bool) -> list:
    conf = work / "haproxy.cfg"
    headers = "\n".join(f"  http-request set-header {h} {expr}" for h, _, expr in HEADERS)
    cache = "" if resumption else "  tune.ssl.cachesize 0\n"
    tickets = "" if resumption else " no-tls-tickets"
    conf.write_text(f"""
global
  nbthread 2
  maxconn 9000
{cache}
defaults
  mode http
  timeout connect 5s
  timeout client 120s
  timeout server 60s
  timeout http-keep-alive 120s
frontend gw
  bind 127.0.0.1:{PORT} ssl crt {pki}/srv.pem ca-file {pki}/ca.crt verify required alpn h2,http/1.1{tickets}
  option forwardfor
  http-request set-header X-Real-IP %[src]
  http-request set-header X-Forwarded-Proto https
{headers}
  default_backend app
backend app
  http-reuse always
  server up 127.0.0.1:{UPSTREAM_PORT}
""")
    return ["haproxy", "-f", conf, "-db"]


def bare_conf(binary: Path):
    """A reference proxy (bare_hyper.rs): no client certificates, no
    headers, so what its HTTP layer costs without certgate's code (keep-alive and HTTP/2
    rows only)."""
    def conf(work: Path, pki: Path, resumption: bool) -> list:
        return [binary, f"127.0.0.1:{PORT}", pki / "srv.crt", pki / "srv.key",
                f"127.0.0.1:{UPSTREAM_PORT}"]
    return conf


SYSTEMS = {"certgate": certgate_conf, "nginx": nginx_conf, "haproxy": haproxy_conf,
           "bare-hyper": bare_conf(BARE_HYPER)}
# Scenarios a system takes part in, when not all of them.
ONLY = {"bare-hyper": ("keep-alive", "HTTP/2")}


# ---------------------------------------------------------------- process handling

def wait_port(port: int, timeout: float = 15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def wait_port_free(port: int, timeout: float = 15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                time.sleep(0.1)
        except OSError:
            return


def tree(pid: int) -> list:
    pids = [pid]
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid == pid:
                    pids.append(int(p.name))
            except (OSError, ValueError, IndexError):
                pass
    return pids


def pss_kb(pid: int) -> int:
    """Proportional set size of a process and its children: shared pages counted once."""
    total = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_seconds(pid: int) -> float:
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, ValueError, IndexError):
            pass
    return total


class System:
    def __init__(self, name, work, pki, resumption):
        self.name = name
        self.cmd = SYSTEMS[name](work, pki, resumption)
        self.log = open(work / f"{name}.out", "ab")

    def __enter__(self):
        wait_port_free(PORT)
        self.proc = subprocess.Popen([str(c) for c in self.cmd], stdout=self.log, stderr=self.log,
                                     start_new_session=True)
        wait_port(PORT)
        time.sleep(0.3)
        return self

    def __exit__(self, *exc):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.log.close()


class PeakSampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, pss_kb(self.pid))
            time.sleep(0.2)


# ---------------------------------------------------------------- load

def oha(pki: Path, duration: int, extra: list, server_pid: int) -> dict:
    cmd = ["oha", "-z", f"{duration}s", "--no-tui", "--output-format", "json",
           "--cacert", pki / "ca.crt", "--cert", pki / "cli.crt", "--key", pki / "cli.key", *extra, URL]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = cpu_seconds(server_pid)
    out = sh(*cmd).stdout
    server_cpu = cpu_seconds(server_pid) - server_before
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    data = json.loads(out)
    summary = data["summary"]
    codes = data.get("statusCodeDistribution", {})
    ok = codes.get("200", 0)
    total = sum(codes.values()) or 1
    lat = data.get("latencyPercentiles", {})
    loadgen = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {
        "rps": summary["requestsPerSec"] * ok / total,
        "p50_ms": (lat.get("p50") or 0) * 1000,
        "p99_ms": (lat.get("p99") or 0) * 1000,
        "ok_ratio": ok / total,
        "loadgen_cpu": loadgen / duration,
        "server_cpu_us": server_cpu * 1e6 / total,
        "loadgen_cpu_us": loadgen * 1e6 / total,
    }


def s_time(pki: Path, duration: int, server_pid: int, procs: int = 4) -> dict:
    """Full handshakes from OpenSSL's client: `openssl s_time -new` never offers a session to
    resume, so every system does the same full mTLS handshake plus one GET per connection."""
    cmd = ["openssl", "s_time", "-connect", f"127.0.0.1:{PORT}", "-new", "-time", str(duration),
           "-cert", str(pki / "cli.crt"), "-key", str(pki / "cli.key"), "-CAfile", str(pki / "ca.crt"),
           "-www", "/"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = cpu_seconds(server_pid)
    start = time.monotonic()
    running = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
               for _ in range(procs)]
    outputs = [p.communicate()[0] for p in running]
    wall = time.monotonic() - start
    server_cpu = cpu_seconds(server_pid) - server_before
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = 0
    for out in outputs:
        for line in out.splitlines():
            if "connections in" in line and "real seconds" in line:
                total += int(line.split()[0])
    loadgen = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {
        "rps": total / wall,
        "p50_ms": 0.0,
        "p99_ms": 0.0,
        "ok_ratio": 1.0 if total else 0.0,
        "loadgen_cpu": loadgen / wall,
        "server_cpu_us": server_cpu * 1e6 / max(total, 1),
        "loadgen_cpu_us": loadgen * 1e6 / max(total, 1),
    }


SCENARIOS = {
    # name: (pki, server-side resumption, load generator)
    "keep-alive HTTP/1.1, 64 connections": ("ecdsa", True, ["-c", "64", "--http-version", "1.1"]),
    "HTTP/2, 8 connections x 8 streams": ("ecdsa", True, ["-c", "8", "-p", "8", "--http2"]),
    # oha's rustls client resumes whenever it can: the servers turn resumption off.
    "full mTLS handshakes/s, ECDSA P-256 (oha, resumption off)": (
        "ecdsa", False, ["-c", "16", "--disable-keepalive"]),
    "full mTLS handshakes/s, RSA-2048 (oha, resumption off)": (
        "rsa2048", False, ["-c", "16", "--disable-keepalive"]),
    "full mTLS handshakes/s, ECDSA P-256 (4 openssl s_time -new)": ("ecdsa", False, "s_time"),
    "full mTLS handshakes/s, RSA-2048 (4 openssl s_time -new)": ("rsa2048", False, "s_time"),
    "resumed handshakes/s, ECDSA P-256 (oha, new connection per request)": (
        "ecdsa", True, ["-c", "16", "--disable-keepalive"]),
}


def idle_connections(pid: int, pki: Path, count: int) -> float:
    """PSS growth (MB) while `count` verified TLS connections sit idle, scaled to 10,000
    (the machine's hard open-file limit of 20,000 leaves no room for 10,000 on both ends
    plus HAProxy's upstream side)."""
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "cli.crt"), str(pki / "cli.key"))
    ctx.set_alpn_protocols(["http/1.1"])
    before = pss_kb(pid)
    conns = []
    try:
        for _ in range(count):
            raw = socket.create_connection(("127.0.0.1", PORT), timeout=10)
            conns.append(ctx.wrap_socket(raw, server_hostname="localhost"))
        time.sleep(1.0)
        after = pss_kb(pid)
    finally:
        for c in conns:
            c.close()
    return (after - before) / 1024 * 10000 / count


def main():
    global HEADERS, URL
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--idle", type=int, default=8000,
                        help="idle TLS connections to hold (0 = skip); reported per 10,000")
    parser.add_argument("--systems", default="certgate,nginx,haproxy")
    parser.add_argument("--out", default=str(ROOT / "benches" / "RESULTS.md"))
    parser.add_argument("--baseline", type=Path,
                        help="another certgate binary (e.g. the previous commit's release build), "
                             "run as system certgate-baseline for a before/after in the same run")
    parser.add_argument("--only", default="",
                        help="run only the scenarios whose names contain one of these comma-separated words")
    parser.add_argument("--headers", choices=["nginx", "minimal"], default="nginx",
                        help="identity headers: nginx's seven, or the minimal two")
    parser.add_argument("--path", default="/", help="the request path every load run sends")
    args = parser.parse_args()
    if args.headers == "minimal":
        HEADERS = HEADERS[:2]
    URL = f"https://localhost:{PORT}{args.path}"
    systems = args.systems.split(",")
    if args.baseline:
        baseline = args.baseline.resolve()
        SYSTEMS["certgate-baseline"] = lambda work, pki, resumption: certgate_conf(
            work, pki, resumption, baseline, "certgate-baseline")
        systems.insert(1, "certgate-baseline")
    if args.only:
        words = args.only.split(",")
        for scenario in list(SCENARIOS):
            if not any(w in scenario for w in words):
                del SCENARIOS[scenario]
    # Idle connections need descriptors: raise the soft limit to the hard one.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.idle > hard // 2 - 1000:
        sys.exit(f"--idle {args.idle} needs more than the open-file limit {hard} allows")

    for tool in ["nginx", "oha"] + (["haproxy"] if "haproxy" in systems else []):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (apt-get install nginx haproxy; cargo install oha --locked)")
    if not CERTGATE.exists():
        subprocess.run(["cargo", "build", "--release", "-p", "certgate"], cwd=ROOT, check=True)
    for name, binary in (("bare-hyper", BARE_HYPER),):
        if name in systems and not binary.exists():
            subprocess.run(["cargo", "build", "--release", "-p", "certgate-benches", "--example", name],
                           cwd=ROOT, check=True)

    work = Path(tempfile.mkdtemp(prefix="certgate-load-"))
    pkis = {"ecdsa": make_pki(work, rsa=False), "rsa2048": make_pki(work, rsa=True)}
    upstream = subprocess.Popen(["nginx", "-c", str(upstream_conf(work)), "-g", "daemon off;"],
                                start_new_session=True)
    wait_port(UPSTREAM_PORT)

    results = {s: {name: [] for name in SCENARIOS} for s in systems}
    rss = {s: [] for s in systems}
    idle = {s: [] for s in systems}
    loadgen_cpu = []
    try:
        for rnd in range(args.rounds):
            for scenario, (pki_name, resumption, extra) in SCENARIOS.items():
                for name in systems:
                    if name in ONLY and not scenario.startswith(ONLY[name]):
                        continue
                    pki = pkis[pki_name]
                    with System(name, work, pki, resumption) as system:
                        sampler = PeakSampler(system.proc.pid)
                        if scenario.startswith("keep-alive"):
                            sampler.start()
                        if extra == "s_time":
                            r = s_time(pki, args.duration, system.proc.pid)
                        else:
                            r = oha(pki, args.duration, extra, system.proc.pid)
                        sampler.stop.set()
                        if scenario.startswith("keep-alive"):
                            sampler.join()
                            rss[name].append(sampler.peak / 1024)
                        loadgen_cpu.append(r["loadgen_cpu"])
                        results[name][scenario].append(r)
                        print(f"round {rnd + 1} {scenario:40s} {name:9s} {r['rps']:9.0f}/s "
                              f"p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms ok {r['ok_ratio']:.3f}",
                              flush=True)
            if args.idle and rnd == 0:
                for name in systems:
                    if name in ONLY:
                        continue
                    with System(name, work, pkis["ecdsa"], True) as system:
                        mb = idle_connections(system.proc.pid, pkis["ecdsa"], args.idle)
                        idle[name].append(mb)
                        print(f"idle {args.idle} connections {name:9s} +{mb:.1f} MB", flush=True)
    finally:
        os.killpg(upstream.pid, signal.SIGKILL)
        upstream.wait()

    write_results(Path(args.out), args, systems, results, rss, idle, loadgen_cpu)
    print(f"wrote {args.out}; scratch in {work}")


def fmt(values, unit=""):
    if not values:
        return "n/a"
    med = statistics.median(values)
    return f"{med:,.0f}{unit} ({min(values):,.0f}–{max(values):,.0f})"


def version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


def write_results(path, args, systems, results, rss, idle, loadgen_cpu):
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    lines = [
        "# Load comparison: certgate vs nginx vs HAProxy",
        "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `benches/load/run.py` "
        f"(rounds {args.rounds}, {args.duration} s per run, systems interleaved per scenario).",
        "",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores ({cpu}), Linux {platform.release()}",
        f"- certgate: {version([str(CERTGATE), '--version'])} (release build of commit "
        f"{version(['git', '-C', str(ROOT), 'rev-parse', '--short', 'HEAD'])})",
        f"- nginx: {version(['nginx', '-v'])}; HAProxy: {version(['haproxy', '-v'])}",
        f"- load generator: {version(['oha', '--version'])}, on the same cores; it used "
        f"{statistics.median(loadgen_cpu) if loadgen_cpu else 0:.2f} CPU-seconds per second (median)",
        "- full handshakes: oha with `--disable-keepalive` against servers with session resumption"
        " off (nginx `ssl_session_cache off; ssl_session_tickets off`, HAProxy `no-tls-tickets`,"
        " `tune.ssl.cachesize 0`, certgate `session_resumption: false`), and 4 `openssl s_time -new"
        " -www /` processes (OpenSSL's client, no resumption offered); every other row by oha",
        "- same PKI for all (root → intermediate → leaf, certgate certs), client certificate required,"
        f" verify depth 2, the same {len(HEADERS)} identity headers (nginx's names:"
        f" {', '.join(h for h, _, _ in HEADERS)}) plus X-Forwarded-For, X-Real-IP"
        f" and X-Forwarded-Proto, keep-alive to one nginx `return 200` upstream; request path `{URL.split(str(PORT), 1)[1]}`",
        "",
        "Medians, with min–max over the rounds in parentheses; ratio = median / nginx's median."
        " The load generator shares the 2 cores, so requests/s also depends on what it spends;"
        " the CPU rows (user + system time of the server's processes, and of the load generator,"
        " over the run, divided by the requests it completed) show each side's own cost:"
        " there, lower is better.",
        "",
        "| scenario | " + " | ".join(systems) + " | " + " | ".join(f"{s}/nginx" for s in systems if s != "nginx") + " |",
        "|---|" + "---|" * (len(systems) + len([s for s in systems if s != "nginx"])),
    ]

    def row(label, per_system, unit=""):
        meds = {s: statistics.median(v) if v else None for s, v in per_system.items()}
        cells = [fmt(per_system[s], unit) for s in systems]
        ratios = []
        for s in systems:
            if s == "nginx":
                continue
            if meds.get("nginx") and meds.get(s) is not None:
                ratios.append(f"{meds[s] / meds['nginx']:.2f}×")
            else:
                ratios.append("n/a")
        lines.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")

    for scenario in SCENARIOS:
        row(f"{scenario} (req/s)", {s: [r["rps"] for r in results[s][scenario]] for s in systems})
        if scenario.startswith(("keep-alive", "HTTP/2")):
            lines_p = {s: [r["p50_ms"] * 1000 for r in results[s][scenario]] for s in systems}
            row("  p50 latency (µs)", lines_p)
            row("  p99 latency (µs)", {s: [r["p99_ms"] * 1000 for r in results[s][scenario]] for s in systems})
        unit = "handshake" if "handshakes" in scenario else "request"
        row(f"  server CPU per {unit} (µs)",
            {s: [r["server_cpu_us"] for r in results[s][scenario]] for s in systems})
        row(f"  load generator CPU per {unit} (µs)",
            {s: [r["loadgen_cpu_us"] for r in results[s][scenario]] for s in systems})
    row("peak PSS during keep-alive run (MB)", rss)
    if any(idle.values()):
        row(f"PSS growth per 10,000 idle TLS connections (MB; {args.idle:,} held, scaled)", idle)
    failures = [f"{s}: {sc}" for s in systems for sc in SCENARIOS
                if any(r["ok_ratio"] < 0.999 for r in results[s][sc])]
    lines += ["", "Non-200 answers above 0.1 %: " + (", ".join(failures) if failures else "none") + "."]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
