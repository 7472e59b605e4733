"""A real browser through certgate: Debian's Chromium, headless, with the client certificate
a user would import — the .p12 from `certgate certs p12`, imported by pk12util into the NSS
database Chromium reads on Linux — chosen without a prompt by AutoSelectCertificateForUrls.

The page served through certgate shows the caller's subject and plays a real WebM in a
<video> that seeks; the media backend records the Range requests the browser made. Without
the certificate the browser gets certgate's 400 page.

`browse()` (e2e_clients.py) is the reusable part: load a URL in a fresh browser with or
without the certificate, get back what the page reported and a screenshot.

CERTGATE_E2E_SCREENSHOT_DIR=docs/img copies the screenshots there (how docs/img/browser-*.png
were made).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import pytest

import e2e_clients as C
import e2e_pki

P12_PASSWORD = "e2e-p12-pass"
SEEK = 8.5
FETCH_RANGE = (1000, 1999)
# Chromium's media cache (media/blink MultiBuffer) reads in blocks of 32 KiB, so the range
# it asks for after a seek starts at the block holding the data it needs.
MEDIA_BLOCK = 32 * 1024


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("browser")


@pytest.fixture(scope="module")
def user(pki):
    """The user's certificate: RSA, issued by the root, a six-attribute subject."""
    return pki.clients["ascii_rsa"]


@pytest.fixture(scope="module")
def homes(pki, user, work):
    """Two $HOMEs for Chromium: one whose NSS database holds the user's .p12 (and trusts the
    CA for the gateway's certificate), one that only trusts the CA."""
    C.require_chromium()
    p12 = C.make_p12(user, pki.ca_crt, work / "alice.p12", P12_PASSWORD)
    with_cert = C.nss_home(work / "home-with-cert", pki.ca_crt, p12, P12_PASSWORD)
    without = C.nss_home(work / "home-without-cert", pki.ca_crt)
    return {"with": with_cert, "without": without}


@pytest.fixture(scope="module")
def clip(work):
    return C.make_clip(work / "clip.webm")


@pytest.fixture(scope="module")
def media(clip):
    b = C.MediaBackend({"clip.webm": clip.path})
    yield b
    b.stop()


@pytest.fixture(scope="module")
def gw(module_gateway_factory, media):
    return module_gateway_factory(upstreams={"app": {"servers": [f"127.0.0.1:{media.port}"]}})


def auto_select(gw):
    return [(gw.url, e2e_pki.ROOT_CA_CN)]


def keep_screenshot(result: C.BrowserResult, name: str) -> None:
    assert result.screenshot is not None and result.screenshot.stat().st_size > 5000, result
    assert result.screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dest = os.environ.get("CERTGATE_E2E_SCREENSHOT_DIR")
    if dest:
        Path(dest).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.screenshot, Path(dest) / name)


def test_p12_from_certgate_imports_into_nss(homes, user):
    listing = C.nss_list(homes["with"])
    # "u,u,u": a user certificate, i.e. NSS holds its private key too.
    line = next((ln for ln in listing.splitlines() if "CN=alice" in ln), None)
    assert line is not None and line.rstrip().endswith("u,u,u"), listing
    assert "CN=alice" not in C.nss_list(homes["without"])


def test_chromium_lists_the_imported_certificate(homes, work):
    """What a user sees after importing: Settings > Privacy and security > Security >
    Manage certificates > Your certificates > View imported certificates from Linux."""
    r = C.browse("chrome://certificate-manager/clientcerts/platformclientcerts",
                 home=homes["with"], workdir=work, steps=[{"waitForText": "alice"}],
                 screenshot="certificate-manager.png", viewport=(900, 300))
    assert r.error is None and r.steps == 1, r
    keep_screenshot(r, "browser-certificate-manager.png")


def test_page_shows_subject_and_video_seeks_with_206(gw, media, clip, homes, user, work):
    subject = user.obj.subject.rfc4514_string()  # ASCII only: same as nginx's $ssl_client_s_dn
    before = len(media.requests())
    r = C.browse(
        f"{gw.url}/page?seek={SEEK}&range={FETCH_RANGE[0]}-{FETCH_RANGE[1]}",
        home=homes["with"], workdir=work, auto_select=auto_select(gw), wait_for_report=True,
        screenshot="with-certificate.png", viewport=(760, 530),
    )
    assert r.error is None, r
    assert r.status == 200, r
    rep = r.report
    assert rep["verify"] == "SUCCESS", rep
    assert rep["subject"] == subject, rep
    assert subject in r.text and "SUCCESS" in r.text

    # The video played from where it was sent: no error, seeked to SEEK, played on.
    assert "videoError" not in rep and "playError" not in rep, rep
    assert abs(rep["duration"] - clip.duration) < 0.2, rep
    assert abs(rep["seekedAt"] - SEEK) < 0.05, rep
    assert rep["playedTo"] >= SEEK + 0.5, rep

    size = clip.path.stat().st_size
    reqs = media.requests()[before:]
    video_reqs = [q for q in reqs if q["range"] != f"bytes={FETCH_RANGE[0]}-{FETCH_RANGE[1]}"]
    # Every media request went through certgate with the certificate.
    assert reqs and all(q["subject"] == subject for q in reqs), reqs
    # The browser asked for ranges, and got 206 answers with the matching Content-Range.
    for q in video_reqs:
        start, end = C.parse_range(q["range"])
        assert q["status"] == 206, q
        last = size - 1 if end is None else min(end, size - 1)
        assert q["content_range"] == f"bytes {start}-{last}/{size}", q
    # The seek: a request starting in the part of the file that holds SEEK — at or before
    # the keyframe the decoder starts from, within one cache block of it — not from 0, and
    # not a continuation of the first download.
    kf_time, kf_pos = clip.keyframe_before(SEEK)
    seek_reqs = [q for q in video_reqs
                 if kf_pos - MEDIA_BLOCK - 4096 < C.parse_range(q["range"])[0] <= kf_pos]
    assert seek_reqs, (f"no 206 request for the range holding t={kf_time}s (keyframe at byte "
                       f"{kf_pos}); requests: {video_reqs}")
    first = C.parse_range(video_reqs[0]["range"])
    assert first[0] == 0, video_reqs
    assert video_reqs[0]["sent"] < kf_pos, ("the first download reached the seek target "
                                            f"before the seek: {video_reqs}")

    # fetch() with a Range header: 206, exactly those bytes.
    a, b = FETCH_RANGE
    data = clip.path.read_bytes()
    assert rep["fetch"] == {
        "status": 206, "contentRange": f"bytes {a}-{b}/{size}", "length": b - a + 1,
        "sha256": hashlib.sha256(data[a:b + 1]).hexdigest(),
    }, rep
    fetched = [q for q in reqs if q["range"] == f"bytes={a}-{b}"]
    assert len(fetched) == 1 and fetched[0]["status"] == 206 and fetched[0]["finished"], reqs
    keep_screenshot(r, "browser-with-certificate.png")


def test_without_certificate_the_browser_gets_the_400_page(gw, media, homes, work):
    before = len(media.page_requests)
    r = C.browse(f"{gw.url}/page", home=homes["without"], workdir=work,
                 auto_select=auto_select(gw), screenshot="without-certificate.png",
                 viewport=(760, 160))
    assert r.error is None, r
    assert r.status == 400, r
    assert r.title == "400 No required SSL certificate was sent", r
    assert "No required SSL certificate was sent" in r.text, r
    assert len(media.page_requests) == before, "the request reached the backend"
    keep_screenshot(r, "browser-without-certificate.png")


def test_managed_policy_selects_the_certificate(gw, media, homes, user, work):
    """AutoSelectCertificateForUrls as an administrator deploys it: a JSON file under
    /etc/chromium/policies/managed/, no per-profile setting."""
    policy = C.ManagedPolicy(gw.url, e2e_pki.ROOT_CA_CN)
    try:
        r = C.browse(f"{gw.url}/page?seek=1", home=homes["with"], workdir=work,
                     wait_for_report=True)
    finally:
        policy.remove()
    assert r.error is None, r
    assert r.status == 200, r
    assert r.report["subject"] == user.obj.subject.rfc4514_string(), r.report
    assert r.report["verify"] == "SUCCESS", r.report


def test_video_on_another_origins_page_needs_the_certificate(gw, media, homes, user, work):
    """The page comes from elsewhere (here the backend itself, plain HTTP) and its <video>
    points at certgate: with the certificate in the browser the video plays and seeks;
    without it the media request gets the 400 and the video fails. (The baseline a signed
    URL changes: same page, no certificate, a URL minted over mTLS.)"""
    page = (f"http://127.0.0.1:{media.port}/page?seek=3.5&range=none"
            f"&src={gw.url}/media/clip.webm")
    before = len(media.requests())
    ok = C.browse(page, home=homes["with"], workdir=work, auto_select=auto_select(gw),
                  wait_for_report=True)
    assert ok.error is None, ok
    assert "videoError" not in ok.report and ok.report["playedTo"] >= 4.0, ok.report
    seen = media.requests()[before:]
    assert seen and all(q["subject"] == user.obj.subject.rfc4514_string() for q in seen), seen
    assert any(q["status"] == 206 and C.parse_range(q["range"])[0] > 0 for q in seen), seen

    before = len(media.requests())
    no = C.browse(page, home=homes["without"], workdir=work, auto_select=auto_select(gw),
                  wait_for_report=True)
    assert no.error is None, no
    assert "videoError" in no.report and "playedTo" not in no.report, no.report
    assert media.requests()[before:] == [], "a media request without certificate was forwarded"
    # certgate's access log: the media request, answered 400, no identity.
    assert re.search(r'"GET /media/clip\.webm HTTP/[0-9.]+" 400 .* "-" NONE ', gw.log()), gw.log()


@pytest.fixture(scope="module")
def signed_gw(module_gateway_factory, pki, media, work):
    """certgate with /media/ under signed_urls in front of the browser's media backend."""
    import e2e_servers as S
    from e2e_signed import url_key

    key = url_key(work / "url.key")
    config = S.gateway_config(
        pki, S.free_port(), media.port,
        routes=[
            {"match": {"path_prefix": "/media/"}, "upstream": "app",
             "signed_urls": {"key_file": str(key), "max_ttl": "5m"}},
            {"match": {"path_prefix": "/"}, "upstream": "app"},
        ],
    )
    return module_gateway_factory(config)


def test_a_video_without_a_certificate_plays_and_seeks_a_signed_url(
        signed_gw, media, homes, user, work, pki):
    """The Electron renderer case: the page and its <video> have no client certificate; the
    holder of the certificate minted the URL over mTLS. The video plays and seeks on it, the
    backend sees the minting identity with X-SSL-Client-Verify: SIGNED and never the
    signature; the same URL with its expiry altered is refused."""
    import requests

    minted = requests.post(
        f"{signed_gw.url}/.certgate/sign", params={"path": "/media/clip.webm", "ttl": "120"},
        cert=(str(user.chain), str(user.key)), verify=str(pki.ca_crt), timeout=30)
    assert minted.status_code == 200, minted.text
    url = minted.json()["absolute_url"]
    page = f"http://127.0.0.1:{media.port}/page?seek=3.5&range=none&src={requests.utils.quote(url, safe='')}"
    before = len(media.requests())
    r = C.browse(page, home=homes["without"], workdir=work, wait_for_report=True)
    assert r.error is None, r
    assert "videoError" not in r.report, r.report
    assert r.report["playedTo"] >= 4.0, r.report
    seen = media.requests()[before:]
    assert seen, "no media request reached the backend"
    assert all(q["subject"] == user.obj.subject.rfc4514_string() for q in seen), seen
    assert all(q["verify"] == "SIGNED" for q in seen), seen
    assert all("cg_" not in q["query"] for q in seen), seen
    # Seeking: Range requests past the start, answered 206.
    assert any(q["status"] == 206 and C.parse_range(q["range"])[0] > 0 for q in seen), seen

    # Altered: the same URL with a later expiry is a 403 and the video fails.
    exp = re.search(r"cg_exp=(\d+)", url).group(1)
    forged = url.replace(f"cg_exp={exp}", f"cg_exp={int(exp) + 3600}")
    page = f"http://127.0.0.1:{media.port}/page?seek=3.5&range=none&src={requests.utils.quote(forged, safe='')}"
    before = len(media.requests())
    no = C.browse(page, home=homes["without"], workdir=work, wait_for_report=True)
    assert no.error is None, no
    assert "videoError" in no.report, no.report
    assert media.requests()[before:] == [], "an altered signed URL was forwarded"
