#!/usr/bin/env python3
"""Writes the committed seed corpora of certgate's fuzz targets (fuzz/corpus/<target>/)
and the fixtures the targets verify against (fuzz/fixtures/).

Certificates and CRLs only: every private key lives in memory for the run and is never
written. Re-running replaces the generated seeds (new keys, so new bytes); the gateway.yaml
seeds are copied from the repository's examples and docs.

    python3 fuzz/gen-seeds.py
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import shutil
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.name import _ASN1Type as T
from cryptography.x509.oid import NameOID, ObjectIdentifier

FUZZ = Path(__file__).resolve().parent
REPO = FUZZ.parent
CORPUS = FUZZ / "corpus"
UTC = dt.timezone.utc
NOT_BEFORE = dt.datetime(2024, 1, 5, 3, 4, 5, tzinfo=UTC)
NOT_AFTER = dt.datetime(2030, 1, 1, tzinfo=UTC)

C, O, OU, CN = (NameOID.COUNTRY_NAME, NameOID.ORGANIZATION_NAME,
                NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.COMMON_NAME)


def name(rdns) -> x509.Name:
    """rdns: list of RDNs; an RDN is one (oid, value[, type]) or a list of them."""
    out = []
    for rdn in rdns:
        attrs = rdn if isinstance(rdn, list) else [rdn]
        out.append(x509.RelativeDistinguishedName(
            [x509.NameAttribute(a[0], a[1], *(a[2:])) for a in attrs]))
    return x509.Name(out)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def issue(subject, key, issuer=None, issuer_key=None, *, ca=False, serial=None, sans=None,
          not_before=NOT_BEFORE, not_after=NOT_AFTER):
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer.subject if issuer else subject)
               .public_key(key.public_key())
               .serial_number(serial if serial is not None else x509.random_serial_number())
               .not_valid_before(not_before)
               .not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False))
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()),
            critical=False)
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def crl(ca, ca_key, revoked, *, number=1, reasons=False):
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca.subject)
               .last_update(NOT_BEFORE)
               .add_extension(x509.CRLNumber(number), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca.public_key()), critical=False)
               .next_update(NOT_AFTER))
    for i, serial in enumerate(revoked):
        entry = (x509.RevokedCertificateBuilder().serial_number(serial)
                 .revocation_date(NOT_BEFORE))
        if reasons:
            entry = entry.add_extension(x509.CRLReason(
                [x509.ReasonFlags.key_compromise, x509.ReasonFlags.superseded][i % 2]),
                critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(ca_key, hashes.SHA256())


def write(target: str, file: str, data: bytes) -> None:
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / file).write_bytes(data)


def main() -> None:
    for target in ("identity_cert", "pki_pem", "pki_crl", "config_yaml", "identity_template",
                   "path_normalize"):
        shutil.rmtree(CORPUS / target, ignore_errors=True)
    (FUZZ / "fixtures").mkdir(exist_ok=True)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = issue(name([(C, "US"), (O, "certgate fuzz"), (CN, "certgate fuzz CA")]), ca_key, ca=True)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = issue(name([(O, "certgate fuzz"), (CN, "certgate fuzz Intermediate")]), inter_key,
                  ca, ca_key, ca=True)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = issue(name([(O, "certgate fuzz"), (OU, "clients"), (CN, "alice")]), client_key,
                   ca, ca_key, serial=0x1001,
                   sans=[x509.DNSName("alice.example"),
                         x509.UniformResourceIdentifier("spiffe://example.org/ns/a/sa/alice"),
                         x509.RFC822Name("alice@example.org")])
    (FUZZ / "fixtures" / "ca.der").write_bytes(der(ca))
    (FUZZ / "fixtures" / "client.der").write_bytes(der(client))

    # identity_cert: the subjects and extensions that reach the identity formatters.
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases = {
        "alice": client,
        "ca": ca,
        "intermediate": inter,
        "rsa": issue(name([(C, "DE"), (O, "RSA GmbH"), (CN, "bob")]), rsa_key, ca, ca_key),
        "specials": issue(name([(O, 'a,b+c"d\\e<f>g;h'), (CN, " #lead and trail ")]),
                          client_key, ca, ca_key),
        "hash_only": issue(name([(CN, "#")]), client_key, ca, ca_key),
        "multi_valued": issue(name([(C, "US"), [(O, "org"), (OU, "unit"), (CN, "multi")]]),
                              client_key, ca, ca_key),
        "string_types": issue(name([
            (C, "FR", T.PrintableString),
            (O, "Caf\u00e9 \u00e0 Paris", T.UTF8String),
            (OU, "BMP \u00e9\u4e2d", T.BMPString),
            (OU, "Universal \u00e9\U0001F600", T.UniversalString),
            (NameOID.LOCALITY_NAME, "t61", T.T61String),
            (NameOID.EMAIL_ADDRESS, "x@example.org", T.IA5String),
            (CN, "control\x01\x7f", T.UTF8String),
        ]), client_key, ca, ca_key),
        "unknown_oid": issue(name([(ObjectIdentifier("1.3.6.1.4.1.55555.1.2"), "custom"),
                                   (NameOID.DOMAIN_COMPONENT, "example"), (CN, "dc")]),
                             client_key, ca, ca_key),
        "big_serial": issue(name([(CN, "serial")]), client_key, ca, ca_key,
                            serial=(1 << 158) + 12345),
        "sans": issue(name([(CN, "sans")]), client_key, ca, ca_key, sans=[
            x509.DNSName("a.example"), x509.DNSName("*.b.example"),
            x509.UniformResourceIdentifier("spiffe://trust.example/w,x;y=z\"q"),
            x509.UniformResourceIdentifier("https://example.org/path"),
            x509.RFC822Name("mail@example.org"),
            x509.IPAddress(ipaddress.ip_address("192.0.2.1")),
            x509.DirectoryName(name([(CN, "dirname")])),
        ]),
        "empty_subject": issue(x509.Name([]), client_key, ca, ca_key,
                               sans=[x509.DNSName("empty.example")]),
        "old_dates": issue(name([(CN, "old")]), client_key, ca, ca_key,
                           not_before=dt.datetime(1950, 1, 1, tzinfo=UTC),
                           not_after=dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)),
        "far_dates": issue(name([(CN, "far")]), client_key, ca, ca_key,
                           not_after=dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
    }
    for case, cert in cases.items():
        write("identity_cert", f"{case}.der", der(cert))

    # pki_pem: certificate files as operators write them.
    write("pki_pem", "client.der", der(client))
    write("pki_pem", "client.pem", pem(client))
    write("pki_pem", "chain.pem", pem(client) + pem(inter) + pem(ca))
    write("pki_pem", "bundle_crlf_text.pem",
          b"subject=CN = certgate fuzz CA\r\n" + pem(ca).replace(b"\n", b"\r\n")
          + b"trailing text\n" + pem(cases["rsa"]))
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(name([(CN, "csr")])).sign(client_key, hashes.SHA256()))
    write("pki_pem", "csr_and_cert.pem",
          csr.public_bytes(serialization.Encoding.PEM) + pem(cases["specials"]))
    write("pki_pem", "crl_only.pem", crl(ca, ca_key, [7]).public_bytes(serialization.Encoding.PEM))

    # pki_crl: CRLs from the fixture CA (so the target's verifier finds its issuer).
    revoked = crl(ca, ca_key, [0x1001, 2, 1 << 100], reasons=True)
    write("pki_crl", "revoked.der", revoked.public_bytes(serialization.Encoding.DER))
    write("pki_crl", "revoked.pem", revoked.public_bytes(serialization.Encoding.PEM))
    write("pki_crl", "empty.der", crl(ca, ca_key, [], number=2).public_bytes(
        serialization.Encoding.DER))
    write("pki_crl", "two.pem", crl(ca, ca_key, [9]).public_bytes(serialization.Encoding.PEM)
          + crl(inter, inter_key, [0x1001]).public_bytes(serialization.Encoding.PEM))

    # config_yaml: every gateway.yaml in the repository and the YAML blocks of the docs.
    examples = [REPO / "gateway.yaml", *sorted(REPO.glob("deploy/*/gateway*.yaml"))]
    for path in examples:
        rel = path.relative_to(REPO).as_posix().replace("/", "_")
        write("config_yaml", rel, path.read_bytes())
    # The spec's example has `…` placeholders, so it is not a valid file either.
    write("config_yaml", "fragment_spec_example.yaml",
          (REPO / "crates/config/tests/spec_example.yaml").read_bytes())
    # Fragments of a gateway.yaml (not complete files): named so the replay test does not
    # expect them to be accepted.
    for doc in ("docs/config.md", "docs/nginx-migration.md", "README.md"):
        text = (REPO / doc).read_text()
        blocks = re.findall(r"```ya?ml\n(.*?)```", text, re.S)
        for i, block in enumerate(blocks):
            write("config_yaml", f"fragment_{Path(doc).stem}_{i}.yaml", block.encode())

    # identity_template: identity.set values; first line doubles as a header name.
    templates = [
        "$ssl_client_s_dn", "${ssl_client_s_dn_cn}_suffix", "CN=$ssl_client_s_dn_cn; O=$SSL_CLIENT_S_DN_O",
        "literal only", "", "$", "${", "${ssl_client_serial", "$no_such_variable",
        "x-client-id\n$ssl_client_spiffe_id", "Content-Length\n$ssl_client_verify",
        "$remote_addr:$remote_port $ssl_protocol/$ssl_cipher $ssl_server_name",
        "$ssl_client_xfcc$ssl_client_cert_rfc9440$ssl_client_v_remain",
    ]
    for i, t in enumerate(templates):
        write("identity_template", f"t{i:02}", t.encode())

    # path_normalize: the first byte picks the options (even: encoded_slashes reject, odd:
    # keep), the rest is a request path: the spellings of issue 22 and the forms around them.
    paths = [
        "/", "/admin/x", "/public/../admin/x", "/public/%2e%2e/admin/x", "/public/.%2E/admin/x",
        "//admin/x", "/./admin/x", "/%61dmin/x", "/public/..%2fadmin/x", "/public%2f..%2fadmin/x",
        "/admin%2Fx", "/public/..;/admin/x", "/public\\..\\admin/x", "/admin;jsessionid=1/x",
        "/%c0%ae%c0%ae/admin", "/v/%C3%A4.mp4", "/a/b/../../..", "/a%00b", "*", "admin/x",
        "/api/queues/%2F/orders", "/x/%7e%5f/./..//y;p=1/", "/%E0%80%AF", "/a%", "/a%zz/b",
    ]
    for i, p in enumerate(paths):
        write("path_normalize", f"p{2 * i:02}", b"\x00" + p.encode())
        write("path_normalize", f"p{2 * i + 1:02}", b"\x01" + p.encode())


if __name__ == "__main__":
    main()
