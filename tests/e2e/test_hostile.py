"""Hostile clients with real tools against certgate in front of real servers.

- A real WSGI server (the standard library's wsgiref, which like gunicorn maps `-` and `_` in
  header names to the same `HTTP_*` variable and joins duplicates with a comma): a client's
  `X_SSL_Client_S_DN: CN=evil` must never show up in the application's
  `HTTP_X_SSL_CLIENT_S_DN`, with `underscores_in_headers` off (dropped) or on (compared with
  `_` read as `-`). The same request sent to wsgiref directly shows the attack works there.
- curl's plain `http://` to the TLS port gets nginx's 400 page.
- A slow header (slowloris) from Python sockets is cut at `client_header_timeout`.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
import requests

import e2e_servers as S

ALICE_S_DN = "CN=alice,OU=Engineering,O=Example Corp,L=San Francisco,ST=California,C=US"

SPOOFS = {
    "X_SSL_Client_S_DN": "CN=evil",
    "x-ssl-client_verify": "SUCCESS-forged",
    "X-SSL-Client_S-DN": "CN=evil-mixed",
    "X_Forwarded_Client_Cert": "By=evil",
    "X_Custom": "innocent",
}


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def wsgi_app():
    """wsgiref serving the WSGI environ's identity variables as JSON."""

    def app(environ, start_response):
        body = json.dumps({
            "dn": environ.get("HTTP_X_SSL_CLIENT_S_DN"),
            "verify": environ.get("HTTP_X_SSL_CLIENT_VERIFY"),
            "xfcc": environ.get("HTTP_X_FORWARDED_CLIENT_CERT"),
            "custom": environ.get("HTTP_X_CUSTOM"),
        }).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()


def test_the_underscore_spoof_works_against_wsgi_directly(wsgi_app):
    """Control: what certgate must prevent is real."""
    r = requests.get(f"http://127.0.0.1:{wsgi_app}/",
                     headers={"X-SSL-Client-S-DN": ALICE_S_DN, **SPOOFS}, timeout=10)
    assert r.json()["dn"] in (f"{ALICE_S_DN},CN=evil,CN=evil-mixed",
                              f"CN=evil,{ALICE_S_DN},CN=evil-mixed")


@pytest.mark.parametrize("underscores", [False, True])
def test_no_spelling_of_the_identity_headers_reaches_a_wsgi_app(
        gateway_factory, pki, wsgi_app, underscores):
    config = S.gateway_config(pki, S.free_port(), wsgi_app)
    config["underscores_in_headers"] = underscores
    gw = gateway_factory(config)
    alice = pki.clients["ascii_rsa"]
    r = requests.get(f"https://localhost:{gw.port}/", headers=SPOOFS,
                     cert=(str(alice.chain), str(alice.key)), verify=str(pki.ca_crt),
                     timeout=10)
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["dn"] == ALICE_S_DN
    assert seen["verify"] == "SUCCESS"
    assert seen["xfcc"] is None
    # An innocent underscore header passes only when allowed, as with nginx.
    assert seen["custom"] == ("innocent" if underscores else None)


def test_curl_plain_http_to_the_tls_port_gets_nginx_400(gateway):
    p = subprocess.run(["curl", "-sS", "-i", "--max-time", "10",
                        f"http://127.0.0.1:{gateway.port}/"],
                       capture_output=True, timeout=20)
    out = p.stdout.decode()
    assert out.startswith("HTTP/1.1 400 Bad Request"), out
    assert "The plain HTTP request was sent to HTTPS port" in out


def test_slowloris_without_a_certificate_is_cut_at_client_header_timeout(
        gateway_factory, pki, backend):
    config = S.gateway_config(pki, S.free_port(), backend.port)
    config["client_header_timeout"] = "2s"
    gw = gateway_factory(config)
    before = backend.count
    ctx = ssl.create_default_context(cafile=str(pki.ca_crt))
    with socket.create_connection(("127.0.0.1", gw.port)) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.settimeout(0.3)
            started = time.monotonic()
            closed_after = None
            for b in b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 100:
                try:
                    tls.sendall(bytes([b]))
                    if tls.recv(1024) == b"":
                        closed_after = time.monotonic() - started
                        break
                except socket.timeout:
                    continue
                except (ConnectionError, ssl.SSLError, OSError):
                    closed_after = time.monotonic() - started
                    break
    assert closed_after is not None, "the slow header was never cut off"
    assert 1.5 <= closed_after < 6, closed_after
    assert backend.count == before
