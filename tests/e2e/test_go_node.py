"""The seeds' application clients against certgate.

- Go: stdlib crypto/tls with the seeds' tls.Config (RootCAs, Certificates, MinVersion TLS
  1.3) against certgate in front of a Go net/http backend that reads X-SSL-Client-S-DN
  (clients/go, built with Debian's golang-go);
- Node: the seeds' Electron main-process code, `new https.Agent({ca, cert, key})` with
  axios (clients/node/axios_client.mjs), against certgate in front of the Flask echo backend.

Each: 200 with the identity, the 400 page without a certificate, a TLS error with the wrong CA.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

import e2e_clients as C
import e2e_servers as S

NO_CERT_TITLE = "400 No required SSL certificate was sent"


@pytest.fixture(scope="module")
def go_bins(tmp_path_factory):
    return C.build_go(tmp_path_factory.mktemp("go-bin"))


@pytest.fixture(scope="module")
def go_backend(go_bins, tmp_path_factory):
    b = C.GoBackend(go_bins, tmp_path_factory.mktemp("go-backend"))
    yield b
    b.stop()


@pytest.fixture(scope="module")
def go_gw(module_gateway_factory, go_backend):
    return module_gateway_factory(
        upstreams={"app": {"servers": [f"127.0.0.1:{go_backend.port}"]}})


# --------------------------------------------------------------------------
# Go
# --------------------------------------------------------------------------


def test_go_client_gets_its_identity_from_the_go_backend(go_bins, go_gw, pki):
    client = pki.clients["via_intermediate"]  # the chain file: leaf + intermediate
    r = C.go_client(go_bins, f"{go_gw.url}/whoami", pki.ca_crt, client.chain, client.key)
    assert r["error"] == "", r
    assert r["status"] == 200, r
    assert r["tls"] == "TLSv1.3", r
    body = json.loads(r["body"])
    assert body == {
        "verify": "SUCCESS",
        "subject": client.obj.subject.rfc4514_string(),
        "issuer": client.obj.issuer.rfc4514_string(),
        # nginx's $ssl_client_serial: whole bytes of hex (a leading 0 for an odd digit count).
        "serial": format(client.obj.serial_number, "X").rjust(
            (client.obj.serial_number.bit_length() + 7) // 8 * 2, "0"),
        "path": "/whoami",
        "proto": "HTTP/1.1",
        "backend": "go-net-http",
    }, body


def test_go_client_without_certificate_gets_the_400_page(go_bins, go_gw, pki):
    r = C.go_client(go_bins, f"{go_gw.url}/whoami", pki.ca_crt)
    assert r["error"] == "", r
    assert r["status"] == 400, r
    assert f"<title>{NO_CERT_TITLE}</title>" in r["body"], r
    assert "go-net-http" not in r["body"]


def test_go_client_with_the_wrong_ca_fails_the_handshake(go_bins, go_gw, pki):
    client = pki.clients["via_intermediate"]
    r = C.go_client(go_bins, f"{go_gw.url}/whoami", pki.foreign_ca.cert, client.chain, client.key)
    assert r["status"] == 0, r
    assert "x509: certificate signed by unknown authority" in r["error"], r


def test_go_backend_refuses_a_request_without_identity(go_backend):
    """The backend relies on the gateway: straight to its port, no identity, no answer."""
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{go_backend.port}/whoami", timeout=10)
    assert e.value.code == 403


# --------------------------------------------------------------------------
# Node (axios)
# --------------------------------------------------------------------------


def test_axios_with_certificate_gets_200_and_identity(gateway, pki):
    client = pki.clients["ascii_rsa"]
    r = C.axios_client(f"{gateway.url}/electron/main", pki.ca_crt, client.chain, client.key)
    assert r["error"] is None, r
    assert r["status"] == 200, r
    echo = r["data"]  # axios parsed the backend's JSON
    assert echo["path"] == "/electron/main"
    assert S.header(echo, "X-SSL-Client-Verify") == "SUCCESS"
    assert S.header(echo, "X-SSL-Client-S-DN") == client.obj.subject.rfc4514_string()


def test_axios_without_certificate_gets_the_400_page(gateway, pki, backend):
    before = len(backend.seen("/electron/nocert"))
    r = C.axios_client(f"{gateway.url}/electron/nocert", pki.ca_crt)
    assert r["error"] is None, r
    assert r["status"] == 400, r
    assert f"<title>{NO_CERT_TITLE}</title>" in r["data"], r
    assert r["headers"]["content-type"].startswith("text/html"), r
    assert len(backend.seen("/electron/nocert")) == before


def test_axios_with_the_wrong_ca_gets_a_tls_error(gateway, pki, backend):
    client = pki.clients["ascii_rsa"]
    r = C.axios_client(f"{gateway.url}/electron/wrongca", pki.foreign_ca.cert, client.chain,
                       client.key)
    assert r["status"] is None, r
    # The gateway sends its leaf only; Node cannot chain it to the CA it was given.
    assert r["error"]["code"] == "UNABLE_TO_VERIFY_LEAF_SIGNATURE", r
    assert backend.seen("/electron/wrongca") == []
