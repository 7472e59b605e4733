"""Streaming through certgate, never buffering a whole body: Range/206 seeking in a
24 MB "video" served by Flask's send_file, chunked uploads, server-sent events that must
arrive one by one, and a WebSocket echo (the upgrade request carries the identity).
"""

from __future__ import annotations

import hashlib
import os
import ssl
import threading

import pytest
import requests
from flask import Flask, Response, request, send_file
from werkzeug.serving import make_server

import e2e_servers as S

websockets_sync = pytest.importorskip("websockets.sync.server")
from websockets.sync.client import connect as ws_connect  # noqa: E402

ALICE_S_DN = "CN=alice,OU=Engineering,O=Example Corp,L=San Francisco,ST=California,C=US"
VIDEO_SIZE = 24 * 1024 * 1024 + 12345


class MediaBackend:
    """Flask: /video.mp4 (Range-capable send_file), /upload (digest of the body, read
    as a stream), /events (SSE; event 2 is only sent after the test saw event 1)."""

    def __init__(self, video):
        self.video = video
        self.event_seen = threading.Event()
        self.upload_headers: dict = {}
        app = Flask("certgate-e2e-media")

        @app.get("/video.mp4")
        def video_file():
            return send_file(video, mimetype="video/mp4", conditional=True)

        @app.post("/upload")
        def upload():
            self.upload_headers = dict(request.headers)
            h = hashlib.sha256()
            n = 0
            stream = request.stream
            while True:
                chunk = stream.read(65536)
                if not chunk:
                    break
                n += len(chunk)
                h.update(chunk)
            return {"len": n, "sha256": h.hexdigest()}

        @app.get("/events")
        def events():
            def gen():
                yield "data: first\n\n"
                # Only continues once the client has seen the first event through the
                # gateway: a buffering proxy would deadlock here (and the test time out).
                ok = self.event_seen.wait(timeout=10)
                yield f"data: second {'after-ack' if ok else 'timeout'}\n\n"

            return Response(gen(), mimetype="text/event-stream",
                            headers={"Cache-Control": "no-cache"})

        self.port = S.free_port()
        self.server = make_server("127.0.0.1", self.port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        S.wait_port(self.port)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("media") / "video.mp4"
    path.write_bytes(os.urandom(VIDEO_SIZE))
    return path


@pytest.fixture(scope="module")
def media(video):
    b = MediaBackend(video)
    yield b
    b.stop()


@pytest.fixture(scope="module")
def media_gateway(module_gateway_factory, pki, media):
    config = S.gateway_config(
        pki, S.free_port(), media.port,
        routes=[{"match": {"path_prefix": "/"}, "upstream": "app", "max_body_size": 0}],
    )
    return module_gateway_factory(config)


class session:
    """requests with alice's certificate; `verify` per call, since a Session's own
    `verify` loses to REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the environment."""

    def __init__(self, pki):
        alice = pki.clients["ascii_rsa"]
        self.kw = {"cert": (str(alice.chain), str(alice.key)), "verify": str(pki.ca_crt)}

    def get(self, url, **kw):
        return requests.get(url, **self.kw, **kw)

    def post(self, url, **kw):
        return requests.post(url, **self.kw, **kw)


@pytest.mark.parametrize(
    "range_header,start,end",
    [
        ("bytes=0-99", 0, 99),
        ("bytes=1048576-2097151", 1048576, 2097151),
        ("bytes=20000000-", 20000000, VIDEO_SIZE - 1),
        ("bytes=-4096", VIDEO_SIZE - 4096, VIDEO_SIZE - 1),
    ],
)
def test_range_requests_return_exactly_the_requested_bytes(pki, media_gateway, video, range_header, start, end):
    data = video.read_bytes()
    r = session(pki).get(f"{media_gateway.url}/video.mp4", headers={"Range": range_header}, timeout=30)
    assert r.status_code == 206, r.text[:300]
    assert r.headers["Content-Range"] == f"bytes {start}-{end}/{VIDEO_SIZE}"
    assert int(r.headers["Content-Length"]) == end - start + 1
    assert r.content == data[start : end + 1]


def test_range_over_http2_with_curl(pki, media_gateway, video):
    data = video.read_bytes()
    r = S.curl(media_gateway.port, "/video.mp4", pki=pki, client=pki.clients["ascii_rsa"],
               args=("--http2", "-r", "5000000-5999999"))
    assert r.status == 206 and r.http_version == "2", (r.status, r.http_version, r.stderr)
    assert r.body == data[5000000:6000000]


def test_whole_file_streams_intact(pki, media_gateway, video):
    r = session(pki).get(f"{media_gateway.url}/video.mp4", timeout=60)
    assert r.status_code == 200
    assert r.headers.get("Accept-Ranges") == "bytes"
    assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(video.read_bytes()).hexdigest()


def test_chunked_upload_streams_to_backend(pki, media_gateway, media):
    chunk = os.urandom(256 * 1024)
    count = 40  # 10 MB, larger than nginx's default client_max_body_size: the route sets 0

    def body():
        for _ in range(count):
            yield chunk

    r = session(pki).post(f"{media_gateway.url}/upload", data=body(), timeout=60)
    assert r.status_code == 200, r.text[:300]
    assert r.json() == {"len": len(chunk) * count,
                        "sha256": hashlib.sha256(chunk * count).hexdigest()}
    assert media.upload_headers.get("X-Ssl-Client-S-Dn") == ALICE_S_DN


def test_server_sent_events_are_not_buffered(pki, media_gateway, media):
    media.event_seen.clear()
    with session(pki).get(f"{media_gateway.url}/events", stream=True, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        lines = r.iter_lines()
        assert next(lines) == b"data: first"
        media.event_seen.set()
        rest = [line for line in lines if line]
    assert rest == [b"data: second after-ack"]


def start_ws_backend(ssl_context=None):
    seen = {}

    def handler(ws):
        seen["headers"] = dict(ws.request.headers.raw_items())
        for message in ws:
            ws.send(message)

    server = websockets_sync.serve(handler, "127.0.0.1", 0, ssl=ssl_context)
    port = server.socket.getsockname()[1]
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    return server, port, seen


@pytest.fixture(scope="module")
def ws_backend():
    server, port, seen = start_ws_backend()
    yield port, seen
    server.shutdown()


@pytest.fixture(scope="module")
def wss_backend(pki):
    """A WebSocket server over TLS (an `https` upstream that also offers h2 by ALPN is
    the case where the upgrade must be sent over HTTP/1.1)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki.server.cert), str(pki.server.key))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    server, port, seen = start_ws_backend(ctx)
    yield port, seen
    server.shutdown()


@pytest.mark.parametrize("upstream_tls", [False, True], ids=["http", "https"])
def test_websocket_echo_with_identity(pki, module_gateway_factory, ws_backend, wss_backend,
                                      upstream_tls):
    port, seen = wss_backend if upstream_tls else ws_backend
    seen.clear()
    upstream = {"servers": [f"127.0.0.1:{port}"]}
    if upstream_tls:
        upstream.update(protocol="https", tls={"trusted_ca": str(pki.ca_crt)})
    gw = module_gateway_factory(S.gateway_config(pki, S.free_port(), port,
                                                 upstreams={"app": upstream}))
    ctx = ssl.create_default_context(cafile=str(pki.ca_crt))
    alice = pki.clients["ascii_rsa"]
    ctx.load_cert_chain(str(alice.chain), str(alice.key))
    with ws_connect(f"wss://localhost:{gw.port}/ws", ssl=ctx, open_timeout=10,
                    additional_headers={"X-SSL-Client-S-DN": "CN=admin"}) as ws:
        for message in ["hello", "x" * 200_000, b"\x00\x01binary"]:
            ws.send(message)
            assert ws.recv(timeout=10) == message
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers.get("x-ssl-client-s-dn") == ALICE_S_DN
    assert headers.get("x-ssl-client-verify") == "SUCCESS"


def test_websocket_without_certificate_is_refused(pki, module_gateway_factory, ws_backend):
    port, seen = ws_backend
    seen.clear()
    gw = module_gateway_factory(S.gateway_config(pki, S.free_port(), port))
    ctx = ssl.create_default_context(cafile=str(pki.ca_crt))
    with pytest.raises(Exception) as err:
        with ws_connect(f"wss://localhost:{gw.port}/ws", ssl=ctx, open_timeout=10):
            pass
    assert "400" in str(err.value)
    assert "headers" not in seen, "a refused upgrade must not reach the upstream"
