"""Operating certgate: the admin listener's /metrics read with the Prometheus client's own
text parser, /healthz and /readyz, access log lines (combined and JSON) and their reopening
on SIGUSR1, and a 30-second download that stays in flight across reloads."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

import e2e_servers as S
from e2e_servers import curl


def admin_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """Every sample, keyed by (name, sorted labels), parsed by prometheus_client."""
    status, text = admin_get(port, "/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(what, predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def ops_config(pki, backend_port, admin_port, log_path, fmt, **kw):
    config = S.gateway_config(pki, S.free_port(), backend_port, **kw)
    config["admin"] = {"listen": f"127.0.0.1:{admin_port}"}
    config["log"] = {"access": str(log_path), "format": fmt}
    return config


def reload_gateway(gw, config: dict) -> subprocess.CompletedProcess:
    """Rewrites gateway.yaml and runs `certgate reload`, which finds this process through
    the config's `pid_file` (the gateway wrote it) and waits for its answer."""
    assert config.get("pid_file"), "the gateway must have been started with a pid_file"
    gw.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return subprocess.run(
        [str(S.certgate_bin()), "-c", str(gw.config_path), "reload"],
        capture_output=True, text=True, timeout=30,
    )


def test_metrics_parse_and_count_requests_handshakes_and_verifications(
    gateway_factory, pki, backend, tmp_path
):
    admin = S.free_port()
    config = ops_config(pki, backend.port, admin, tmp_path / "access.log", "json")
    config["servers"][0]["routes"] = [
        {"match": {"path_prefix": "/private"}, "upstream": "app", "allow": [{"cn": ["nobody"]}]},
        {"match": {"path_prefix": "/"}, "upstream": "app"},
    ]
    gw = gateway_factory(config)
    assert admin_get(admin, "/healthz") == (200, "ok\n")
    wait_for("readiness", lambda: admin_get(admin, "/readyz")[0] == 200)

    alice = pki.clients["ascii_rsa"]
    before = scrape(admin)
    for _ in range(3):
        assert curl(gw.port, "/hello", pki=pki, client=alice).status == 200
    assert curl(gw.port, "/private/x", pki=pki, client=alice).status == 403
    assert curl(gw.port, "/hello", pki=pki).status == 400  # no certificate
    after = scrape(admin)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("certgate_requests_total", server="api", route="/", code="200") == 3
    assert moved("certgate_requests_total", server="api", route="/private", code="403") == 1
    assert moved("certgate_requests_total", server="api", route="-", code="400") == 1
    assert moved("certgate_authz_denied_total", server="api", route="/private") == 1
    assert moved("certgate_tls_handshakes_total", server="api", result="success") == 5
    assert moved("certgate_client_cert_verifications_total",
                 server="api", result="success", reason="") == 4
    assert moved("certgate_client_cert_verifications_total",
                 server="api", result="none", reason="") == 1
    assert moved("certgate_upstream_requests_total", upstream="app", outcome="success") == 3
    assert moved("certgate_request_duration_seconds_count", server="api", route="/") == 3
    # Certificate expiry: the server certificate and the client CA, as unix timestamps.
    kinds = {dict(labels)["kind"] for (name, labels) in after
             if name == "certgate_certificate_expiry_timestamp_seconds"}
    assert {"server", "client_ca"} <= kinds
    for (name, labels), v in after.items():
        if name == "certgate_certificate_expiry_timestamp_seconds":
            assert v > time.time(), (labels, v)
    assert value(after, "process_start_time_seconds") > 0
    # No per-client labels: nothing identifies alice.
    assert not any("alice" in str(labels) for (_, labels) in after)


COMBINED = re.compile(
    r'^(?P<addr>\S+) - - \[(?P<time>\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000)\] '
    r'"(?P<method>\S+) (?P<uri>\S+) (?P<proto>HTTP/[\d.]+)" (?P<status>\d{3}) (?P<bytes>\d+) '
    r'"(?P<referer>[^"]*)" "(?P<ua>[^"]*)" "(?P<s_dn>[^"]*)" (?P<verify>\S+) '
    r'(?P<request_time>\d+\.\d{3}) (?P<upstream_time>\d+\.\d{3}|-)$'
)


def test_combined_access_log_lines_parse_and_sigusr1_reopens(gateway_factory, pki, backend, tmp_path):
    log = tmp_path / "access.log"
    gw = gateway_factory(ops_config(pki, backend.port, S.free_port(), log, "combined"))
    alice = pki.clients["ascii_rsa"]
    assert curl(gw.port, "/a?x=1", pki=pki, client=alice, args=("-A", "e2e-agent")).status == 200
    assert curl(gw.port, "/b", pki=pki).status == 400
    wait_for("two log lines", lambda: log.exists() and len(log.read_text().splitlines()) == 2)
    first, second = [COMBINED.match(line) for line in log.read_text().splitlines()]
    assert first and second, log.read_text()
    assert first["addr"] == "127.0.0.1"
    assert (first["method"], first["uri"], first["status"]) == ("GET", "/a?x=1", "200")
    assert first["ua"] == "e2e-agent"
    assert first["s_dn"].startswith("CN=alice,")
    assert first["verify"] == "SUCCESS"
    assert first["upstream_time"] != "-"
    assert (second["status"], second["verify"], second["upstream_time"]) == ("400", "NONE", "-")

    # logrotate: move the file away, SIGUSR1, and new lines go to a new file.
    rotated = tmp_path / "access.log.1"
    log.rename(rotated)
    os.kill(gw.process.proc.pid, signal.SIGUSR1)
    wait_for("the log file to be reopened", log.exists)
    assert curl(gw.port, "/c", pki=pki, client=alice).status == 200
    wait_for("a line in the new file", lambda: "/c " in log.read_text())
    assert len(rotated.read_text().splitlines()) == 2


def test_json_access_log_lines_parse(gateway_factory, pki, backend, tmp_path):
    log = tmp_path / "access.json"
    gw = gateway_factory(ops_config(pki, backend.port, S.free_port(), log, "json"))
    alice = pki.clients["ascii_rsa"]
    assert curl(gw.port, "/q?a=%22b%22", pki=pki, client=alice,
                args=("-A", 'agent "quoted" \\ back')).status == 200
    wait_for("a log line", lambda: log.exists() and log.read_text().endswith("\n"))
    entry = json.loads(log.read_text().splitlines()[0])
    assert entry["status"] == 200 and entry["method"] == "GET"
    assert entry["uri"] == "/q?a=%22b%22"
    assert entry["http_user_agent"] == 'agent "quoted" \\ back'
    assert entry["server"] == "api" and entry["route"] == "/"
    assert entry["ssl_client_verify"] == "SUCCESS"
    assert entry["ssl_client_s_dn"].startswith("CN=alice,")
    assert isinstance(entry["request_time"], float)
    assert isinstance(entry["upstream_response_time"], float)


# ---------------------------------------------------------------------------
# A download in flight across reloads
# ---------------------------------------------------------------------------

DOWNLOAD_SECONDS = 30
CHUNK = 64 * 1024


def chunk(i: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest() * (CHUNK // 32)


class TrickleHandler(BaseHTTPRequestHandler):
    """Sends DOWNLOAD_SECONDS chunks, one per second, with a Content-Length."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(CHUNK * DOWNLOAD_SECONDS))
        self.end_headers()
        for i in range(DOWNLOAD_SECONDS):
            self.wfile.write(chunk(i))
            self.wfile.flush()
            time.sleep(1)

    def log_message(self, *args):
        pass


@pytest.fixture
def trickle():
    server = ThreadingHTTPServer(("127.0.0.1", 0), TrickleHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_thirty_second_download_survives_reloads_byte_exact(gateway_factory, pki, trickle, tmp_path):
    admin = S.free_port()
    config = ops_config(pki, trickle, admin, tmp_path / "access.log", "combined")
    config["pid_file"] = "certgate.pid"  # next to gateway.yaml
    gw = gateway_factory(config)
    assert (gw.dir / "certgate.pid").read_text().strip() == str(gw.process.proc.pid)
    alice = pki.clients["ascii_rsa"]
    out = tmp_path / "download.bin"
    download = subprocess.Popen(
        ["curl", "-sS", "--max-time", "90", "--cacert", str(pki.ca_crt),
         "--cert", str(alice.chain), "--key", str(alice.key),
         "--resolve", f"localhost:{gw.port}:127.0.0.1",
         "-o", str(out), "-w", "%{http_code}", f"https://localhost:{gw.port}/video"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    wait_for("the download to start", lambda: out.exists() and out.stat().st_size > 0)
    # Reload several times while the body streams: the route's headers change each time.
    for i in range(5):
        config["servers"][0]["routes"][0]["headers"] = {"X-Generation": str(i)}
        r = reload_gateway(gw, config)
        assert r.returncode == 0, r.stderr
        assert f"process {gw.process.proc.pid} reloaded" in r.stdout, r.stdout
        time.sleep(1)
    assert value(scrape(admin), "certgate_config_reloads_total", result="success") == 5
    assert download.poll() is None, "the download should still be in flight after the reloads"
    stdout, stderr = download.communicate(timeout=120)
    assert download.returncode == 0, stderr
    assert stdout == "200"
    expected = hashlib.sha256(b"".join(chunk(i) for i in range(DOWNLOAD_SECONDS))).hexdigest()
    assert out.stat().st_size == CHUNK * DOWNLOAD_SECONDS
    assert hashlib.sha256(out.read_bytes()).hexdigest() == expected
