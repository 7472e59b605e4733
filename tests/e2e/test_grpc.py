"""gRPC through certgate with Python grpcio on both sides: a client with (or without) a
client certificate calls a plain-text grpcio server (`protocol: grpc`) and a grpcio
server over TLS that requires client certificates (`protocol: grpcs`).

The stubs are generated at test time with grpc_tools.protoc into a temp directory.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import threading
import time
from concurrent import futures

import pytest

grpc = pytest.importorskip("grpc")
pytest.importorskip("grpc_tools")

from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

import e2e_servers as S  # noqa: E402

PROTO = """
syntax = "proto3";
package certgate.e2e;

message Msg {
  string text = 1;
  bytes payload = 2;
}

service Echo {
  rpc Unary(Msg) returns (Msg);
  rpc ServerStream(Msg) returns (stream Msg);
  rpc ClientStream(stream Msg) returns (Msg);
  rpc Bidi(stream Msg) returns (stream Msg);
}
"""

SERVICE = "certgate.e2e.Echo"
BIG = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", BIG),
    ("grpc.max_receive_message_length", BIG),
]


@pytest.fixture(scope="module")
def pb(tmp_path_factory):
    out = tmp_path_factory.mktemp("grpc-stubs")
    (out / "certgate_echo.proto").write_text(PROTO)
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{out}", f"--python_out={out}",
         f"--grpc_python_out={out}", str(out / "certgate_echo.proto")],
        check=True, capture_output=True,
    )
    sys.path.insert(0, str(out))
    try:
        pb2 = importlib.import_module("certgate_echo_pb2")
        pb2_grpc = importlib.import_module("certgate_echo_pb2_grpc")
    finally:
        sys.path.remove(str(out))
    return pb2, pb2_grpc


class Recorder:
    """What the upstream saw: per call, the method, its metadata and TLS peer CN."""

    def __init__(self):
        self.calls: list[dict] = []
        self.lock = threading.Lock()

    def record(self, method: str, context) -> dict:
        auth = context.auth_context() or {}
        rec = {
            "method": method,
            "metadata": {k: v for k, v in context.invocation_metadata()},
            "peer_cn": [c.decode() for c in auth.get("x509_common_name", [])],
            "time_remaining": context.time_remaining(),
        }
        with self.lock:
            self.calls.append(rec)
        return rec

    def last(self, method: str) -> dict:
        with self.lock:
            found = [c for c in self.calls if c["method"] == method]
        assert found, f"the upstream never received {method}"
        return found[-1]

    def count(self) -> int:
        with self.lock:
            return len(self.calls)


def make_servicer(pb):
    pb2, pb2_grpc = pb

    class Echo(pb2_grpc.EchoServicer):
        def __init__(self):
            self.seen = Recorder()

        def Unary(self, request, context):
            self.seen.record("Unary", context)
            if request.text == "fail":
                context.set_trailing_metadata((("x-custom-trailer", "failed-call"),))
                context.abort(grpc.StatusCode.NOT_FOUND, "no such thing: custom message")
            if request.text.startswith("sleep:"):
                time.sleep(float(request.text.split(":", 1)[1]))
            context.set_trailing_metadata((("x-custom-trailer", "unary-trailer"),))
            return pb2.Msg(text=request.text, payload=request.payload)

        def ServerStream(self, request, context):
            self.seen.record("ServerStream", context)
            for i in range(int(request.text)):
                yield pb2.Msg(text=str(i), payload=request.payload)
            context.set_trailing_metadata((("x-custom-trailer", "stream-trailer"),))

        def ClientStream(self, request_iterator, context):
            self.seen.record("ClientStream", context)
            n = total = 0
            for m in request_iterator:
                n += 1
                total += len(m.payload)
            return pb2.Msg(text=f"{n} {total}")

        def Bidi(self, request_iterator, context):
            self.seen.record("Bidi", context)
            for m in request_iterator:
                yield pb2.Msg(text=m.text.upper())

    return Echo()


class GrpcServer:
    def __init__(self, pb, credentials=None):
        self.servicer = make_servicer(pb)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=CHANNEL_OPTIONS)
        pb[1].add_EchoServicer_to_server(self.servicer, self.server)
        if credentials is None:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            self.port = self.server.add_secure_port("127.0.0.1:0", credentials)
        self.server.start()

    @property
    def seen(self) -> Recorder:
        return self.servicer.seen

    def stop(self):
        self.server.stop(grace=None)


@pytest.fixture(scope="module")
def grpc_backend(pb):
    s = GrpcServer(pb)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def upstream_client_cert(pki):
    """The certificate certgate presents to a grpcs upstream (grpc_ssl_certificate)."""
    from e2e_pki import _key, _name

    return pki._issue(
        "gateway-upstream-client",
        _name([(NameOID.ORGANIZATION_NAME, "certgate e2e"), (NameOID.COMMON_NAME, "certgate-gateway")]),
        _key("p256"), pki.root, pki.root.private_key,
        eku=(ExtendedKeyUsageOID.CLIENT_AUTH,),
    )


@pytest.fixture(scope="module")
def grpcs_backend(pb, pki):
    """grpcio over TLS with the e2e server certificate, requiring client certificates
    issued by the e2e root."""
    creds = grpc.ssl_server_credentials(
        [(pki.server.key.read_bytes(), pki.server.cert.read_bytes())],
        root_certificates=pki.ca_crt.read_bytes(),
        require_client_auth=True,
    )
    s = GrpcServer(pb, creds)
    yield s
    s.stop()


def grpc_gateway_config(pki, upstream: dict, *, route_extra: dict | None = None, allow=None):
    route = {
        "match": {"grpc_service": SERVICE},
        "upstream": "grpc",
        "max_body_size": "64m",
        "timeouts": {"connect": "2s", "read": "2s", "send": "5s"},
        **(route_extra or {}),
    }
    if allow is not None:
        route["allow"] = allow
    return S.gateway_config(pki, S.free_port(), 1, routes=[route], upstreams={"grpc": upstream})


def channel(gw, pki, client=None):
    kw = {"root_certificates": pki.ca_crt.read_bytes()}
    if client is not None:
        kw["private_key"] = client.key.read_bytes()
        kw["certificate_chain"] = client.chain.read_bytes()
    creds = grpc.ssl_channel_credentials(**kw)
    return grpc.secure_channel(f"localhost:{gw.port}", creds, options=CHANNEL_OPTIONS)


@pytest.fixture(scope="module")
def grpc_gateway(module_gateway_factory, pki, grpc_backend):
    return module_gateway_factory(
        grpc_gateway_config(pki, {"servers": [f"127.0.0.1:{grpc_backend.port}"], "protocol": "grpc"})
    )


def stub(pb, ch):
    return pb[1].EchoStub(ch)


ALICE_S_DN = "CN=alice,OU=Engineering,O=Example Corp,L=San Francisco,ST=California,C=US"


def test_four_rpc_kinds_with_identity_metadata(pb, pki, grpc_gateway, grpc_backend):
    pb2 = pb[0]
    alice = pki.clients["ascii_rsa"]
    with channel(grpc_gateway, pki, alice) as ch:
        s = stub(pb, ch)
        reply, call = s.Unary.with_call(pb2.Msg(text="hello"), timeout=10)
        assert reply.text == "hello"
        assert ("x-custom-trailer", "unary-trailer") in call.trailing_metadata()

        stream = s.ServerStream(pb2.Msg(text="50"), timeout=10)
        assert [m.text for m in stream] == [str(i) for i in range(50)]
        assert ("x-custom-trailer", "stream-trailer") in stream.trailing_metadata()

        reply = s.ClientStream(iter([pb2.Msg(payload=b"x" * 1000) for _ in range(30)]), timeout=10)
        assert reply.text == "30 30000"

        # Bidi in lock-step: each reply must arrive before the next request is sent,
        # which only works if neither direction is buffered.
        import queue

        outbox: queue.Queue = queue.Queue()

        def requests():
            while True:
                m = outbox.get()
                if m is None:
                    return
                yield m

        replies = s.Bidi(requests(), timeout=10)
        for word in ["one", "two", "three"]:
            outbox.put(pb2.Msg(text=word))
            assert next(replies).text == word.upper()
        outbox.put(None)
        assert list(replies) == []

    for method in ["Unary", "ServerStream", "ClientStream", "Bidi"]:
        md = grpc_backend.seen.last(method)["metadata"]
        assert md.get("x-ssl-client-s-dn") == ALICE_S_DN, md
        assert md.get("x-ssl-client-verify") == "SUCCESS"


def test_spoofed_identity_metadata_is_replaced(pb, pki, grpc_gateway, grpc_backend):
    alice = pki.clients["ascii_rsa"]
    with channel(grpc_gateway, pki, alice) as ch:
        stub(pb, ch).Unary(pb[0].Msg(text="spoof"), timeout=10,
                           metadata=(("x-ssl-client-s-dn", "CN=admin"),))
    assert grpc_backend.seen.last("Unary")["metadata"]["x-ssl-client-s-dn"] == ALICE_S_DN


def test_error_status_message_and_trailers_pass_through(pb, pki, grpc_gateway):
    alice = pki.clients["ascii_rsa"]
    with channel(grpc_gateway, pki, alice) as ch:
        with pytest.raises(grpc.RpcError) as err:
            stub(pb, ch).Unary(pb[0].Msg(text="fail"), timeout=10)
    e = err.value
    assert e.code() == grpc.StatusCode.NOT_FOUND
    assert e.details() == "no such thing: custom message"
    assert ("x-custom-trailer", "failed-call") in e.trailing_metadata()


def test_messages_of_16_mb_and_more(pb, pki, grpc_gateway):
    alice = pki.clients["ascii_rsa"]
    payload = bytes(range(256)) * (17 * 1024 * 1024 // 256)
    with channel(grpc_gateway, pki, alice) as ch:
        reply = stub(pb, ch).Unary(pb[0].Msg(text="big", payload=payload), timeout=60)
    assert len(reply.payload) == len(payload)
    assert reply.payload == payload


def test_deadline_reaches_backend_and_is_enforced(pb, pki, grpc_gateway, grpc_backend):
    alice = pki.clients["ascii_rsa"]
    with channel(grpc_gateway, pki, alice) as ch:
        with pytest.raises(grpc.RpcError) as err:
            stub(pb, ch).Unary(pb[0].Msg(text="sleep:1.5"), timeout=0.5)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    remaining = grpc_backend.seen.last("Unary")["time_remaining"]
    assert remaining is not None and remaining < 1.0, "grpc-timeout did not reach the backend"


def test_gateway_timeout_is_deadline_exceeded(pb, pki, grpc_gateway):
    # No client deadline; the route's read timeout (2s) expires first.
    alice = pki.clients["ascii_rsa"]
    with channel(grpc_gateway, pki, alice) as ch:
        with pytest.raises(grpc.RpcError) as err:
            stub(pb, ch).Unary(pb[0].Msg(text="sleep:4"), timeout=30)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_without_certificate_is_unauthenticated_and_not_forwarded(pb, pki, grpc_gateway, grpc_backend):
    before = grpc_backend.seen.count()
    with channel(grpc_gateway, pki, None) as ch:
        with pytest.raises(grpc.RpcError) as err:
            stub(pb, ch).Unary(pb[0].Msg(text="anon"), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert grpc_backend.seen.count() == before


def test_foreign_certificate_is_unauthenticated(pb, pki, grpc_gateway, grpc_backend):
    before = grpc_backend.seen.count()
    foreign = pki.failing["foreign"]
    with channel(grpc_gateway, pki, foreign) as ch:
        with pytest.raises(grpc.RpcError) as err:
            stub(pb, ch).Unary(pb[0].Msg(text="foreign"), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert grpc_backend.seen.count() == before


def test_allow_failure_is_permission_denied(pb, pki, gateway_factory, grpc_backend):
    gw = gateway_factory(grpc_gateway_config(
        pki, {"servers": [f"127.0.0.1:{grpc_backend.port}"], "protocol": "grpc"},
        allow=[{"cn": ["somebody-else"]}],
    ))
    before = grpc_backend.seen.count()
    with channel(gw, pki, pki.clients["ascii_rsa"]) as ch:
        with pytest.raises(grpc.RpcError) as err:
            stub(pb, ch).Unary(pb[0].Msg(text="denied"), timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert grpc_backend.seen.count() == before


def test_dead_upstream_is_unavailable(pb, pki, gateway_factory):
    gw = gateway_factory(grpc_gateway_config(
        pki, {"servers": [f"127.0.0.1:{S.free_port()}"], "protocol": "grpc"}))
    with channel(gw, pki, pki.clients["ascii_rsa"]) as ch:
        with pytest.raises(grpc.RpcError) as err:
            stub(pb, ch).Unary(pb[0].Msg(text="nobody home"), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


# ---------------------------------------------------------------------------
# grpcs: TLS to the upstream, which requires a client certificate
# ---------------------------------------------------------------------------


def grpcs_upstream(backend, pki, client_cert, **tls):
    conf = {"trusted_ca": str(pki.ca_crt), **tls}
    if client_cert is not None:
        conf.update(cert=str(client_cert.cert), key=str(client_cert.key))
    return {"servers": [f"127.0.0.1:{backend.port}"], "protocol": "grpcs", "tls": conf}


@pytest.mark.parametrize("sni", [None, "localhost"])
def test_grpcs_upstream_with_client_certificate(pb, pki, gateway_factory, grpcs_backend,
                                                upstream_client_cert, sni):
    tls = {"sni": sni} if sni else {}
    gw = gateway_factory(grpc_gateway_config(
        pki, grpcs_upstream(grpcs_backend, pki, upstream_client_cert, **tls)))
    with channel(gw, pki, pki.clients["ascii_rsa"]) as ch:
        s = stub(pb, ch)
        assert s.Unary(pb[0].Msg(text="over tls"), timeout=10).text == "over tls"
        assert [m.text for m in s.ServerStream(pb[0].Msg(text="3"), timeout=10)] == ["0", "1", "2"]
    call = grpcs_backend.seen.last("ServerStream")
    assert call["peer_cn"] == ["certgate-gateway"], "the upstream did not see the configured client certificate"
    assert call["metadata"]["x-ssl-client-s-dn"] == ALICE_S_DN


@pytest.mark.parametrize(
    "case,reason",
    [
        ("wrong_ca", "unknown CA"),
        ("wrong_ca_with_sni", "unknown CA"),
        ("wrong_name", "name mismatch"),
        ("no_client_cert", "client certificate"),
    ],
)
def test_grpcs_upstream_failures_are_unavailable(pb, pki, gateway_factory, grpcs_backend,
                                                 upstream_client_cert, case, reason):
    if case == "wrong_ca":
        up = grpcs_upstream(grpcs_backend, pki, upstream_client_cert, trusted_ca=str(pki.foreign_ca.cert))
    elif case == "wrong_ca_with_sni":
        up = grpcs_upstream(grpcs_backend, pki, upstream_client_cert, trusted_ca=str(pki.foreign_ca.cert),
                            sni="localhost")
    elif case == "wrong_name":
        up = grpcs_upstream(grpcs_backend, pki, upstream_client_cert, sni="not-the-backend.example")
    else:
        up = grpcs_upstream(grpcs_backend, pki, None)
    gw = gateway_factory(grpc_gateway_config(pki, up))
    before = grpcs_backend.seen.count()
    with channel(gw, pki, pki.clients["ascii_rsa"]) as ch:
        with pytest.raises(grpc.RpcError) as err:
            stub(pb, ch).Unary(pb[0].Msg(text="must fail"), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
    assert grpcs_backend.seen.count() == before
    deadline = time.monotonic() + 5
    while reason not in gw.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert reason in gw.log(), gw.log()
