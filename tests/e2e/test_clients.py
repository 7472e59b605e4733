"""certgate driven by real third-party clients: curl, openssl s_client, Python requests."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import uuid
from urllib.parse import unquote

import pytest
import requests

import e2e_servers as S
from e2e_servers import curl, header

ALICE_S_DN = "CN=alice,OU=Engineering,O=Example Corp,L=San Francisco,ST=California,C=US"
ROOT_DN = "CN=certgate e2e Root CA,O=certgate e2e,C=US"


def marker() -> str:
    return "/m-" + uuid.uuid4().hex[:12]


def assert_not_forwarded(backend, path: str, count_before: int):
    assert backend.seen(path) == [], f"the upstream received {path} although it must not"
    assert backend.count == count_before, "the upstream received a request although it must not"


def echo_of(r: S.CurlResult) -> dict:
    assert r.rc == 0, f"curl failed (rc={r.rc}): {r.stderr}"
    assert r.status == 200, f"expected 200, got {r.status}: {r.body[:500]!r}"
    return r.json()


# ---------------------------------------------------------------------------
# curl
# ---------------------------------------------------------------------------


def test_curl_verified_client(gateway, pki, backend):
    alice = pki.clients["ascii_rsa"]
    path = marker()
    e = echo_of(curl(gateway.port, path, pki=pki, client=alice))
    assert e["path"] == path
    assert header(e, "X-SSL-Client-Verify") == "SUCCESS"
    assert header(e, "X-SSL-Client-S-DN") == ALICE_S_DN
    assert header(e, "X-SSL-Client-I-DN") == ROOT_DN
    serial = alice.obj.serial_number
    expected_serial = format(serial, "X").rjust((serial.bit_length() + 7) // 8 * 2, "0")
    assert header(e, "X-SSL-Client-Serial") == expected_serial
    expected_fp = hashlib.sha1(alice.der).hexdigest()
    assert header(e, "X-SSL-Client-Fingerprint") == expected_fp
    assert header(e, "X-SSL-Client-V-Start") == "Jan  5 03:04:05 2024 GMT"
    cert = header(e, "X-SSL-Client-Cert")
    assert cert is not None and "\n" not in cert
    assert unquote(cert) == alice.cert.read_text()


def test_curl_no_certificate_gets_400(gateway, pki, backend):
    before, path = backend.count, marker()
    r = curl(gateway.port, path, pki=pki)
    assert r.rc == 0, r.stderr
    assert r.status == 400, r.body[:500]
    assert b"No required SSL certificate was sent" in r.body
    assert_not_forwarded(backend, path, before)


@pytest.mark.parametrize("name", ["foreign", "foreign_chain", "expired", "server_eku", "self_signed"])
def test_curl_bad_certificate_gets_400(gateway, pki, backend, name):
    before, path = backend.count, marker()
    r = curl(gateway.port, path, pki=pki, client=pki.failing[name])
    assert r.rc == 0, r.stderr
    assert r.status == 400, f"{pki.failing[name].desc}: got {r.status} {r.body[:300]!r}"
    assert b"The SSL certificate error" in r.body
    assert_not_forwarded(backend, path, before)


def test_curl_chain_within_verify_depth_accepted(gateway, pki):
    # verify_depth 1: leaf <- intermediate <- root is fine
    e = echo_of(curl(gateway.port, marker(), pki=pki, client=pki.clients["via_intermediate"]))
    assert header(e, "X-SSL-Client-Verify") == "SUCCESS"
    assert header(e, "X-SSL-Client-I-DN") == "CN=certgate e2e Intermediate CA,O=certgate e2e,C=US"


def test_curl_chain_deeper_than_verify_depth_refused(gateway, pki, backend):
    # verify_depth 1, chain with two intermediates
    before, path = backend.count, marker()
    r = curl(gateway.port, path, pki=pki, client=pki.failing["too_deep"])
    assert r.status == 400, r.body[:300]
    assert b"The SSL certificate error" in r.body
    assert_not_forwarded(backend, path, before)


def test_verify_depth_0_and_2(gateway_factory, pki, backend):
    d0 = gateway_factory(client_auth={"verify_depth": 0})
    before, path = backend.count, marker()
    r = curl(d0.port, path, pki=pki, client=pki.clients["via_intermediate"])
    assert r.status == 400, "verify_depth 0 must refuse an intermediate-issued certificate"
    assert_not_forwarded(backend, path, before)
    echo_of(curl(d0.port, marker(), pki=pki, client=pki.clients["ascii_rsa"]))

    d2 = gateway_factory(client_auth={"verify_depth": 2})
    e = echo_of(curl(d2.port, marker(), pki=pki, client=pki.failing["too_deep"]))
    assert header(e, "X-SSL-Client-Verify") == "SUCCESS"


def test_curl_http2(gateway, pki):
    r = curl(gateway.port, marker(), pki=pki, client=pki.clients["utf8_ec"], args=("--http2",))
    assert r.http_version == "2", f"negotiated HTTP/{r.http_version}"
    e = echo_of(r)
    assert header(e, "X-SSL-Client-Verify") == "SUCCESS"
    assert header(e, "X-SSL-Client-S-DN") == (
        r"CN=\E5\BC\A0\E4\B8\89,OU=Forschung & Entwicklung,O=M\C3\BCller GmbH,L=Z\C3\BCrich,C=DE"
    )


def test_curl_http2_no_certificate_gets_400(gateway, pki, backend):
    before, path = backend.count, marker()
    r = curl(gateway.port, path, pki=pki, args=("--http2",))
    assert r.http_version == "2"
    assert r.status == 400
    assert b"No required SSL certificate was sent" in r.body
    assert_not_forwarded(backend, path, before)


def test_curl_http2_spoofed_headers_stripped(gateway, pki):
    r = curl(
        gateway.port, marker(), pki=pki, client=pki.clients["ascii_rsa"],
        args=("--http2", "-H", "x-ssl-client-s-dn: CN=admin", "-H", "x-ssl-client-verify: FORGED",
              "-H", "x-forwarded-client-cert: By=spiffe://evil", "-H", "client-cert: :AAAA:"),
    )
    e = echo_of(r)
    assert header(e, "X-SSL-Client-S-DN") == ALICE_S_DN
    assert header(e, "X-SSL-Client-Verify") == "SUCCESS"
    assert header(e, "X-Forwarded-Client-Cert") is None
    assert header(e, "Client-Cert") is None


def test_grpc_request_without_certificate_gets_unauthenticated(gateway, pki, backend):
    before, path = backend.count, marker()
    r = curl(gateway.port, path, pki=pki,
             args=("--http2", "-X", "POST",
                   "-H", "content-type: application/grpc", "-H", "te: trailers",
                   "--data-binary", "@/dev/null"))
    assert r.http_version == "2"
    assert re.search(rb"(?im)^grpc-status:\s*16\s*$", r.raw), r.raw[:500]
    assert_not_forwarded(backend, path, before)


def test_upstream_down_gets_502(gateway_factory, pki, backend):
    dead = S.free_port()
    gw = gateway_factory(upstreams={"app": {"servers": [f"127.0.0.1:{dead}"]}})
    r = curl(gw.port, marker(), pki=pki, client=pki.clients["ascii_rsa"])
    assert r.status == 502, r.body[:300]


def test_allow_rule_failure_gets_403_and_nothing_forwarded(gateway_factory, pki, backend):
    gw = gateway_factory(routes=[{"match": {"path_prefix": "/"}, "upstream": "app",
                                  "allow": [{"cn": ["bob"]}]}])
    before, path = backend.count, marker()
    r = curl(gw.port, path, pki=pki, client=pki.clients["ascii_rsa"])  # CN=alice
    assert r.status == 403, r.body[:300]
    assert_not_forwarded(backend, path, before)
    e = echo_of(curl(gw.port, marker(), pki=pki, client=pki.clients["email_p384"]))  # CN=bob
    assert header(e, "X-SSL-Client-S-DN") == "emailAddress=bob@example.com,CN=bob,O=Example,C=US"


def test_max_body_size_gets_413_and_nothing_forwarded(gateway_factory, pki, backend):
    gw = gateway_factory(routes=[{"match": {"path_prefix": "/"}, "upstream": "app",
                                  "max_body_size": "1k"}])
    c = pki.clients["ascii_rsa"]
    before, path = backend.count, marker()
    r = curl(gw.port, path, pki=pki, client=c, args=("--data-binary", "x" * 10_000))
    assert r.status == 413, r.body[:300]
    assert_not_forwarded(backend, path, before)
    e = echo_of(curl(gw.port, marker(), pki=pki, client=c, args=("--data-binary", "x" * 500)))
    assert e["body_len"] == 500


def test_sni_and_host_must_name_the_same_server(gateway_factory, pki, backend):
    """A client must not pass one server's TLS policy and reach another: 421."""
    port = S.free_port()
    cfg = S.gateway_config(pki, port, backend.port)
    strict = cfg["servers"][0]
    strict["server_names"] = ["localhost"]
    open_ = json.loads(json.dumps(strict))
    open_.update(name="open", server_names=["gw.test"],
                 client_auth={"verify": "off"})
    cfg["servers"].append(open_)
    gw = gateway_factory(config=cfg)
    # SNI gw.test (no client cert needed) but Host: localhost
    before, path = backend.count, marker()
    r = curl(gw.port, path, pki=pki, host="gw.test", args=("-H", f"Host: localhost:{port}"))
    assert r.status == 421, r.body[:300]
    assert_not_forwarded(backend, path, before)
    # the other way round: verified on localhost, Host: gw.test
    r = curl(gw.port, marker(), pki=pki, client=pki.clients["ascii_rsa"],
             args=("-H", f"Host: gw.test:{port}"))
    assert r.status == 421, r.body[:300]
    # consistent names work
    echo_of(curl(gw.port, marker(), pki=pki, host="gw.test"))
    echo_of(curl(gw.port, marker(), pki=pki, client=pki.clients["ascii_rsa"]))


# ---------------------------------------------------------------------------
# openssl s_client
# ---------------------------------------------------------------------------


def _s_client_args(pki, client, *extra):
    return ["-servername", "localhost", "-CAfile", str(pki.ca_crt),
            "-cert", str(client.cert), "-key", str(client.key), *extra]


def test_s_client_tls13_certificate_request_names_the_ca(gateway, pki):
    alice = pki.clients["ascii_rsa"]
    p = S.s_client(gateway.port, _s_client_args(pki, alice, "-alpn", "h2,http/1.1", "-verify_return_error"))
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, out + p.stderr.decode()
    m = re.search(r"Acceptable client certificate CA names\n(.*?)\n", out)
    assert m, f"no CA names in the CertificateRequest:\n{out}"
    assert re.sub(r"\s*=\s*", "=", m.group(1)) == "C=US, O=certgate e2e, CN=certgate e2e Root CA"
    assert re.search(r"New, TLSv1\.3, Cipher is TLS_", out), out
    assert "ALPN protocol: h2" in out, out
    assert "Verification: OK" in out or "Verify return code: 0 (ok)" in out


def test_s_client_tls12(gateway, pki):
    alice = pki.clients["ascii_rsa"]
    p = S.s_client(gateway.port, _s_client_args(pki, alice, "-tls1_2", "-verify_return_error"))
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, out + p.stderr.decode()
    assert "Acceptable client certificate CA names" in out
    assert "CN = certgate e2e Root CA" in out
    assert re.search(r"New, TLSv1\.2, Cipher is ECDHE-ECDSA-", out), out


def test_s_client_raw_http11_request(gateway, pki, backend):
    alice = pki.clients["email_p384"]
    path = marker()
    req = (f"GET {path}?q=1 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: s_client\r\n"
           "Connection: close\r\n\r\n").encode()
    p = S.s_client(gateway.port, _s_client_args(pki, alice, "-alpn", "http/1.1", "-quiet"), stdin=req)
    out = p.stdout
    assert p.returncode is not None, (
        f"the gateway did not close the connection after `Connection: close` "
        f"(s_client still waiting after 15 s); read so far: {out[:300]!r}")
    assert out.startswith(b"HTTP/1.1 200"), out[:500] + p.stderr[-1000:]
    head, body = S.split_http1_response(out)
    e = json.loads(body)
    assert e["path"] == path and e["query"] == "q=1"
    assert header(e, "X-SSL-Client-S-DN") == "emailAddress=bob@example.com,CN=bob,O=Example,C=US"
    assert header(e, "User-Agent") == "s_client"


# ---------------------------------------------------------------------------
# Python requests
# ---------------------------------------------------------------------------


def _get(gw, pki, client, path=None, **kw):
    return requests.get(
        f"{gw.url}{path or marker()}",
        cert=(str(client.chain), str(client.key)) if client else None,
        verify=str(pki.ca_crt),
        timeout=15,
        **kw,
    )


def test_requests_identity_headers(gateway, pki):
    c = pki.clients["via_intermediate"]
    r = _get(gateway, pki, c)
    assert r.status_code == 200, r.text[:300]
    e = r.json()
    obj = c.obj
    assert header(e, "X-SSL-Client-Verify") == "SUCCESS"
    assert header(e, "X-SSL-Client-S-DN") == "CN=svc-a,OU=services,O=certgate e2e,C=US"
    assert header(e, "X-SSL-Client-I-DN") == "CN=certgate e2e Intermediate CA,O=certgate e2e,C=US"
    expected_fp = hashlib.sha1(c.der).hexdigest()
    assert header(e, "X-SSL-Client-Fingerprint") == expected_fp
    assert int(header(e, "X-SSL-Client-Serial"), 16) == obj.serial_number
    assert header(e, "X-SSL-Client-V-End") == obj.not_valid_after_utc.strftime("%b %e %H:%M:%S %Y GMT")
    assert header(e, "X-SSL-Client-V-Start") == obj.not_valid_before_utc.strftime("%b %e %H:%M:%S %Y GMT")
    assert unquote(header(e, "X-SSL-Client-Cert")) == c.cert.read_text()
    assert header(e, "X-Real-IP") == "127.0.0.1"
    assert header(e, "X-Forwarded-Proto") == "https"
    assert header(e, "X-Forwarded-For") == "127.0.0.1"


SPOOFED = {
    "X-SSL-Client-S-DN": "CN=admin,O=Evil",
    "X-SSL-Client-Verify": "SUCCESS",
    "X-SSL-Client-I-DN": "CN=Evil CA",
    "X-SSL-Client-Fingerprint": "00" * 20,
    "X-SSL-Client-Whatever": "x",
    "X-Forwarded-Client-Cert": "By=spiffe://evil;Hash=00;Subject=\"CN=admin\"",
    "Client-Cert": ":AAAA:",
    "Client-Cert-Chain": ":AAAA:",
    "X-Real-IP": "203.0.113.66",
    "X-Forwarded-Proto": "http",
}


def test_requests_spoofed_identity_headers_do_not_reach_backend(gateway, pki):
    r = _get(gateway, pki, pki.clients["ascii_rsa"], headers=SPOOFED)
    assert r.status_code == 200, r.text[:300]
    e = r.json()
    assert header(e, "X-SSL-Client-S-DN") == ALICE_S_DN
    assert header(e, "X-SSL-Client-Verify") == "SUCCESS"
    assert header(e, "X-SSL-Client-I-DN") == ROOT_DN
    assert header(e, "X-SSL-Client-Fingerprint") != "00" * 20
    assert header(e, "X-SSL-Client-Whatever") is None
    assert header(e, "X-Forwarded-Client-Cert") is None
    assert header(e, "Client-Cert") is None
    assert header(e, "Client-Cert-Chain") is None
    assert header(e, "X-Real-IP") == "127.0.0.1"
    assert header(e, "X-Forwarded-Proto") == "https"
    for k, v in e["headers"]:
        assert "evil" not in v.lower() and "admin" not in v.lower(), f"spoofed value arrived: {k}: {v}"


def test_spoofed_headers_without_certificate_under_optional(gateway_factory, pki):
    gw = gateway_factory(client_auth={"verify": "optional"})
    r = _get(gw, pki, None, headers=SPOOFED)
    assert r.status_code == 200, r.text[:300]
    e = r.json()
    assert header(e, "X-SSL-Client-Verify") == "NONE"
    for h in ("X-SSL-Client-S-DN", "X-SSL-Client-I-DN", "X-SSL-Client-Fingerprint",
              "X-SSL-Client-Whatever", "X-SSL-Client-Serial", "X-SSL-Client-Cert",
              "X-Forwarded-Client-Cert", "Client-Cert", "Client-Cert-Chain"):
        assert header(e, h) is None, f"{h} reached the backend: {header(e, h)!r}"


def test_spoofed_xfcc_and_rfc9440_with_those_presets(gateway_factory, pki):
    gw = gateway_factory(identity={"preset": ["xfcc", "rfc9440"]})
    c = pki.clients["ascii_rsa"]
    r = _get(gw, pki, c, headers=SPOOFED)
    assert r.status_code == 200, r.text[:300]
    e = r.json()
    xfcc = header(e, "X-Forwarded-Client-Cert")
    assert xfcc and "evil" not in xfcc and f"Hash={hashlib.sha256(c.der).hexdigest()}" in xfcc
    assert header(e, "Client-Cert") == ":" + base64.b64encode(c.der).decode() + ":"
    assert header(e, "X-SSL-Client-S-DN") is None  # not part of these presets, and stripped


def test_keepalive_connection_every_request_gets_identity_and_is_sanitized(gateway, pki):
    """Identity is computed per connection, but stripping and setting is per request:
    several requests on one kept-alive HTTP/1.1 connection, spoofing on some."""
    c = pki.clients["ascii_rsa"]
    with requests.Session() as s:
        for i in range(4):
            hdrs = SPOOFED if i % 2 else {}
            # cert/verify per request: REQUESTS_CA_BUNDLE would override Session.verify
            r = s.get(f"{gateway.url}{marker()}", headers=hdrs, timeout=15,
                      cert=(str(c.chain), str(c.key)), verify=str(pki.ca_crt))
            assert r.status_code == 200, r.text[:300]
            e = r.json()
            assert header(e, "X-SSL-Client-S-DN") == ALICE_S_DN, f"request {i}"
            assert header(e, "X-SSL-Client-Verify") == "SUCCESS", f"request {i}"
            assert header(e, "X-Forwarded-Client-Cert") is None, f"request {i}"
            assert header(e, "X-SSL-Client-Whatever") is None, f"request {i}"


def test_http2_multiplexed_requests_on_one_connection(gateway, pki):
    """curl with several URLs reuses one HTTP/2 connection."""
    c = pki.clients["utf8_ec"]
    urls = [f"https://localhost:{gateway.port}{marker()}" for _ in range(3)]
    p = subprocess.run(
        ["curl", "-sS", "--http2", "--resolve", f"localhost:{gateway.port}:127.0.0.1",
         "--cacert", str(pki.ca_crt), "--cert", str(c.chain), "--key", str(c.key),
         "-H", "X-SSL-Client-S-DN: CN=admin", "-w", "\n%{num_connects} %{http_version}\n", *urls],
        capture_output=True, timeout=30,
    )
    assert p.returncode == 0, p.stderr
    lines = p.stdout.decode().splitlines()
    bodies = [json.loads(line) for line in lines if line.startswith("{")]
    stats = [line for line in lines if not line.startswith("{") and line.strip()]
    assert len(bodies) == 3
    assert [s.split()[1] for s in stats] == ["2", "2", "2"]
    assert sum(int(s.split()[0]) for s in stats) == 1, f"connections: {stats}"
    for e in bodies:
        assert header(e, "X-SSL-Client-Verify") == "SUCCESS"
        assert header(e, "X-SSL-Client-S-DN").startswith("CN=\\E5\\BC\\A0")


def test_requests_x_forwarded_for_appended(gateway, pki):
    r = _get(gateway, pki, pki.clients["ascii_rsa"],
             headers={"X-Forwarded-For": "203.0.113.7, 198.51.100.2"})
    assert r.status_code == 200
    assert header(r.json(), "X-Forwarded-For") == "203.0.113.7, 198.51.100.2, 127.0.0.1"


def test_requests_post_body_forwarded(gateway, pki):
    body = b"x" * 100_000
    r = requests.post(f"{gateway.url}{marker()}", data=body,
                      cert=(str(pki.clients["ascii_rsa"].chain), str(pki.clients["ascii_rsa"].key)),
                      verify=str(pki.ca_crt), timeout=15)
    assert r.status_code == 200
    assert r.json()["body_len"] == len(body) and r.json()["method"] == "POST"


def test_on_failure_handshake_rejects_in_tls(gateway_factory, pki, backend):
    gw = gateway_factory(client_auth={"on_failure": "handshake"})
    before, path = backend.count, marker()
    with pytest.raises(requests.exceptions.SSLError):
        _get(gw, pki, None, path=path)
    with pytest.raises(requests.exceptions.SSLError):
        _get(gw, pki, pki.failing["foreign"], path=path)
    assert_not_forwarded(backend, path, before)
    # and TLS 1.2 too (the alert arrives during the handshake proper)
    p = S.s_client(gw.port, ["-servername", "localhost", "-CAfile", str(pki.ca_crt), "-tls1_2"],
                   stdin=b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert p.returncode != 0 or b"HTTP/1.1" not in p.stdout
    assert_not_forwarded(backend, path, before)
    r = _get(gw, pki, pki.clients["ascii_rsa"])
    assert r.status_code == 200


def test_optional_no_ca_forwards_failure_reason(gateway_factory, pki):
    gw = gateway_factory(client_auth={"verify": "optional_no_ca"})
    c = pki.failing["foreign_chain"]  # leaf + foreign intermediate: the issuer is unknown
    r = _get(gw, pki, c)
    assert r.status_code == 200, r.text[:300]
    e = r.json()
    assert header(e, "X-SSL-Client-Verify") == "FAILED:unable to get local issuer certificate"
    assert header(e, "X-SSL-Client-S-DN") == "CN=mallory via intermediate,O=Somebody Else"
    # a bare foreign leaf: OpenSSL (and so nginx) says "unable to verify the first certificate"
    r = _get(gw, pki, pki.failing["foreign"])
    assert r.status_code == 200, r.text[:300]
    assert header(r.json(), "X-SSL-Client-Verify") == "FAILED:unable to verify the first certificate"
    # without a certificate
    r = _get(gw, pki, None)
    assert r.status_code == 200 and header(r.json(), "X-SSL-Client-Verify") == "NONE"
    # a good one
    r = _get(gw, pki, pki.clients["ascii_rsa"])
    assert header(r.json(), "X-SSL-Client-Verify") == "SUCCESS"


# ---------------------------------------------------------------------------
# certgate check
# ---------------------------------------------------------------------------

CHECK_YAML = """\
# certgate e2e: check
servers:
  - name: api
    listen: ["127.0.0.1:{port}"]
    tls: {{ cert: server.crt, key: server.key }}
    client_auth:
      verify: on
      ca: ca.crt
      verify_depth: {depth}
    identity: {{ preset: nginx }}
    routes:
      - match: {{ path_prefix: / }}
        upstream: app
upstreams:
  app: {{ servers: ["127.0.0.1:5000"] }}
"""


def _check_dir(tmp_path, pki, text):
    for src, dst in ((pki.server.cert, "server.crt"), (pki.server.key, "server.key"),
                     (pki.ca_crt, "ca.crt")):
        shutil.copy(src, tmp_path / dst)
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(text)
    return cfg


def _assert_no_crash(p):
    for bad in ("panicked", "RUST_BACKTRACE", "Traceback", "stack backtrace"):
        assert bad not in p.stderr and bad not in p.stdout, p.stderr


def test_check_good_config_with_relative_paths(tmp_path, pki):
    cfg = _check_dir(tmp_path, pki, CHECK_YAML.format(port=S.free_port(), depth=1))
    p = S.run_check(cfg)
    assert p.returncode == 0, p.stderr
    out = p.stdout + p.stderr
    assert re.search(r"certgate: configuration file \S*gateway\.yaml test is successful", out), out
    _assert_no_crash(p)


def _location_of(text: str, key: str):
    for i, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith(key + ":"):
            kcol = line.index(key) + 1
            vcol = line.index(":", kcol) + 2
            while line[vcol - 1] == " ":
                vcol += 1
            return i, kcol, vcol
    raise AssertionError(key)


@pytest.mark.parametrize(
    "key,value,path",
    [
        ("verify_depth", "deep", "servers[0].client_auth.verify_depth"),
        ("verify", "yes", "servers[0].client_auth.verify"),
    ],
)
def test_check_bad_config_names_file_line_col_and_key(tmp_path, pki, key, value, path):
    text = CHECK_YAML.format(port=S.free_port(), depth=1)
    text = re.sub(rf"(?m)^(\s+{key}): .*$", rf"\1: {value}", text)
    cfg = _check_dir(tmp_path, pki, text)
    line, kcol, vcol = _location_of(text, key)
    p = S.run_check(cfg)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    _assert_no_crash(p)
    err = p.stderr
    m = re.search(r"gateway\.yaml:(\d+):(\d+): (\S+): ", err)
    assert m, f"no file:line:col: key.path: in stderr:\n{err}"
    assert int(m.group(1)) == line, f"line {m.group(1)} != {line}: {err}"
    assert int(m.group(2)) in (kcol, vcol), f"col {m.group(2)} not in ({kcol}, {vcol}): {err}"
    assert m.group(3) == path, err
    assert "successful" not in p.stdout + err


def test_check_unknown_key(tmp_path, pki):
    text = CHECK_YAML.format(port=S.free_port(), depth=1).replace(
        "      verify_depth: 1\n", "      verify_depth: 1\n      verify_dept: 2\n")
    cfg = _check_dir(tmp_path, pki, text)
    p = S.run_check(cfg)
    assert p.returncode == 1
    _assert_no_crash(p)
    line, _, _ = _location_of(text, "verify_dept")
    assert re.search(rf"gateway\.yaml:{line}:\d+: servers\[0\]\.client_auth", p.stderr), p.stderr
    assert "verify_dept" in p.stderr


def test_check_key_does_not_match_certificate(tmp_path, pki):
    cfg = _check_dir(tmp_path, pki, CHECK_YAML.format(port=S.free_port(), depth=1))
    shutil.copy(pki.clients["ascii_rsa"].key, tmp_path / "server.key")
    p = S.run_check(cfg)
    assert p.returncode == 1, p.stdout + p.stderr
    _assert_no_crash(p)
    assert "server.key" in p.stderr or "key" in p.stderr.lower()
