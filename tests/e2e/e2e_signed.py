"""Signed-URL fixtures: a Range-capable Flask media backend that records what reached it,
and certgate with a `signed_urls` route in front of it.

A browser test only needs the `signed_media` fixture (import it into the test module:
`from e2e_signed import signed_media, signed_video  # noqa: F401`):

    url = signed_media.mint("/media/video.mp4", ttl=120)   # absolute https URL, minted over mTLS
    page = signed_media.player_page(url)                   # HTML with <video src=url>

`url` is then loaded from a context with no client certificate (trust `pki.ca_crt`);
`signed_media.backend.seen` lists what reached the backend (path, query, headers) and
`signed_media.video` is the file it serves.
"""

from __future__ import annotations

import html
import os
import subprocess
import threading
from pathlib import Path

import pytest
import requests
from flask import Flask, request, send_file
from werkzeug.serving import make_server

import e2e_servers as S

# 3 MiB + a tail: several Range requests for a player, small enough to stay fast.
VIDEO_SIZE = 3 * 1024 * 1024 + 4321


class MediaBackend:
    """Flask: /media/<name> serves `video` with Range support (send_file, conditional);
    anything else answers 200 "ok". Records method, path, query and headers."""

    def __init__(self, video: Path):
        self.seen: list[dict] = []
        self._lock = threading.Lock()
        app = Flask("certgate-e2e-signed-media")

        @app.route("/", defaults={"path": ""})
        @app.route("/<path:path>")
        def any_path(path):
            with self._lock:
                self.seen.append({
                    "path": request.path,
                    "query": request.query_string.decode("latin-1"),
                    "headers": dict(request.headers),
                })
            if request.path.startswith("/media/"):
                return send_file(video, mimetype="video/mp4", conditional=True)
            return "ok"

        self.port = S.free_port()
        self.server = make_server("127.0.0.1", self.port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        S.wait_port(self.port)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.seen)

    def last(self) -> dict:
        with self._lock:
            return self.seen[-1]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class SignedMedia:
    """certgate (verify: on) with `/media/` under `signed_urls` (allow: alice's CN) in
    front of a MediaBackend."""

    def __init__(self, pki, gateway, backend: MediaBackend, video: Path, minter):
        self.pki = pki
        self.gateway = gateway
        self.backend = backend
        self.video = video
        self.minter = minter  # the Issued client certificate that mints

    def mint(self, path: str, ttl: int | None = None, *, prefix: bool = False, client=None) -> str:
        """The absolute signed URL for `path` (or a `prefix=` directory), minted over mTLS."""
        r = self.mint_response(path, ttl, prefix=prefix, client=client)
        assert r.status_code == 200, r.text
        assert r.headers["Cache-Control"] == "no-store"
        return r.json()["absolute_url"]

    def mint_response(self, path: str, ttl: int | None = None, *, prefix: bool = False,
                      client=None) -> requests.Response:
        who = client or self.minter
        params = {"prefix" if prefix else "path": path}
        if ttl is not None:
            params["ttl"] = str(ttl)
        return requests.post(f"{self.gateway.url}/.certgate/sign", params=params,
                             cert=(str(who.chain), str(who.key)), verify=str(self.pki.ca_crt),
                             timeout=30)

    @staticmethod
    def player_page(url: str) -> str:
        """A page that plays `url` in a <video> element and reports progress in the title."""
        src = html.escape(url, quote=True)
        return (
            "<!doctype html><html><body>"
            f'<video id="v" src="{src}" preload="auto" muted></video>'
            "<script>const v=document.getElementById('v');"
            "v.addEventListener('loadedmetadata',()=>document.title='metadata');"
            "v.addEventListener('error',()=>document.title='error '+(v.error&&v.error.code));"
            "</script></body></html>"
        )


def url_key(path: Path) -> Path:
    subprocess.run([str(S.certgate_bin()), "certs", "url-key", "-o", str(path)],
                   check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def signed_video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("signed-media") / "video.mp4"
    path.write_bytes(os.urandom(VIDEO_SIZE))
    return path


@pytest.fixture(scope="module")
def signed_media(module_gateway_factory, tmp_path_factory, pki, signed_video):
    backend = MediaBackend(signed_video)
    minter = pki.clients["ascii_rsa"]
    key = url_key(tmp_path_factory.mktemp("url-key") / "url.key")
    config = S.gateway_config(
        pki, S.free_port(), backend.port,
        routes=[
            {"match": {"path_prefix": "/media/"}, "upstream": "app",
             "allow": [{"cn": ["alice"]}],
             "signed_urls": {"key_file": str(key), "max_ttl": "10m"}},
            {"match": {"path_prefix": "/"}, "upstream": "app"},
        ],
    )
    gateway = module_gateway_factory(config)
    yield SignedMedia(pki, gateway, backend, signed_video, minter)
    backend.stop()
