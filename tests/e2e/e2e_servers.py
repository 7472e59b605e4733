"""Processes the suite drives: the Flask echo backend, certgate, nginx; and clients."""

from __future__ import annotations

import json
import os
import pwd
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from flask import Flask, jsonify, request
from werkzeug.serving import WSGIRequestHandler, make_server

REPO_ROOT = Path(__file__).resolve().parents[2]
NGINX_BIN = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")

# Processes alive right now, so a failing test can show their logs.
LIVE: list["ManagedProcess"] = []


def certgate_bin() -> Path:
    p = os.environ.get("CERTGATE_BIN")
    return Path(p) if p else REPO_ROOT / "target" / "debug" / "certgate"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool | None:
    """Is something LISTENing on 127.0.0.1/0.0.0.0:port? None if /proc is unavailable.
    (Looking instead of connecting keeps bogus half-handshakes out of the logs.)"""
    found = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        found = found or False
        for line in lines:
            parts = line.split()
            local, state = parts[1], parts[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                return True
    return found


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        state = _listening(port)
        if state:
            return
        if state is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                pass
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


# --------------------------------------------------------------------------
# Flask echo backend
# --------------------------------------------------------------------------


class _RawHeadersHandler(WSGIRequestHandler):
    """Keeps the raw header lines (original case, duplicates, underscores), decoded
    latin-1 by http.client, i.e. byte for byte reversible."""

    def make_environ(self):
        env = super().make_environ()
        env["echo.raw_headers"] = [[k, v] for k, v in self.headers.items()]
        env["echo.request_version"] = self.request_version
        return env

    def log_request(self, *args, **kw):  # keep pytest output clean
        pass


class EchoBackend:
    """Flask app answering JSON: method, path, query, raw headers, body length.
    Counts every request it receives and remembers them."""

    def __init__(self):
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        app = Flask("certgate-e2e-echo")
        methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]

        @app.route("/", defaults={"path": ""}, methods=methods)
        @app.route("/<path:path>", methods=methods)
        def echo(path):
            body = request.get_data()
            raw = request.environ["echo.raw_headers"]
            rec = {
                "method": request.method,
                "path": request.path,
                "query": request.query_string.decode("latin-1"),
                "http_version": request.environ["echo.request_version"],
                "remote_addr": request.remote_addr,
                "headers": raw,  # [[name, latin-1 value], ...] in arrival order
                "headers_hex": [[k, v.encode("latin-1").hex()] for k, v in raw],
                "body_len": len(body),
            }
            with self._lock:
                self.requests.append(rec)
            return jsonify(rec)

        self.app = app
        self.port = free_port()
        self.server = make_server(
            "127.0.0.1", self.port, app, threaded=True, request_handler=_RawHeadersHandler
        )
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        wait_port(self.port)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def seen(self, marker: str) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if marker in r["path"]]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def header_values(echo: dict, name: str) -> list[bytes]:
    """All values (raw bytes) the backend received for header `name`."""
    n = name.lower()
    return [v.encode("latin-1") for k, v in echo["headers"] if k.lower() == n]


def header(echo: dict, name: str) -> str | None:
    vals = header_values(echo, name)
    assert len(vals) <= 1, f"header {name} arrived {len(vals)} times: {vals!r}"
    return vals[0].decode("latin-1") if vals else None


# --------------------------------------------------------------------------
# Managed processes
# --------------------------------------------------------------------------


class ManagedProcess:
    def __init__(self, name: str, argv: list[str], cwd: Path, log: Path, stop_signal=signal.SIGINT):
        self.name = name
        self.argv = argv
        self.log_path = log
        self._log = open(log, "wb")
        self.stop_signal = stop_signal
        self.proc = subprocess.Popen(
            argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        LIVE.append(self)

    def log_text(self, limit: int = 6000) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-limit:].decode("utf-8", "replace")

    def stop(self):
        if self in LIVE:
            LIVE.remove(self)
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(self.stop_signal)
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                # Only our own process group (start_new_session) is killed.
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._log.close()


# --------------------------------------------------------------------------
# certgate
# --------------------------------------------------------------------------


@dataclass
class Gateway:
    port: int
    dir: Path
    config_path: Path
    process: ManagedProcess
    config: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def log(self) -> str:
        return self.process.log_text()

    def stop(self):
        self.process.stop()


def gateway_config(
    pki,
    port: int,
    backend_port: int,
    *,
    client_auth: dict | None = None,
    identity: dict | None = None,
    routes: list | None = None,
    upstreams: dict | None = None,
    tls: dict | None = None,
    server_extra: dict | None = None,
) -> dict:
    ca = {"verify": "on", "ca": str(pki.ca_crt), "verify_depth": 1}
    if client_auth:
        ca.update(client_auth)
    server = {
        "name": "api",
        "listen": [f"127.0.0.1:{port}"],
        "tls": {"cert": str(pki.server.cert), "key": str(pki.server.key), **(tls or {})},
        "client_auth": ca,
        "identity": identity if identity is not None else {"preset": "nginx"},
        "routes": routes or [{"match": {"path_prefix": "/"}, "upstream": "app"}],
    }
    if server_extra:
        server.update(server_extra)
    return {
        "servers": [server],
        "upstreams": upstreams or {"app": {"servers": [f"127.0.0.1:{backend_port}"]}},
    }


def start_gateway(tmpdir: Path, config: dict, name: str = "certgate") -> Gateway:
    tmpdir.mkdir(parents=True, exist_ok=True)
    port = int(config["servers"][0]["listen"][0].rsplit(":", 1)[1])
    cfg = tmpdir / "gateway.yaml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    binary = certgate_bin()
    if not binary.exists():
        raise FileNotFoundError(
            f"certgate binary not found at {binary}; build it (cargo build -p certgate) "
            "or set CERTGATE_BIN"
        )
    p = ManagedProcess(name, [str(binary), "-c", str(cfg), "run"], tmpdir, tmpdir / f"{name}.log")
    try:
        wait_port(port, p.proc)
    except Exception as e:
        p.stop()
        raise RuntimeError(f"certgate did not start: {e}\n--- config ---\n{cfg.read_text()}"
                           f"\n--- log ---\n{p.log_text()}") from None
    return Gateway(port, tmpdir, cfg, p, config)


def run_check(config_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(certgate_bin()), "-c", str(config_path), "check", *extra],
        capture_output=True, text=True, timeout=30, cwd=config_path.parent,
    )


# --------------------------------------------------------------------------
# nginx
# --------------------------------------------------------------------------

# Every variable the parity check compares, in nginx's names.
NGINX_VARS = [
    "ssl_client_verify",
    "ssl_client_s_dn",
    "ssl_client_i_dn",
    "ssl_client_s_dn_legacy",
    "ssl_client_i_dn_legacy",
    "ssl_client_serial",
    "ssl_client_fingerprint",
    "ssl_client_v_start",
    "ssl_client_v_end",
    "ssl_client_v_remain",
    "ssl_client_escaped_cert",
    "ssl_protocol",
    "ssl_cipher",
    "ssl_server_name",
    "remote_addr",
]


def var_header(var: str) -> str:
    """X-V-<name>, with '-' instead of '_' (werkzeug, like most WSGI servers, drops
    header names containing underscores)."""
    return "X-V-" + "-".join(p.capitalize() for p in var.split("_"))


@dataclass
class Nginx:
    port: int
    dir: Path
    process: ManagedProcess

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def log(self) -> str:
        return self.process.log_text()

    def stop(self):
        self.process.stop()


def nginx_config(
    pki, port: int, backend_port: int, tmpdir: Path, *, verify: str = "on", depth: int = 1,
    preset_headers: bool = True,
) -> str:
    user = ""
    if os.geteuid() == 0:
        pw = pwd.getpwuid(os.geteuid())
        user = f"user {pw.pw_name};"
    sets = "\n".join(
        f"            proxy_set_header {var_header(v)} ${v};" for v in NGINX_VARS
    )
    preset = ""
    if preset_headers:
        preset = """
            proxy_set_header X-SSL-Client-Verify $ssl_client_verify;
            proxy_set_header X-SSL-Client-S-DN $ssl_client_s_dn;
            proxy_set_header X-SSL-Client-I-DN $ssl_client_i_dn;
            proxy_set_header X-SSL-Client-Serial $ssl_client_serial;
            proxy_set_header X-SSL-Client-Fingerprint $ssl_client_fingerprint;
            proxy_set_header X-SSL-Client-V-Start $ssl_client_v_start;
            proxy_set_header X-SSL-Client-V-End $ssl_client_v_end;
            proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;"""
    t = tmpdir
    return f"""
{user}
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    access_log {t}/access.log;
    client_body_temp_path {t}/client_body;
    proxy_temp_path {t}/proxy;
    fastcgi_temp_path {t}/fastcgi;
    uwsgi_temp_path {t}/uwsgi;
    scgi_temp_path {t}/scgi;
    upstream backend {{ server 127.0.0.1:{backend_port}; }}
    server {{
        listen 127.0.0.1:{port} ssl http2;
        server_name localhost;
        ssl_certificate {pki.server.cert};
        ssl_certificate_key {pki.server.key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_verify_client {verify};
        ssl_client_certificate {pki.ca_crt};
        ssl_verify_depth {depth};
        location / {{
            proxy_pass http://backend;
{sets}{preset}
        }}
    }}
}}
"""


def start_nginx(pki, tmpdir: Path, backend_port: int, **kw) -> Nginx:
    tmpdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = tmpdir / "nginx.conf"
    conf.write_text(nginx_config(pki, port, backend_port, tmpdir, **kw))
    p = ManagedProcess(
        "nginx",
        [NGINX_BIN, "-p", str(tmpdir), "-c", str(conf),
         "-g", f"daemon off; pid {tmpdir}/nginx.pid; error_log stderr info;"],
        tmpdir, tmpdir / "nginx.log", stop_signal=signal.SIGTERM,
    )
    try:
        wait_port(port, p.proc)
    except Exception as e:
        p.stop()
        raise RuntimeError(f"nginx did not start: {e}\n{p.log_text()}") from None
    return Nginx(port, tmpdir, p)


# --------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------


@dataclass
class CurlResult:
    rc: int
    status: int
    body: bytes
    stderr: str
    http_version: str
    headers: str
    raw: bytes = b""

    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def title(self) -> str | None:
        m = re.search(rb"<title>(.*?)</title>", self.body, re.S)
        return m.group(1).decode("latin-1") if m else None


def curl(
    port: int,
    path: str = "/",
    *,
    pki=None,
    client=None,
    host: str = "localhost",
    args: tuple = (),
    timeout: float = 20,
) -> CurlResult:
    """curl https://<host>:<port><path>; `client` is an Issued (chain + key) or None."""
    argv = ["curl", "-sS", "--max-time", str(int(timeout)), "-D", "-", "-o", "-",
            "-w", "\n__CURL__ %{http_code} %{http_version}"]
    if host != "127.0.0.1":
        argv += ["--resolve", f"{host}:{port}:127.0.0.1"]
    if pki is not None:
        argv += ["--cacert", str(pki.ca_crt)]
    if client is not None:
        argv += ["--cert", str(client.chain), "--key", str(client.key)]
    argv += list(args)
    argv.append(f"https://{host}:{port}{path}")
    p = subprocess.run(argv, capture_output=True, timeout=timeout + 5)
    out = p.stdout
    status, version = 0, ""
    m = re.search(rb"\n?__CURL__ (\d+) (\S+)$", out)
    if m:
        status, version = int(m.group(1)), m.group(2).decode()
        out = out[: m.start()]
    # -D - writes the response head(s) before the body
    head, body = b"", out
    while body.startswith(b"HTTP/"):
        sep = body.find(b"\r\n\r\n")
        if sep < 0:
            break
        head, body = body[: sep + 4], body[sep + 4 :]
    return CurlResult(p.returncode, status, body, p.stderr.decode("utf-8", "replace"), version,
                      head.decode("latin-1"), p.stdout)


def s_client(port: int, args: list[str], stdin: bytes = b"", timeout: float = 15) -> subprocess.CompletedProcess:
    """openssl s_client; on timeout returns what was read, with returncode None."""
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args]
    try:
        return subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(argv, None, e.stdout or b"", e.stderr or b"")


def split_http1_response(raw: bytes) -> tuple[bytes, bytes]:
    """(head, body) of one raw HTTP/1.1 response; de-chunks the body if needed."""
    head, _, body = raw.partition(b"\r\n\r\n")
    if re.search(rb"(?im)^transfer-encoding:\s*chunked", head):
        out, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2 :]
        body = out
    return head, body
