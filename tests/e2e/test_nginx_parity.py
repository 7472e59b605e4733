"""nginx parity: the same PKI, the same Flask echo backend, Debian's nginx 1.22 (OpenSSL 3)
and certgate side by side. For each client certificate, one request through each;
every identity variable is compared byte for byte, and presence too (both omit a
header whose value is empty).

nginx exposes  `proxy_set_header X-V-<Name> $<name>;`
certgate       `identity: { preset: none, set: { X-V-<Name>: "$<name>" } }`
(<Name> is the variable name with '-' for '_', since WSGI servers drop '_' headers).
"""

from __future__ import annotations

import uuid

import pytest

from e2e_servers import NGINX_VARS, curl, header_values, var_header

# Client certificates expected to verify (all of pki.clients); see e2e_pki.py.
PARITY_CLIENTS = [
    "ascii_rsa",
    "utf8_ec",
    "rfc2253_escapes",
    "multivalue_rdn",
    "email_p384",
    "serial_pad",
    "serial_zero_nibble",
    "serial_one_byte",
    "serial_80",
    "serial_20_bytes",
    "expiring_soon",
    "via_intermediate",
    "generalized_time",
    "string_types",
    "control_chars",
    "many_attrs",
    "empty_subject",
]

TLS13 = ("--tlsv1.3", "--tls-max", "1.3", "--tls13-ciphers", "TLS_AES_128_GCM_SHA256")

CERTGATE_IDENTITY = {"preset": "none", "set": {var_header(v): f"${v}" for v in NGINX_VARS}}


@pytest.fixture(scope="module")
def pair(module_gateway_factory, nginx_factory):
    """pair(verify="on", depth=1) -> (nginx, certgate), started once per module."""
    cache = {}

    def get(verify: str = "on", depth: int = 1):
        key = (verify, depth)
        if key not in cache:
            ng = nginx_factory(verify=verify, depth=depth, preset_headers=False)
            cg = module_gateway_factory(
                client_auth={"verify": verify, "verify_depth": depth},
                identity=CERTGATE_IDENTITY,
            )
            cache[key] = (ng, cg)
        return cache[key]

    return get


def _fetch(port, client, pki, args, host, path):
    return curl(port, path, pki=pki, client=client, args=args, host=host)


def _values(echo: dict) -> dict[str, list[bytes]]:
    return {v: header_values(echo, var_header(v)) for v in NGINX_VARS}


def _diff(ng_echo: dict, cg_echo: dict, vars_=NGINX_VARS) -> list[str]:
    ng, cg = _values(ng_echo), _values(cg_echo)
    out = []
    for v in vars_:
        if ng[v] != cg[v]:
            def show(x):
                # raw bytes; any byte outside printable ASCII shown as <HH>
                if not x:
                    return "<absent>"
                return " | ".join(
                    "".join(chr(c) if 0x20 <= c < 0x7F else f"<{c:02X}>" for c in b) for b in x
                )
            out.append(f"${v}:\n      nginx:    {show(ng[v])}\n      certgate: {show(cg[v])}")
    # nothing else named X-V-* either
    extra = sorted(
        {k.lower() for k, _ in cg_echo["headers"] if k.lower().startswith("x-v-")}
        - {var_header(v).lower() for v in NGINX_VARS}
    )
    if extra:
        out.append(f"certgate sent unexpected headers {extra}")
    return out


def _both(pair_, pki, client, args=TLS13, host="localhost"):
    ng, cg = pair_
    path = "/parity-" + uuid.uuid4().hex[:10]
    rn = _fetch(ng.port, client, pki, args, host, path)
    rc = _fetch(cg.port, client, pki, args, host, path)
    assert rn.rc == 0 and rn.status in (200, 400), f"nginx: rc={rn.rc} {rn.status} {rn.stderr}"
    return rn, rc


def _assert_parity(rn, rc, what):
    assert rc.rc == 0, f"{what}: curl to certgate failed: {rc.stderr}"
    assert rc.status == rn.status, (
        f"{what}: status nginx {rn.status} vs certgate {rc.status}\n"
        f"  nginx body: {rn.body[:200]!r}\n  certgate body: {rc.body[:200]!r}")
    if rn.status == 200:
        diff = _diff(rn.json(), rc.json())
        assert not diff, f"{what}: identity variables differ:\n  " + "\n  ".join(diff)
    else:
        assert rc.title == rn.title, f"{what}: title nginx {rn.title!r} vs certgate {rc.title!r}"


def test_parity_client_list_is_complete(pki):
    assert sorted(PARITY_CLIENTS) == sorted(pki.clients), "update PARITY_CLIENTS"


@pytest.mark.parametrize("name", PARITY_CLIENTS)
def test_identity_parity(pair, pki, name):
    """Every variable, TLS 1.3 with TLS_AES_128_GCM_SHA256, SNI localhost."""
    c = pki.clients[name]
    rn, rc = _both(pair(), pki, c)
    assert rn.status == 200, f"nginx refused {name}: {rn.body[:200]!r}"
    # sanity: nginx produced the variables we mean to compare
    assert header_values(rn.json(), var_header("ssl_client_verify")) == [b"SUCCESS"]
    _assert_parity(rn, rc, f"{name} ({c.desc})")


@pytest.mark.parametrize(
    "client,args",
    [
        ("ascii_rsa", ("--tlsv1.3", "--tls-max", "1.3", "--tls13-ciphers", "TLS_AES_256_GCM_SHA384")),
        ("utf8_ec", ("--tlsv1.3", "--tls-max", "1.3", "--tls13-ciphers", "TLS_CHACHA20_POLY1305_SHA256")),
        ("ascii_rsa", ("--tlsv1.2", "--tls-max", "1.2", "--ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256")),
        ("via_intermediate", ("--tlsv1.2", "--tls-max", "1.2", "--ciphers", "ECDHE-ECDSA-AES256-GCM-SHA384")),
        ("utf8_ec", ("--tlsv1.2", "--tls-max", "1.2", "--ciphers", "ECDHE-ECDSA-CHACHA20-POLY1305")),
        ("email_p384", TLS13 + ("--http1.1",)),
        ("rfc2253_escapes", ("--tlsv1.2", "--tls-max", "1.2", "--http1.1")),
    ],
    ids=["tls13-aes256", "tls13-chacha", "tls12-aes128", "tls12-aes256-chain", "tls12-chacha",
         "tls13-http1.1", "tls12-http1.1"],
)
def test_protocol_and_cipher_parity(pair, pki, client, args):
    rn, rc = _both(pair(), pki, pki.clients[client], args=args)
    assert rn.status == 200
    _assert_parity(rn, rc, f"{client} with {' '.join(args)}")


@pytest.mark.parametrize("host", ["127.0.0.1", "gw.test"], ids=["no-sni", "sni-gw.test"])
def test_server_name_parity(pair, pki, host):
    rn, rc = _both(pair(), pki, pki.clients["ascii_rsa"], host=host)
    assert rn.status == 200
    _assert_parity(rn, rc, f"ascii_rsa to https://{host}")


FAILING = ["none", "foreign", "foreign_chain", "foreign_expired", "expired", "not_yet_valid",
           "too_deep", "server_eku", "self_signed"]


def _client(pki, name):
    return None if name == "none" else pki.failing[name]


@pytest.mark.parametrize("name", FAILING)
def test_failure_parity_verify_on(pair, pki, backend, name):
    """No certificate / bad certificate under `ssl_verify_client on`: same status and
    page title (400 "No required SSL certificate was sent" / "The SSL certificate
    error"); neither forwards anything."""
    ng, cg = pair()
    before = backend.count
    rn, rc = _both((ng, cg), pki, _client(pki, name))
    assert rn.status == 400
    _assert_parity(rn, rc, f"verify on, {name}")
    assert backend.count == before, "a refused request reached the upstream"


@pytest.mark.parametrize("name", FAILING)
def test_failure_parity_optional_no_ca(pair, pki, name):
    """`optional_no_ca`: nginx forwards issuer-related failures as FAILED:<reason> with
    every other variable filled in, and answers 400 to the rest (expired, purpose, too
    long); certgate must do the same."""
    rn, rc = _both(pair("optional_no_ca"), pki, _client(pki, name))
    _assert_parity(rn, rc, f"optional_no_ca, {name}")


@pytest.mark.parametrize("name", FAILING)
def test_failure_parity_optional(pair, pki, name):
    rn, rc = _both(pair("optional"), pki, _client(pki, name))
    _assert_parity(rn, rc, f"optional, {name}")


@pytest.mark.parametrize(
    "depth,name",
    [(0, "ascii_rsa"), (0, "via_intermediate"), (2, "via_intermediate"), (2, "too_deep")],
)
def test_verify_depth_parity(pair, pki, depth, name):
    c = pki.clients.get(name) or pki.failing[name]
    rn, rc = _both(pair("on", depth), pki, c)
    _assert_parity(rn, rc, f"verify_depth {depth}, {name}")
