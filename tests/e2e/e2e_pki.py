"""Test PKI, generated at test time (nothing private is committed).

Most certificates are built with python `cryptography` (full control over the
subject's ASN.1 string types, RDN structure, serial numbers and validity dates);
a few are made with the openssl CLI, the way the nginx tutorials do it, so the
gateway also sees certificates encoded by OpenSSL itself.

Every client certificate here is a deliberately chosen hard case for the
identity variables ($ssl_client_s_dn & co.); see CLIENT_SPECS.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

UTC = dt.timezone.utc
NOW = dt.datetime.now(UTC).replace(microsecond=0)
# Validity that is the same "days remaining" for anybody computing it in the next
# minutes: far from a day boundary.
DEFAULT_NOT_BEFORE = NOW - dt.timedelta(days=1)
DEFAULT_NOT_AFTER = NOW + dt.timedelta(days=400, hours=12)
CA_NOT_BEFORE = dt.datetime(2019, 1, 1, tzinfo=UTC)
CA_NOT_AFTER = dt.datetime(2060, 1, 1, tzinfo=UTC)

ROOT_CA_CN = "certgate e2e Root CA"


@dataclass
class Issued:
    """One certificate on disk."""

    name: str
    cert: Path  # leaf only, PEM
    key: Path  # private key, PEM (PKCS#8, unencrypted)
    chain: Path  # leaf followed by the intermediates the client must send
    der: bytes = field(repr=False)
    desc: str = ""
    obj: x509.Certificate | None = field(default=None, repr=False)


def _key(kind: str):
    if kind == "rsa2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    raise ValueError(kind)


def _name(rdns) -> x509.Name:
    """rdns: list of RDNs; an RDN is a tuple (oid, value[, asn1type]) or a list of them
    (multi-valued RDN). Order is the DER order (most significant first)."""
    out = []
    for rdn in rdns:
        attrs = rdn if isinstance(rdn, list) else [rdn]
        nas = []
        for a in attrs:
            if len(a) == 3:
                nas.append(x509.NameAttribute(a[0], a[1], _type=a[2]))
            else:
                nas.append(x509.NameAttribute(a[0], a[1]))
        out.append(x509.RelativeDistinguishedName(nas))
    return x509.Name(out)


def _write_key(path: Path, key) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class PKI:
    def __init__(self, root: Path):
        self.dir = root
        root.mkdir(parents=True, exist_ok=True)
        self.clients: dict[str, Issued] = {}

    # -- generic issuing ----------------------------------------------------
    def _issue(
        self,
        name: str,
        subject: x509.Name,
        key,
        issuer: Issued | None,
        issuer_key,
        *,
        ca: bool = False,
        path_len: int | None = None,
        serial: int | None = None,
        not_before: dt.datetime = DEFAULT_NOT_BEFORE,
        not_after: dt.datetime = DEFAULT_NOT_AFTER,
        eku=(ExtendedKeyUsageOID.CLIENT_AUTH,),
        sans: list[x509.GeneralName] | None = None,
        chain_extra: list[Issued] = (),
        desc: str = "",
    ) -> Issued:
        issuer_name = issuer.obj.subject if issuer else subject
        b = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(serial if serial is not None else x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=path_len), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
        )
        if issuer is not None:
            b = b.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                critical=False,
            )
        if ca:
            b = b.add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
        else:
            b = b.add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False,
                    key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                    data_encipherment=False, key_agreement=False, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            if eku:
                b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=not len(subject))
        cert = b.sign(issuer_key if issuer is not None else key, hashes.SHA256())
        cpath = self.dir / f"{name}.crt"
        kpath = self.dir / f"{name}.key"
        chpath = self.dir / f"{name}.chain.pem"
        cpath.write_bytes(_pem(cert))
        _write_key(kpath, key)
        chpath.write_bytes(_pem(cert) + b"".join(c.cert.read_bytes() for c in chain_extra))
        issued = Issued(
            name, cpath, kpath, chpath, cert.public_bytes(serialization.Encoding.DER), desc, cert
        )
        issued.private_key = key  # type: ignore[attr-defined]
        return issued

    def _client(self, name, rdns, *, key="p256", issuer=None, desc="", **kw) -> Issued:
        issuer = issuer or self.root
        chain_extra = kw.pop("chain_extra", [])
        c = self._issue(
            name, _name(rdns), _key(key), issuer, issuer.private_key,
            chain_extra=chain_extra, desc=desc, **kw,
        )
        self.clients[name] = c
        return c

    # -- openssl CLI issuing (like the nginx tutorials) ---------------------
    def _openssl_client(self, name, subj, *, keyalg, serial=None, extra_req=(), desc="") -> Issued:
        d = self.dir
        key = d / f"{name}.key"
        csr = d / f"{name}.csr"
        crt = d / f"{name}.crt"
        ext = d / f"{name}.ext"
        ext.write_text(
            "[v3]\nbasicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid\n"
        )
        run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
        run("openssl", "req", "-new", "-newkey", *keyalg, "-nodes", "-keyout", str(key),
            "-subj", subj, *extra_req, "-out", str(csr))
        x509_args = ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(self.root.cert),
                     "-CAkey", str(self.root.key), "-days", "400", "-sha256",
                     "-extfile", str(ext), "-extensions", "v3", "-out", str(crt)]
        if serial is None:
            serial = "0x" + x509.random_serial_number().to_bytes(20, "big").hex()
        x509_args += ["-set_serial", serial]
        run(*x509_args)
        key.chmod(0o600)
        obj = x509.load_pem_x509_certificate(crt.read_bytes())
        chain = d / f"{name}.chain.pem"
        chain.write_bytes(crt.read_bytes())
        c = Issued(name, crt, key, chain, obj.public_bytes(serialization.Encoding.DER), desc, obj)
        self.clients[name] = c
        return c

    # -- the PKI ------------------------------------------------------------
    def build(self) -> "PKI":
        C, ST, L, O, OU, CN = (NameOID.COUNTRY_NAME, NameOID.STATE_OR_PROVINCE_NAME,
                               NameOID.LOCALITY_NAME, NameOID.ORGANIZATION_NAME,
                               NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.COMMON_NAME)
        T = _ASN1Type

        # Trust anchors -------------------------------------------------------
        self.root = self._issue(
            "ca", _name([(C, "US"), (O, "certgate e2e"), (CN, ROOT_CA_CN)]), _key("rsa2048"),
            None, None, ca=True, not_before=CA_NOT_BEFORE, not_after=CA_NOT_AFTER,
        )
        self.inter = self._issue(
            "intermediate", _name([(C, "US"), (O, "certgate e2e"), (CN, "certgate e2e Intermediate CA")]),
            _key("p256"), self.root, self.root.private_key, ca=True,
            not_before=CA_NOT_BEFORE, not_after=CA_NOT_AFTER,
        )
        self.inter2 = self._issue(
            "intermediate2", _name([(O, "certgate e2e"), (CN, "certgate e2e Second-level CA")]),
            _key("p256"), self.inter, self.inter.private_key, ca=True,
            not_before=CA_NOT_BEFORE, not_after=CA_NOT_AFTER,
        )
        self.foreign_ca = self._issue(
            "foreign-ca", _name([(O, "Somebody Else"), (CN, "Foreign Root CA")]), _key("p256"),
            None, None, ca=True, not_before=CA_NOT_BEFORE, not_after=CA_NOT_AFTER,
        )
        self.foreign_inter = self._issue(
            "foreign-intermediate", _name([(O, "Somebody Else"), (CN, "Foreign Intermediate CA")]),
            _key("p256"), self.foreign_ca, self.foreign_ca.private_key, ca=True,
            not_before=CA_NOT_BEFORE, not_after=CA_NOT_AFTER,
        )
        self.ca_crt = self.root.cert

        # Server certificate (ECDSA P-256, signed by the RSA root) --------------
        self.server = self._issue(
            "server", _name([(O, "certgate e2e"), (CN, "localhost")]), _key("p256"),
            self.root, self.root.private_key, eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
            sans=[x509.DNSName("localhost"), x509.DNSName("gw.test"),
                  x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        )

        # Client certificates that verify -------------------------------------
        self._client(
            "ascii_rsa",
            [(C, "US"), (ST, "California"), (L, "San Francisco"), (O, "Example Corp"),
             (OU, "Engineering"), (CN, "alice")],
            key="rsa2048",
            # day < 10: OpenSSL prints "Jan  5 03:04:05 2024 GMT" (space-padded)
            not_before=dt.datetime(2024, 1, 5, 3, 4, 5, tzinfo=UTC),
            desc="plain ASCII subject, RSA key, space-padded v_start day",
        )
        self._client(
            "utf8_ec",
            [(C, "DE"), (L, "Zürich"), (O, "Müller GmbH"), (OU, "Forschung & Entwicklung"),
             (CN, "张三")],
            key="p256", desc="UTF-8 subject (Latin-1 range and CJK), ECDSA P-256",
        )
        self._client(
            "rfc2253_escapes",
            [(C, "US"), (O, 'a,b+c"d\\e<f>g;h=i'), (OU, "#leading hash"), (OU, "mid # hash"),
             (OU, "R&D/QA = ok"),
             (L, " leading space"), (ST, "trailing space "), (CN, "  both  ")],
            key="p256", desc="characters needing RFC 2253 escaping: , + \" \\ < > ; leading #, spaces",
        )
        self._openssl_client(
            "multivalue_rdn", "/C=US/O=Multi Valued/CN=x+UID=y",
            keyalg=["rsa:2048"], extra_req=["-multivalue-rdn"],
            desc="multi-valued RDN CN=x+UID=y (openssl CLI -multivalue-rdn)",
        )
        self._client(
            "email_p384",
            [(C, "US"), (O, "Example"), (CN, "bob"),
             (NameOID.EMAIL_ADDRESS, "bob@example.com")],
            key="p384", desc="emailAddress in the subject, ECDSA P-384",
        )
        self._openssl_client(
            "serial_pad", "/C=US/O=Serials/CN=serial 0x00FF",
            keyalg=["ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            serial="0x00FF0102030405060708",
            desc="serial -set_serial 0x00FF0102030405060708: first byte >= 0x80, DER pads 00",
        )
        self._client(
            "serial_zero_nibble", [(O, "Serials"), (CN, "serial 0x0A0B0C")],
            key="rsa2048", serial=0x0A0B0C, desc="serial 0x0A0B0C (leading zero nibble), RSA",
        )
        self._client(
            "serial_one_byte", [(O, "Serials"), (CN, "serial 5")],
            key="p256", serial=5, desc="one-byte serial 05",
        )
        self._client(
            "serial_80", [(O, "Serials"), (CN, "serial 0x80")],
            key="p256", serial=0x80, desc="serial 0x80: one content byte, DER 02 02 00 80",
        )
        self._client(
            "via_intermediate", [(C, "US"), (O, "certgate e2e"), (OU, "services"), (CN, "svc-a")],
            key="p256", issuer=self.inter, chain_extra=[self.inter],
            desc="issued by an intermediate; the client sends leaf + intermediate",
        )
        self._client(
            "generalized_time", [(O, "Long Lived"), (CN, "until 2055")],
            key="p256",
            # 12 h away from a day boundary, so $ssl_client_v_remain cannot tick between
            # the nginx and the certgate request
            not_after=(NOW + dt.timedelta(hours=12)).replace(year=2055, month=6, day=15),
            desc="notAfter in 2055: GeneralizedTime",
        )
        self._openssl_client(
            "serial_20_bytes", "/O=Serials/CN=serial of 20 bytes, high bit set",
            keyalg=["ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            serial="0x8899AABBCCDDEEFF00112233445566778899AABB",
            desc="20-byte serial with the high bit set (DER: 21 bytes, 00-padded)",
        )
        self._client(
            "expiring_soon", [(O, "Short Lived"), (CN, "expires in 6 hours")],
            key="p256", not_after=NOW + dt.timedelta(hours=6),
            desc="expires within a day: $ssl_client_v_remain is 0",
        )
        self._client(
            "string_types",
            [(C, "FR", T.PrintableString), (O, "Printable Org", T.PrintableString),
             (OU, "BMP Ünïcode", T.BMPString), (L, "ia5 locality", T.IA5String),
             (CN, "utf8 ñ", T.UTF8String)],
            key="p256", desc="PrintableString, BMPString, IA5String, UTF8String attributes",
        )
        self._client(
            "control_chars",
            [(O, "ctl"), (CN, "tab\there del\x7f end")],
            key="p256", desc="control characters (TAB, DEL) in the subject",
        )
        self._client(
            "many_attrs",
            [(NameOID.DOMAIN_COMPONENT, "com"), (NameOID.DOMAIN_COMPONENT, "example"),
             (O, "Attrs"), (NameOID.SERIAL_NUMBER, "SN-0042"), (NameOID.TITLE, "Engineer"),
             (NameOID.GIVEN_NAME, "Ada"), (NameOID.SURNAME, "Lovelace"),
             (NameOID.STREET_ADDRESS, "1 Main St"), (NameOID.POSTAL_CODE, "12345"),
             (NameOID.USER_ID, "ada"),
             (ObjectIdentifier("1.3.6.1.4.1.55555.1.2"), "custom value"),
             (CN, "ada")],
            key="p256",
            desc="DC, serialNumber, title, GN, SN, street, postalCode, UID and an unknown OID",
        )
        self._client(
            "empty_subject", [], key="p256",
            sans=[x509.DNSName("empty.example")],
            desc="empty subject (SAN only): $ssl_client_s_dn is empty",
        )

        # Client certificates that must fail ----------------------------------
        self.failing: dict[str, Issued] = {}
        self.failing["foreign"] = self._client(
            "foreign", [(O, "Somebody Else"), (CN, "mallory")], key="p256",
            issuer=self.foreign_ca, desc="issued by a CA the gateway does not trust",
        )
        self.failing["foreign_chain"] = self._client(
            "foreign_chain", [(O, "Somebody Else"), (CN, "mallory via intermediate")], key="p256",
            issuer=self.foreign_inter, chain_extra=[self.foreign_inter],
            desc="foreign leaf + foreign intermediate: the chain ends at an unknown issuer",
        )
        self.failing["foreign_expired"] = self._client(
            "foreign_expired", [(O, "Somebody Else"), (CN, "expired mallory")], key="p256",
            issuer=self.foreign_ca, not_before=dt.datetime(2020, 3, 1, tzinfo=UTC),
            not_after=dt.datetime(2021, 3, 1, tzinfo=UTC),
            desc="foreign CA and expired",
        )
        self.failing["expired"] = self._client(
            "expired", [(O, "certgate e2e"), (CN, "expired")], key="p256",
            not_before=dt.datetime(2020, 3, 1, tzinfo=UTC),
            not_after=dt.datetime(2021, 3, 1, tzinfo=UTC), desc="expired in 2021",
        )
        self.failing["too_deep"] = self._client(
            "too_deep", [(O, "certgate e2e"), (CN, "two intermediates")], key="p256",
            issuer=self.inter2, chain_extra=[self.inter2, self.inter],
            desc="leaf <- intermediate2 <- intermediate <- root: two intermediates",
        )
        self.failing["not_yet_valid"] = self._client(
            "not_yet_valid", [(O, "certgate e2e"), (CN, "from 2040")], key="p256",
            not_before=dt.datetime(2040, 1, 1, tzinfo=UTC),
            not_after=dt.datetime(2041, 1, 1, tzinfo=UTC), desc="notBefore in 2040",
        )
        self.failing["server_eku"] = self._client(
            "server_eku", [(O, "certgate e2e"), (CN, "server only")], key="p256",
            eku=(ExtendedKeyUsageOID.SERVER_AUTH,), desc="EKU serverAuth only",
        )
        self.failing["self_signed"] = self._self_signed()
        for n in self.failing:
            self.clients.pop(n, None)
        return self

    def _self_signed(self) -> Issued:
        key = _key("p256")
        subject = _name([(NameOID.ORGANIZATION_NAME, "Self"), (NameOID.COMMON_NAME, "self-signed")])
        c = self._issue("self_signed", subject, key, None, None, desc="self-signed leaf")
        return c


def build_pki(root: Path) -> PKI:
    return PKI(root).build()
