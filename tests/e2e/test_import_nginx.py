"""`certgate import-nginx` parity: each configuration in nginx_fixtures/ (the seeds'
set-ups) runs under Debian's nginx as written, and its conversion (`certgate
import-nginx`, exit 0, then `certgate check`) runs under certgate, on the same PKI and
the same backends. The same clients (a good certificate, one issued via an
intermediate, none, a foreign one) make the same requests to both; the answers (status,
error page title, Range headers and bytes) and what the backend saw (the identity
headers, gRPC metadata, the client certificate the gRPC backend was shown) must match.

Each fixture is rendered twice (nginx's port and certgate's), in one directory where the
test PKI is copied to the relative paths the fixture names (ssl/…, ca/…); the converted
gateway.yaml is written to a subdirectory, so its relative paths are rebased.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

import e2e_servers as S

FIXTURES = Path(__file__).resolve().parent / "nginx_fixtures"


# ---------------------------------------------------------------------------
# Rendering, converting and running one fixture
# ---------------------------------------------------------------------------


def lay_out_pki(d: Path, pki, upstream_client=None) -> None:
    """The files the fixtures name, relative to their directory."""
    ssl, ca = d / "ssl", d / "ca"
    for sub in (ssl, ca, d / "logs"):
        sub.mkdir(parents=True, exist_ok=True)
    shutil.copy(pki.server.cert, ssl / "ssl.crt")
    shutil.copy(pki.server.key, ssl / "ssl.key")
    shutil.copy(pki.ca_crt, ssl / "ca.crt")
    shutil.copy(pki.server.cert, ca / "server.crt")
    shutil.copy(pki.server.key, ca / "server.key")
    shutil.copy(pki.ca_crt, ca / "client-ca.crt")
    shutil.copy(pki.ca_crt, ca / "server-ca.crt")
    if upstream_client is not None:
        shutil.copy(upstream_client.cert, ca / "client.crt")
        shutil.copy(upstream_client.key, ca / "client.key")


def render(fixture: str, port: int, **subs: str) -> str:
    text = (FIXTURES / fixture).read_text()
    text = text.replace("@LISTEN@", f"127.0.0.1:{port}")
    for key, value in subs.items():
        text = text.replace(f"@{key}@", value)
    assert "@" not in "".join(line.split("#")[0] for line in text.splitlines()), text
    return text


@dataclass
class Pair:
    nginx_port: int
    certgate_port: int
    yaml: str
    stderr: str


def start_pair(factory_dir: Path, fixture: str, pki, upstream_client=None, expect_exit=0,
               **subs) -> Pair:
    d = factory_dir
    lay_out_pki(d, pki, upstream_client)
    nginx_port, certgate_port = S.free_port(), S.free_port()

    # nginx runs the fixture as written (as the current user; temp paths in `d`).
    (d / "nginx.conf").write_text(render(fixture, nginx_port, **subs))
    globals_ = f"daemon off; pid {d}/nginx.pid; error_log stderr info;"
    if os.geteuid() == 0:
        globals_ += f" user {pwd.getpwuid(0).pw_name};"
    ng = S.ManagedProcess(
        "nginx", [S.NGINX_BIN, "-p", str(d), "-c", str(d / "nginx.conf"), "-g", globals_],
        d, d / "nginx.log", stop_signal=signal.SIGTERM,
    )
    _started.append(ng)
    S.wait_port(nginx_port, ng.proc)

    # certgate runs the conversion of the same file (with its own port).
    src = d / "for-certgate.conf"
    src.write_text(render(fixture, certgate_port, **subs))
    out_dir = d / "certgate"
    out_dir.mkdir()
    out = out_dir / "gateway.yaml"
    conv = subprocess.run(
        [str(S.certgate_bin()), "import-nginx", str(src), "-o", str(out)],
        capture_output=True, text=True, timeout=30,
    )
    assert conv.returncode == expect_exit, f"import-nginx exit {conv.returncode}\n{conv.stderr}"
    check = S.run_check(out)
    assert check.returncode == 0, f"{check.stdout}{check.stderr}\n{out.read_text()}"
    cg = S.ManagedProcess("certgate", [str(S.certgate_bin()), "-c", str(out), "run"], out_dir,
                          out_dir / "certgate.log")
    _started.append(cg)
    S.wait_port(certgate_port, cg.proc)
    return Pair(nginx_port, certgate_port, out.read_text(), conv.stderr)


_started: list[S.ManagedProcess] = []


@pytest.fixture(autouse=True)
def _stop_processes():
    yield
    while _started:
        _started.pop().stop()


# ---------------------------------------------------------------------------
# Comparing what clients and the backend see
# ---------------------------------------------------------------------------


def identity_seen(backend, marker: str):
    """The X-SSL-Client-* headers of the one request with `marker`, or None if the
    backend never saw it."""
    recs = backend.seen(marker)
    if not recs:
        return None
    assert len(recs) == 1, recs
    return sorted((k.lower(), v) for k, v in recs[0]["headers"] if k.lower().startswith("x-ssl-client-"))


CLIENTS = ["ascii_rsa", "via_intermediate", None, "foreign"]


def client_of(pki, name):
    if name is None:
        return None
    return pki.failing[name] if name in pki.failing else pki.clients[name]


def compare_http(pki, backend, pair: Pair, path_prefix: str, client_name, args=()):
    """One request to each; returns (nginx, certgate) identity seen, after asserting
    status and error page are the same."""
    client = client_of(pki, client_name)
    seen, results = [], []
    for port in (pair.nginx_port, pair.certgate_port):
        marker = f"probe-{uuid.uuid4().hex}"
        r = S.curl(port, f"{path_prefix}{marker}", pki=pki, client=client, args=args)
        results.append(r)
        seen.append(identity_seen(backend, marker))
    ng, cg = results
    assert (ng.status, ng.title) == (cg.status, cg.title), (
        f"{client_name}: nginx {ng.status} {ng.title!r} vs certgate {cg.status} {cg.title!r}\n"
        f"{cg.body[:300]!r}"
    )
    assert seen[0] == seen[1], f"{client_name}: the backend saw\n nginx:    {seen[0]}\n certgate: {seen[1]}"
    return ng.status, seen[0]


# ---------------------------------------------------------------------------
# The fixtures
# ---------------------------------------------------------------------------


def test_flask_behind_verify_on(pki, backend, tmp_path):
    pair = start_pair(tmp_path, "flask_mtls.conf", pki, BACKEND=f"127.0.0.1:{backend.port}")
    assert "Every directive was carried over." in pair.yaml
    outcomes = {c: compare_http(pki, backend, pair, "/", c) for c in CLIENTS}
    status, seen = outcomes["ascii_rsa"]
    assert status == 200
    headers = dict(seen)
    assert headers["x-ssl-client-s-dn"] == "CN=alice,OU=Engineering,O=Example Corp,L=San Francisco,ST=California,C=US"
    assert headers["x-ssl-client-verify"] == "SUCCESS"
    assert headers["x-ssl-client-serial"].startswith("serial=")
    assert "x-ssl-client-cert" not in headers, "only the headers nginx set"
    assert outcomes["via_intermediate"][0] == 200
    assert outcomes[None] == (400, None)
    assert outcomes["foreign"] == (400, None)


def test_optional_with_upstream_block_and_preset(pki, backend, tmp_path):
    pair = start_pair(tmp_path, "optional.conf", pki, BACKEND=f"127.0.0.1:{backend.port}")
    assert "preset: nginx" in pair.yaml
    for prefix in ("/api/", "/"):
        outcomes = {c: compare_http(pki, backend, pair, prefix, c) for c in CLIENTS}
        status, seen = outcomes["ascii_rsa"]
        assert status == 200 and ("x-ssl-client-verify", "SUCCESS") in seen
        assert any(k == "x-ssl-client-cert" for k, _ in seen), "the nginx preset's eight headers"
        status, seen = outcomes[None]
        assert status == 200 and seen == [("x-ssl-client-verify", "NONE")], seen
        assert outcomes["foreign"] == (400, None)
    # client_max_body_size: 2m on /api/, nginx's default 1m elsewhere.
    body = tmp_path / "body.bin"
    body.write_bytes(b"x" * (1536 * 1024))
    alice = pki.clients["ascii_rsa"]
    for path, expected in (("/api/upload", 200), ("/upload", 413)):
        codes = [
            S.curl(port, path, pki=pki, client=alice,
                   args=("--data-binary", f"@{body}", "-H", "Content-Type: application/octet-stream")).status
            for port in (pair.nginx_port, pair.certgate_port)
        ]
        assert codes == [expected, expected], (path, codes)


def test_proxy_pass_with_a_uri_replaces_the_location_prefix(pki, backend, tmp_path):
    pair = start_pair(tmp_path, "prefix_replace.conf", pki, BACKEND=f"127.0.0.1:{backend.port}")
    assert "Every directive was carried over." in pair.yaml
    assert "upstream_path: /v2/" in pair.yaml, pair.yaml
    alice = pki.clients["ascii_rsa"]
    # (request path with {m} for a unique marker, what the backend must see), as nginx does.
    cases = [
        ("/api/{m}", "/{m}"),
        ("/api/x/{m}?q=1", "/x/{m}"),
        ("/v1/{m}", "/v2/{m}"),
        ("/v1/./a/../{m}", "/v2/{m}"),
        ("/other/{m}", "/other/{m}"),
    ]
    for request, want in cases:
        seen = []
        for port in (pair.nginx_port, pair.certgate_port):
            marker = f"probe-{uuid.uuid4().hex}"
            r = S.curl(port, request.format(m=marker), pki=pki, client=alice, args=("--path-as-is",))
            assert r.status == 200, (port, request, r.status)
            recs = backend.seen(marker)
            assert len(recs) == 1, recs
            seen.append(recs[0]["path"].replace(marker, "{m}"))
        assert seen == [want, want], (request, seen)
    # The exact location is replaced whole.
    for port in (pair.nginx_port, pair.certgate_port):
        before = backend.count
        assert S.curl(port, "/login", pki=pki, client=alice).status == 200
        assert backend.requests[before]["path"] == "/auth/login"


def test_video_range_requests(pki, tmp_path):
    from test_streaming import MediaBackend

    video = tmp_path / "video.mp4"
    video.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    media = MediaBackend(video)
    try:
        pair = start_pair(tmp_path / "conf", "video.conf", pki, MEDIA=f"127.0.0.1:{media.port}")
        alice = pki.clients["ascii_rsa"]
        data = video.read_bytes()
        for rng, start, end in (("bytes=1000-1999", 1000, 1999), ("bytes=3145000-", 3145000, len(data) - 1)):
            answers = []
            for port in (pair.nginx_port, pair.certgate_port):
                r = S.curl(port, "/video.mp4", pki=pki, client=alice, args=("-H", f"Range: {rng}"))
                content_range = [line.split(":", 1)[1].strip() for line in r.headers.splitlines()
                                 if line.lower().startswith("content-range:")]
                answers.append((r.status, content_range, hashlib.sha256(r.body).hexdigest()))
            expected = (206, [f"bytes {start}-{end}/{len(data)}"], hashlib.sha256(data[start:end + 1]).hexdigest())
            assert answers == [expected, expected], answers
        for client in (None, pki.failing["foreign"]):
            codes = [S.curl(port, "/video.mp4", pki=pki, client=client).status
                     for port in (pair.nginx_port, pair.certgate_port)]
            assert codes == [400, 400], codes
    finally:
        media.stop()


# ---------------------------------------------------------------------------
# Access checks: converted exactly (same status), or the route refuses everything
# ---------------------------------------------------------------------------

ACCESS_CLIENTS = ["ascii_rsa", "via_intermediate", None]


def nginx_serial(cert) -> str:
    """$ssl_client_serial: OpenSSL's i2a_ASN1_INTEGER, upper-case hex in whole octets."""
    digits = format(cert.serial_number, "X")
    return digits if len(digits) % 2 == 0 else "0" + digits


def answers(pki, backend, pair: Pair, path: str, client_name):
    """(nginx status, certgate status, whether each backend saw the request)."""
    client = client_of(pki, client_name)
    out = []
    for port in (pair.nginx_port, pair.certgate_port):
        marker = f"probe-{uuid.uuid4().hex}"
        r = S.curl(port, f"{path}{marker}", pki=pki, client=client)
        out.append((r.status, bool(backend.seen(marker))))
    return out


# path -> expected nginx status per client (alice, svc-a via the intermediate, none).
ACCESS_EXPECTED = {
    "/verify/": (200, 200, 403),
    "/verify400/": (200, 200, 400),
    "/sdn/": (200, 403, 403),
    "/sdn-caseless/": (403, 200, 403),
    "/deny/": (403, 200, 403),
    "/idn/": (403, 200, 403),
    "/fingerprint/": (200, 403, 403),
    "/serial/": (403, 200, 403),
    "/map/": (200, 403, 403),
    "/closed/": (403, 403, 403),
    "/": (200, 200, 200),
}


def test_access_checks_convert_with_the_same_answers(pki, backend, tmp_path):
    alice, svc = pki.clients["ascii_rsa"], pki.clients["via_intermediate"]
    pair = start_pair(
        tmp_path, "access_checks.conf", pki, BACKEND=f"127.0.0.1:{backend.port}",
        FINGERPRINT=hashlib.sha1(alice.der).hexdigest(), SERIAL=nginx_serial(svc.obj),
    )
    assert "Every directive was carried over." in pair.yaml
    assert "deny_all: true" in pair.yaml  # location /closed/ { return 403; }
    for path, expected in ACCESS_EXPECTED.items():
        for client_name, want in zip(ACCESS_CLIENTS, expected):
            (ng, ng_seen), (cg, cg_seen) = answers(pki, backend, pair, path, client_name)
            assert (ng, cg) == (want, want), f"{path} {client_name}: nginx {ng}, certgate {cg}\n{pair.yaml}"
            assert ng_seen == cg_seen == (want == 200), f"{path} {client_name}: backend saw nginx {ng_seen}, certgate {cg_seen}"
    # A certificate that fails verification: nginx and certgate answer 400 under optional.
    for path in ACCESS_EXPECTED:
        (ng, _), (cg, _) = answers(pki, backend, pair, path, "foreign")
        assert ng == cg == 400, (path, ng, cg)


def test_access_check_at_server_level_covers_every_location(pki, backend, tmp_path):
    pair = start_pair(tmp_path, "access_verify_server.conf", pki, BACKEND=f"127.0.0.1:{backend.port}")
    assert "Every directive was carried over." in pair.yaml
    for path in ("/api/", "/"):
        for client_name, want in zip(ACCESS_CLIENTS, (200, 200, 403)):
            (ng, _), (cg, _) = answers(pki, backend, pair, path, client_name)
            assert (ng, cg) == (want, want), (path, client_name, ng, cg)


def test_unconvertible_access_checks_refuse_everything(pki, backend, tmp_path):
    pair = start_pair(tmp_path, "access_unconvertible.conf", pki, expect_exit=2,
                      BACKEND=f"127.0.0.1:{backend.port}")
    assert "access check(s) above could not be carried over exactly" in pair.stderr
    assert pair.yaml.count("deny_all: true  # import-nginx: unconverted access check") == 2, pair.yaml
    nginx_admitted = 0
    for path in ("/legacy/", "/login/"):
        for client_name in ACCESS_CLIENTS:
            (ng, ng_seen), (cg, cg_seen) = answers(pki, backend, pair, path, client_name)
            # Never more open than nginx: certgate refuses every request on these routes.
            assert cg == 403 and not cg_seen, (path, client_name, ng, cg)
            nginx_admitted += ng == 200
    assert nginx_admitted > 0, "the fixture should admit someone under nginx"
    # The route without checks is untouched.
    (ng, _), (cg, _) = answers(pki, backend, pair, "/", None)
    assert ng == cg == 200


# gRPC: mTLS from the client to the gateway and from the gateway to the backend.
grpc = pytest.importorskip("grpc")
pytest.importorskip("grpc_tools")
from test_grpc import grpcs_backend, pb, upstream_client_cert  # noqa: E402,F401  (fixtures)


def grpc_call(pb, pki, port, client, marker):
    kw = {"root_certificates": pki.ca_crt.read_bytes()}
    if client is not None:
        kw["private_key"] = client.key.read_bytes()
        kw["certificate_chain"] = client.chain.read_bytes()
    with grpc.secure_channel(f"localhost:{port}", grpc.ssl_channel_credentials(**kw)) as ch:
        try:
            return pb[1].EchoStub(ch).Unary(pb[0].Msg(text=marker), timeout=10).text
        except grpc.RpcError as e:
            return e.code()


def test_grpc_with_tls_on_both_sides(pb, pki, grpcs_backend, upstream_client_cert, tmp_path):
    pair = start_pair(tmp_path, "grpc_mtls.conf", pki, upstream_client=upstream_client_cert,
                      GRPCS=f"127.0.0.1:{grpcs_backend.port}")
    alice = pki.clients["ascii_rsa"]
    seen = []
    for port in (pair.nginx_port, pair.certgate_port):
        marker = f"grpc-{uuid.uuid4().hex}"
        assert grpc_call(pb, pki, port, alice, marker) == marker
        call = grpcs_backend.seen.last("Unary")
        md = call["metadata"]
        seen.append((call["peer_cn"], md.get("x-ssl-client-s-dn"), md.get("x-ssl-client-verify"),
                     md.get("x-ptp-session-id")))
    assert seen[0] == seen[1], seen
    assert seen[0] == (["certgate-gateway"], "CN=alice,OU=Engineering,O=Example Corp,L=San Francisco,ST=California,C=US",
                       "SUCCESS", "00000000000000010000000000000001")
    # Without a certificate or with a foreign one nothing reaches the backend. The codes
    # differ by design: nginx answers its HTTP 400 page (grpcio reports it as a transport
    # error), certgate a gRPC status, 16 UNAUTHENTICATED.
    for client in (None, pki.failing["foreign"]):
        before = grpcs_backend.seen.count()
        ng = grpc_call(pb, pki, pair.nginx_port, client, "refused")
        cg = grpc_call(pb, pki, pair.certgate_port, client, "refused")
        assert isinstance(ng, grpc.StatusCode) and ng != grpc.StatusCode.OK, ng
        assert cg == grpc.StatusCode.UNAUTHENTICATED, cg
        assert grpcs_backend.seen.count() == before
