"""The clients the tutorials end with, driven from the e2e suite, and the backends they need.

- Chromium (Debian's /usr/bin/chromium, headless, driven by playwright-core through
  clients/node/browser.mjs): client certificates from an NSS database
  ($HOME/.pki/nssdb, filled with certutil/pk12util from a .p12 made by `certgate certs p12`),
  chosen without a prompt by AutoSelectCertificateForUrls (as the per-profile content
  setting, or as the managed policy file);
- Go (clients/go): the seeds' crypto/tls client and a net/http backend, built with `go build`;
- Node (clients/node/axios_client.mjs): the seeds' Electron main-process code, https.Agent +
  axios;
- `MediaBackend`: a Flask app serving an HTML page that shows the caller's identity and a
  `<video>` that seeks, and the media file with Range support (werkzeug's), throttled so a
  seek has to ask for a new range; it records every media request.

The tools are checked by `require()`: a missing one skips its tests, unless
CERTGATE_E2E_REQUIRE_CLIENTS=1 (set by .ci/run), where it fails them.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from flask import Flask, Response, abort, jsonify, request, send_file
from werkzeug.serving import make_server

import e2e_servers as S

CLIENTS_DIR = Path(__file__).resolve().parent / "clients"
NODE_DIR = CLIENTS_DIR / "node"
GO_DIR = CLIENTS_DIR / "go"
CHROMIUM_BIN = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")

# Unlike the stock tools (curl, openssl), these are optional for a developer's run; CI wants them.
REQUIRE = os.environ.get("CERTGATE_E2E_REQUIRE_CLIENTS") == "1"


def require(ok: bool, what: str) -> None:
    if ok:
        return
    msg = f"{what} (see tests/e2e/README.md: `.ci/run` installs it)"
    if REQUIRE:
        pytest.fail(msg)
    pytest.skip(msg)


def _run(argv: list[str], timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


# --------------------------------------------------------------------------
# certgate certs p12, NSS databases
# --------------------------------------------------------------------------


def make_p12(client, ca_crt: Path, out: Path, password: str) -> Path:
    """`certgate certs p12` on a client certificate: the file a user imports in a browser."""
    _run(
        [str(S.certgate_bin()), "certs", "p12", "--cert", str(client.chain), "--key",
         str(client.key), "--ca", str(ca_crt), "--out", str(out), "--password-env", "P12_PASSWORD"],
        env={**os.environ, "P12_PASSWORD": password},
    )
    return out


def nss_home(home: Path, ca_crt: Path, p12: Path | None = None, password: str = "") -> Path:
    """A $HOME whose NSS database ($HOME/.pki/nssdb, where Chromium on Linux keeps the
    user's certificates) trusts `ca_crt` for servers and, with `p12`, holds the client
    certificate and key imported from it, as `pk12util -i` does for a user."""
    require(shutil.which("certutil") is not None and shutil.which("pk12util") is not None,
            "certutil/pk12util not found (Debian: libnss3-tools)")
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True, exist_ok=True)
    d = f"sql:{db}"
    _run(["certutil", "-N", "-d", d, "--empty-password"])
    # "C,,": trusted to issue server certificates (the gateway's), nothing else.
    _run(["certutil", "-A", "-d", d, "-n", "certgate e2e CA", "-t", "C,,", "-i", str(ca_crt)])
    if p12 is not None:
        _run(["pk12util", "-i", str(p12), "-d", d, "-W", password])
    return home


def nss_list(home: Path) -> str:
    return _run(["certutil", "-L", "-d", f"sql:{home / '.pki' / 'nssdb'}"]).stdout


# --------------------------------------------------------------------------
# Chromium
# --------------------------------------------------------------------------


def require_node_modules() -> None:
    require(shutil.which("node") is not None, "node not found")
    require((NODE_DIR / "node_modules" / "playwright-core").is_dir()
            and (NODE_DIR / "node_modules" / "axios").is_dir(),
            f"npm packages missing: cd {NODE_DIR} && npm ci")


def require_chromium() -> None:
    require(Path(CHROMIUM_BIN).exists(), f"{CHROMIUM_BIN} not found (Debian: chromium)")
    require_node_modules()


@dataclass
class BrowserResult:
    status: int | None  # HTTP status of the page, None if it did not load
    url: str | None
    title: str | None
    text: str | None  # document.body.innerText
    report: dict | None  # what the page put in window.certgateReport
    error: str | None  # navigation or wait error (e.g. net::ERR_CERT_AUTHORITY_INVALID)
    screenshot: Path | None
    steps: int  # how many of `steps` were done
    console: list[str] = field(default_factory=list)
    responses: list[dict] = field(default_factory=list)  # [{url, status, range}] the browser saw


def browse(
    url: str,
    *,
    home: Path,
    workdir: Path,
    auto_select: list[tuple[str, str]] = (),
    wait_for_report: bool = False,
    screenshot: str | None = None,
    steps: list[dict] = (),
    timeout: float = 25,
    viewport: tuple[int, int] = (800, 600),
) -> BrowserResult:
    """Load `url` in a fresh headless Chromium whose certificates are those of `home`'s NSS
    database. `auto_select`: [(origin pattern, issuer CN)], the AutoSelectCertificateForUrls
    rules, written to the new profile. With `wait_for_report`, waits until the page sets
    window.certgateReport. `steps`: [{"click": text} | {"waitForText": text}], done in order
    after that. `screenshot`: a file name inside `workdir`."""
    require_chromium()
    workdir.mkdir(parents=True, exist_ok=True)
    udd = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=workdir))
    job = {
        "url": url,
        "home": str(home),
        "userDataDir": str(udd),
        "autoSelect": [{"pattern": p, "issuerCN": cn} for p, cn in auto_select],
        "waitForReport": wait_for_report,
        "steps": list(steps),
        "screenshot": str(workdir / screenshot) if screenshot else None,
        "timeoutMs": int(timeout * 1000),
        "viewport": {"width": viewport[0], "height": viewport[1]},
    }
    job_path = udd.with_suffix(".json")
    job_path.write_text(json.dumps(job))
    p = subprocess.run(["node", str(NODE_DIR / "browser.mjs"), str(job_path)], cwd=NODE_DIR,
                       capture_output=True, text=True, timeout=timeout + 60)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"browser.mjs exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    out = json.loads(lines[-1])
    shutil.rmtree(udd, ignore_errors=True)
    return BrowserResult(
        status=out["status"], url=out["url"], title=out["title"], text=out["text"],
        report=out["report"], error=out["error"],
        screenshot=Path(out["screenshot"]) if out["screenshot"] else None, steps=out["steps"],
        console=out["console"], responses=out["responses"],
    )


class ManagedPolicy:
    """AutoSelectCertificateForUrls as an administrator sets it: a JSON file in Chromium's
    managed-policy directory (root-owned; written with `sudo -n` when not root). One file
    per use, removed by `remove()`; the pattern names one origin, so other Chromium runs on
    the machine are not affected."""

    DIR = Path("/etc/chromium/policies/managed")  # compiled into Debian's Chromium

    def __init__(self, pattern: str, issuer_cn: str):
        rule = {"pattern": pattern, "filter": {"ISSUER": {"CN": issuer_cn}}}
        text = json.dumps({"AutoSelectCertificateForUrls": [json.dumps(rule)]})
        self.path = self.DIR / f"certgate-e2e-{os.getpid()}-{time.monotonic_ns()}.json"
        self.sudo: list[str] = []
        try:
            self.DIR.mkdir(parents=True, exist_ok=True)
            self.path.write_text(text)
            return
        except PermissionError:
            pass
        can_sudo = shutil.which("sudo") is not None and subprocess.run(
            ["sudo", "-n", "true"], capture_output=True).returncode == 0
        require(can_sudo, f"cannot write {self.DIR} (root, or sudo without a password)")
        self.sudo = ["sudo", "-n"]
        _run([*self.sudo, "mkdir", "-p", str(self.DIR)])
        _run([*self.sudo, "tee", str(self.path)], input=text)

    def remove(self) -> None:
        if self.sudo:
            _run([*self.sudo, "rm", "-f", str(self.path)])
        else:
            self.path.unlink(missing_ok=True)


# --------------------------------------------------------------------------
# Video: the clip and the backend that serves it
# --------------------------------------------------------------------------


@dataclass
class Clip:
    path: Path
    duration: float
    keyframes: list[tuple[float, int]]  # (pts seconds, byte position), in order

    def keyframe_before(self, t: float) -> tuple[float, int]:
        return [k for k in self.keyframes if k[0] <= t][-1]


def make_clip(out: Path, seconds: int = 12) -> Clip:
    """A real WebM (VP8, 320x240, test pattern with a running clock, noise so it is not tiny:
    ~750 KB), one keyframe a second. ffmpeg from Debian; about a second to encode."""
    require(shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None,
            "ffmpeg/ffprobe not found (Debian: ffmpeg)")
    _run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
          "-i", f"testsrc=size=320x240:rate=25:duration={seconds}",
          "-vf", "noise=alls=12:allf=t:all_seed=17", "-c:v", "libvpx", "-deadline", "realtime",
          "-cpu-used", "8", "-b:v", "500k", "-g", "25", "-keyint_min", "25", "-an", "-y", str(out)],
         timeout=120)
    probe = _run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries",
                  "packet=pts_time,pos,flags", "-of", "json", str(out)])
    keyframes = [(float(p["pts_time"]), int(p["pos"]))
                 for p in json.loads(probe.stdout)["packets"] if "K" in p["flags"]]
    fmt = _run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json",
                str(out)])
    return Clip(out, float(json.loads(fmt.stdout)["format"]["duration"]), keyframes)


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>certgate: who am I</title>
<style>
 body {{ font: 15px DejaVu Sans, sans-serif; margin: 18px; color: #222; }}
 h1 {{ font-size: 19px; margin: 0 0 10px; }}
 .k {{ color: #666; }} code {{ font: 13px DejaVu Sans Mono, monospace; }}
 video {{ display: block; margin: 10px 0; width: 320px; height: 240px; background: #000; }}
 pre {{ font: 12px DejaVu Sans Mono, monospace; background: #f3f3f3; padding: 6px; margin: 0; }}
</style></head>
<body>
<h1>Served through certgate</h1>
<div><span class="k">X-SSL-Client-Verify:</span> <code id="verify">{verify}</code></div>
<div><span class="k">X-SSL-Client-S-DN:</span> <code id="subject">{subject}</code></div>
<video id="v" muted playsinline preload="metadata" src="{src}"></video>
<pre id="log">loading {src}</pre>
<script>
const SEEK = {seek}, RANGE = {range};
const report = {{ verify: {verify_js}, subject: {subject_js}, src: {src_js}, seekTo: SEEK }};
const v = document.getElementById('v'), log = document.getElementById('log');
function show() {{
  const lines = [];
  if (report.videoError || report.playError) lines.push(`video error: ${{report.videoError || report.playError}}`);
  if (report.playedTo !== undefined)
    lines.push(`<video>: ${{report.duration}} s, seeked to ${{report.seekedAt}} s, played on to ${{report.playedTo.toFixed(2)}} s`);
  if (report.fetch) {{
    const f = report.fetch;
    lines.push(`fetch(Range: bytes=${{RANGE[0]}}-${{RANGE[1]}}): ${{f.status}}, Content-Range: ${{f.contentRange}}, ${{f.length}} bytes`);
  }}
  if (report.backendSaw) {{
    lines.push('', `the backend saw, for ${{report.src}}:`);
    for (const q of report.backendSaw)
      lines.push(`  Range: ${{(q.range || '-').padEnd(22)}} -> ${{q.status}} Content-Range: ${{q.content_range}}`);
  }}
  log.textContent = lines.join('\\n');
}}
async function done(extra) {{
  Object.assign(report, extra);
  try {{
    const r = await fetch('/media-log');
    if (r.ok) report.backendSaw = await r.json();
  }} catch (e) {{ /* a page without the gateway's backend behind it */ }}
  show();
  window.certgateReport = report;
}}
async function rangeFetch() {{
  // fetch() with a Range header, through the same gateway (and the same client certificate).
  const r = await fetch(report.src, {{ headers: {{ Range: `bytes=${{RANGE[0]}}-${{RANGE[1]}}` }} }});
  const buf = await r.arrayBuffer();
  const digest = await crypto.subtle.digest('SHA-256', buf);
  const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
  return {{ status: r.status, contentRange: r.headers.get('content-range'), length: buf.byteLength, sha256: hex }};
}}
v.addEventListener('error', () => done({{ videoError: v.error ? `${{v.error.code}} ${{v.error.message}}` : 'error' }}));
v.addEventListener('loadedmetadata', () => {{
  report.duration = v.duration;
  v.currentTime = SEEK;
}}, {{ once: true }});
v.addEventListener('seeked', () => {{
  report.seekedAt = v.currentTime;
  v.play().catch((e) => done({{ playError: String(e) }}));
  const onTime = async () => {{
    if (v.currentTime < SEEK + 0.5) return;
    v.removeEventListener('timeupdate', onTime);
    v.pause();
    report.playedTo = v.currentTime;
    if (RANGE === null) {{ done({{}}); return; }}
    try {{ done({{ fetch: await rangeFetch() }}); }} catch (e) {{ done({{ fetchError: String(e) }}); }}
  }};
  v.addEventListener('timeupdate', onTime);
}}, {{ once: true }});
</script>
</body></html>
"""


def _js(value) -> str:
    # json.dumps, safe inside <script>: no "</script>" can end it early.
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e")


class MediaBackend:
    """Flask app behind certgate:

    - GET /page?src=...&seek=...&range=A-B: the page above. It shows the identity headers the
      gateway sent, loads `src` (default /media/clip.webm; any URL, e.g. one on another
      origin) in a <video>, seeks to `seek` seconds once the metadata is in, plays half a
      second from there, then fetch()es bytes A-B of `src` with a Range header (`range=none`:
      no fetch, for a cross-origin `src` without CORS), and shows what /media-log says; the
      result lands in window.certgateReport. The page can also be loaded from the backend
      directly (http://127.0.0.1:<port>/page), e.g. to play a URL minted by the gateway in a
      page that has no certificate.
    - GET /media-log: the media requests recorded so far (Range, status, Content-Range).
    - GET /media/<name>: the file, with werkzeug's Range handling (206, Content-Range,
      416), sent at about 320 KB/s so that the browser has not read the whole file when it
      seeks and must ask for the range it needs. Every request is recorded: Range header,
      status, Content-Range, bytes actually sent (fewer when the browser cancels).
    """

    CHUNK = 16 * 1024
    PAUSE = 0.05

    def __init__(self, files: dict[str, Path]):
        self.files = files
        self.media_requests: list[dict] = []
        self.page_requests: list[dict] = []
        self._lock = threading.Lock()
        app = Flask("certgate-e2e-media")

        @app.route("/page")
        def page():
            verify = request.headers.get("X-SSL-Client-Verify")
            subject = request.headers.get("X-SSL-Client-S-DN")
            src = request.args.get("src", "/media/clip.webm")
            seek = float(request.args.get("seek", "8.5"))
            rng = request.args.get("range", "1000-1999")
            a, _, b = rng.partition("-")
            with self._lock:
                self.page_requests.append({"verify": verify, "subject": subject})
            body = PAGE.format(
                verify=html.escape(verify or "(none)"), subject=html.escape(subject or "(none)"),
                src=html.escape(src), seek=seek,
                range=_js([int(a), int(b)] if rng not in ("", "none") else None),
                verify_js=_js(verify), subject_js=_js(subject), src_js=_js(src),
            )
            return Response(body, mimetype="text/html")

        @app.route("/media-log")
        def media_log():
            keep = ("range", "status", "content_range")
            return jsonify([{k: q[k] for k in keep} for q in self.requests()])

        @app.route("/media/<name>")
        def media(name):
            path = self.files.get(name)
            if path is None:
                abort(404)
            resp = send_file(path, mimetype="video/webm", conditional=True, max_age=0)
            rec = {
                "name": name,
                "range": request.headers.get("Range"),
                "status": resp.status_code,
                "content_range": resp.headers.get("Content-Range"),
                "content_length": resp.content_length,
                "subject": request.headers.get("X-SSL-Client-S-DN"),
                "verify": request.headers.get("X-SSL-Client-Verify"),
                "query": request.query_string.decode("latin-1"),
                "sent": 0,
                "finished": False,
            }
            with self._lock:
                self.media_requests.append(rec)
            resp.response = self._throttled(resp.response, rec)
            return resp

        self.app = app
        self.port = S.free_port()
        self.server = make_server("127.0.0.1", self.port, app, threaded=True,
                                  request_handler=S._RawHeadersHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        S.wait_port(self.port)

    def _throttled(self, body, rec):
        try:
            for chunk in body:
                for i in range(0, len(chunk), self.CHUNK):
                    piece = chunk[i:i + self.CHUNK]
                    yield piece
                    rec["sent"] += len(piece)
                    time.sleep(self.PAUSE)
            rec["finished"] = True
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()

    def requests(self) -> list[dict]:
        with self._lock:
            return [dict(r) for r in self.media_requests]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def parse_range(value: str | None) -> tuple[int, int | None] | None:
    """'bytes=A-' or 'bytes=A-B' -> (A, B or None); anything else None."""
    if not value or not value.startswith("bytes=") or "," in value:
        return None
    a, _, b = value[len("bytes="):].partition("-")
    if not a.isdigit():
        return None
    return int(a), int(b) if b.isdigit() else None


# --------------------------------------------------------------------------
# Go
# --------------------------------------------------------------------------


@dataclass
class GoBins:
    client: Path
    backend: Path


def build_go(out: Path) -> GoBins:
    """`go build` of clients/go (stdlib only: no module download)."""
    require(shutil.which("go") is not None, "go not found (Debian: golang-go)")
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOPROXY": "off", "GOTOOLCHAIN": "local"}
    if not os.environ.get("HOME"):
        env["GOCACHE"] = str(out / "gocache")
        env["GOPATH"] = str(out / "gopath")
    bins = GoBins(out / "client", out / "backend")
    for name, path in (("client", bins.client), ("backend", bins.backend)):
        _run(["go", "build", "-o", str(path), f"./{name}"], cwd=GO_DIR, env=env, timeout=300)
    return bins


class GoBackend:
    """clients/go/backend, on a free port."""

    def __init__(self, bins: GoBins, tmpdir: Path):
        self.port = S.free_port()
        self.process = S.ManagedProcess(
            "go-backend", [str(bins.backend), "-listen", f"127.0.0.1:{self.port}"], tmpdir,
            tmpdir / "go-backend.log",
        )
        S.wait_port(self.port, self.process.proc)

    def stop(self):
        self.process.stop()


def go_client(bins: GoBins, url: str, ca: Path, cert: Path | None = None,
              key: Path | None = None) -> dict:
    argv = [str(bins.client), "-url", url, "-ca", str(ca)]
    if cert is not None:
        argv += ["-cert", str(cert), "-key", str(key)]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=40)
    if p.returncode != 0:
        raise RuntimeError(f"go client exited {p.returncode}: {p.stdout}\n{p.stderr}")
    return json.loads(p.stdout)


# --------------------------------------------------------------------------
# Node (axios)
# --------------------------------------------------------------------------


def axios_client(url: str, ca: Path, cert: Path | None = None, key: Path | None = None) -> dict:
    require_node_modules()
    argv = ["node", str(NODE_DIR / "axios_client.mjs"), url, "--ca", str(ca)]
    if cert is not None:
        argv += ["--cert", str(cert), "--key", str(key)]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=40, cwd=NODE_DIR)
    if p.returncode != 0:
        raise RuntimeError(f"axios_client.mjs exited {p.returncode}: {p.stdout}\n{p.stderr}")
    return json.loads(p.stdout)
