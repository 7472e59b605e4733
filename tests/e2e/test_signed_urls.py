"""Signed URLs with real clients: minted over mTLS with `requests`, then fetched with no
client certificate by `requests` and curl, against a Flask backend serving a file with
Range support — a player's start, seeks and restart over the URL's lifetime."""

from __future__ import annotations

import hashlib
import time

import requests

import e2e_servers as S
from e2e_signed import signed_media, signed_video  # noqa: F401  (fixtures)

ALICE_S_DN = "CN=alice,OU=Engineering,O=Example Corp,L=San Francisco,ST=California,C=US"


def no_cert_get(pki, url, **kw):
    return requests.get(url, verify=str(pki.ca_crt), timeout=30, **kw)


def test_minted_url_plays_without_a_certificate_with_the_minting_identity(pki, signed_media):
    m = signed_media
    url = m.mint("/media/video.mp4", ttl=120)
    assert "cg_sig=" in url and url.startswith(f"{m.gateway.url}/media/video.mp4?")
    r = no_cert_get(pki, url)
    assert r.status_code == 200
    assert hashlib.sha256(r.content).digest() == hashlib.sha256(m.video.read_bytes()).digest()
    seen = m.backend.last()
    assert seen["path"] == "/media/video.mp4"
    assert seen["query"] == "", "the signature never reaches the backend"
    assert seen["headers"]["X-Ssl-Client-Verify"] == "SIGNED"
    assert seen["headers"]["X-Ssl-Client-S-Dn"] == ALICE_S_DN
    assert seen["headers"]["X-Ssl-Client-Cert"].startswith("-----BEGIN%20CERTIFICATE-----")

    # Without a signature the same path needs the certificate, as every other path does.
    before = m.backend.count
    r = no_cert_get(pki, f"{m.gateway.url}/media/video.mp4")
    assert r.status_code == 400 and "No required SSL certificate was sent" in r.text
    assert m.backend.count == before


def test_seeking_is_several_range_requests_on_one_url_over_its_ttl(pki, signed_media):
    m = signed_media
    data = m.video.read_bytes()
    size = len(data)
    url = m.mint("/media/video.mp4", ttl=60)
    player = requests.Session()  # one keep-alive connection, as a <video> element uses
    seeks = [(0, None), (2_000_000, 2_065_535), (100, 199), (size - 1000, None)]
    for start, end in seeks:
        rng = f"bytes={start}-" + ("" if end is None else str(end))
        r = player.get(url, headers={"Range": rng}, verify=str(pki.ca_crt), timeout=30)
        last = size - 1 if end is None else end
        assert r.status_code == 206, rng
        assert r.headers["Content-Range"] == f"bytes {start}-{last}/{size}"
        assert r.content == data[start:last + 1], rng
        assert m.backend.last()["headers"]["Range"] == rng
    # A restart later in the URL's life, on a new connection, over HTTP/2 with curl.
    time.sleep(1.5)
    path = url.split(f":{m.gateway.port}", 1)[1]
    res = S.curl(m.gateway.port, path, pki=pki, args=("--http2", "-r", "3000000-3000099"))
    assert res.status == 206 and res.http_version == "2", res.stderr
    assert res.body == data[3_000_000:3_000_100]


def test_an_expired_or_altered_url_is_403_and_not_forwarded(pki, signed_media):
    m = signed_media
    url = m.mint("/media/video.mp4", ttl=1)
    other = url.replace("/media/video.mp4?", "/media/other.mp4?", 1)
    before = m.backend.count
    assert no_cert_get(pki, other).status_code == 403
    time.sleep(2.1)
    r = no_cert_get(pki, url, headers={"Range": "bytes=0-99"})
    assert r.status_code == 403
    assert m.backend.count == before


def test_minting_is_refused_without_certificate_or_allow(pki, signed_media):
    m = signed_media
    r = requests.post(f"{m.gateway.url}/.certgate/sign", params={"path": "/media/video.mp4"},
                      verify=str(pki.ca_crt), timeout=30)
    assert r.status_code == 400
    # A verified certificate that the route's allow rules (cn: alice) refuse.
    r = m.mint_response("/media/video.mp4", client=pki.clients["utf8_ec"])
    assert r.status_code == 403 and "allow" in r.json()["error"]
    r = m.mint_response("/media/video.mp4", ttl=601)
    assert r.status_code == 400 and "max_ttl" in r.json()["error"]
    r = m.mint_response("/elsewhere")
    assert r.status_code == 404
