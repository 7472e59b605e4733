"""Request-path normalization (issue 22) with real backends and clients that send the path
exactly as written.

One certgate process, `verify: optional`, two servers with the same routes: `/admin/` allowed
to `CN=bob` only, `/private/` with `require_client_cert: true`, `/` open. One server is in
front of a real Flask app (werkzeug decodes `%2F` and every other escape, and Python's
http.server merges a leading `//`), the other in front of a Go `net/http` `ServeMux`
(clients/go/backend `-path-probe`: matches on the decoded `r.URL.Path`, redirects `//x` and
`/a/../x` to their clean form). Both have an admin handler at `/admin/x`, a private one at
`/private/x` and a catch-all; every handler answers its marker (`ADMIN-HANDLER`, ...) and
records the target it received, the decoded path and the caller's subject DN.

Every spelling is sent with clients that do not normalize it themselves: raw HTTP/1.1 over a
Python `ssl` socket, `curl --path-as-is` over HTTP/1.1 and over HTTP/2, `openssl s_client`
for the absolute form. Checked: the unprivileged caller (`CN=alice`) gets 403 or 400 and the
admin handler never runs for it; a caller without a certificate never reaches `/private/x`;
`CN=bob` gets the admin handler for every spelling that means `/admin/x`, and the backend
receives exactly `/admin/x`; ambiguous spellings are 400 for everyone and counted as
`bad_path`; the query string arrives as sent. A control test sends the same spellings to the
backends directly: several reach the admin handler there, so a gateway that routed on the raw
path (and forwarded it) would fail this module.
"""

from __future__ import annotations

import copy
import json
import socket
import ssl
import threading
import urllib.request
from dataclasses import dataclass

import pytest
from cryptography.x509.oid import NameOID
from flask import Flask, jsonify, request
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.serving import WSGIRequestHandler, make_server

import e2e_clients as C
import e2e_servers as S

ADMIN = "ADMIN-HANDLER"
PRIVATE = "PRIVATE-HANDLER"
PRIVILEGED_CN = "bob"  # pki.clients["email_p384"]
UNPRIVILEGED_CN = "alice"  # pki.clients["ascii_rsa"]

# Spellings of `/DIR/x` that certgate normalizes to it: the route of `/DIR/` decides, and
# the backend receives `/DIR/x`.
MEANS_DIR_X = [
    "/public/../DIR/x",
    "/public/%2e%2e/DIR/x",
    "/public/.%2e/DIR/x",
    "/public/%2E%2E/DIR/x",
    "/public/a/b/../../../DIR/x",
    "//DIR/x",
    "/DIR//x",
    "/./DIR/x",
    "/%2e/DIR/x",
    "/%61dmin/x",  # the directory's first letter escaped: `/%70rivate/x` for private
    "/DIR/y/../x",
]

# Spellings no normalization can settle: 400 whoever asks, never forwarded.
REFUSED = [
    "/public/..%2fDIR/x",
    "/public%2f..%2fDIR/x",
    "/DIR%2fx",
    "/DIR%2Fx",
    "/DIR%5cx",
    "/public/..;/DIR/x",
    "/public/.;/DIR/x",
    "/public/%2e%2e;/DIR/x",
    "/public\\..\\DIR/x",
    "/DIR\\x",
    "/DIR;x/x",
    "/DIR;jsessionid=1/x",
    "/public/%c0%ae%c0%ae/DIR/x",
    "/%c0%ae%c0%ae/DIR/x",
    "/%c0%afDIR/x",
    "/DIR/x%00",
    "/DIR/%00/../x",
    "/../DIR/x",
    "/public/../../DIR/x",
]


# Spellings that name some other resource (double escapes, an escaped `;` or `.`, a fragment):
# wherever they go, never to the admin handler.
ELSEWHERE = [
    "/%2561dmin/x",
    "/admin%252fx",
    "/public/..%252fadmin/x",
    "/admin%3bx/x",
    "/admin%2e/x",
    "/admin.;/x",
    "/ADMIN/x",
    "/public/x#/../../admin/x",
    "/public/x?/../../admin/x",
]


def spell(template: str, directory: str) -> str:
    if directory != "admin" and "%61dmin" in template:
        return template.replace("%61dmin", "%" + format(ord(directory[0]), "02x") + directory[1:])
    return template.replace("DIR", directory)


def spellings(directory: str) -> list[tuple[str, bool]]:
    """(path, whether certgate normalizes it to /<directory>/x rather than refusing it)."""
    return ([(spell(t, directory), True) for t in MEANS_DIR_X]
            + [(spell(t, directory), False) for t in REFUSED])


# --------------------------------------------------------------------------
# The backends
# --------------------------------------------------------------------------


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args, **kw):
        pass


class FlaskApp:
    """A Flask app with protected handlers; werkzeug's threaded server on a free port."""

    def __init__(self):
        self._calls: list[dict] = []
        self._lock = threading.Lock()
        app = Flask("certgate-e2e-paths")

        def handle(marker: str):
            call = {
                "handler": marker,
                "path": request.path,  # decoded, what Flask routed on
                "request_uri": request.environ["REQUEST_URI"],  # the target as received
                "query": request.query_string.decode("latin-1"),
                "subject": request.headers.get("X-SSL-Client-S-DN", ""),
                "proto": request.environ["SERVER_PROTOCOL"],
            }
            with self._lock:
                self._calls.append(call)
            return jsonify(call)

        app.add_url_rule("/admin/x", "admin", lambda: handle(ADMIN))
        app.add_url_rule("/private/x", "private", lambda: handle(PRIVATE))
        app.add_url_rule("/", "root", lambda: handle("CATCH-ALL"))
        app.add_url_rule("/<path:rest>", "catch_all", lambda rest: handle("CATCH-ALL"))
        self.port = S.free_port()
        self.server = make_server("127.0.0.1", self.port, app, threaded=True,
                                  request_handler=_Quiet)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        S.wait_port(self.port)

    def calls(self) -> list[dict]:
        with self._lock:
            return list(self._calls)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class GoApp:
    """clients/go/backend -path-probe: an http.ServeMux with the same handlers."""

    def __init__(self, bins: C.GoBins, tmpdir):
        self.port = S.free_port()
        self.process = S.ManagedProcess(
            "go-path-probe",
            [str(bins.backend), "-listen", f"127.0.0.1:{self.port}", "-path-probe"],
            tmpdir, tmpdir / "go-path-probe.log")
        S.wait_port(self.port, self.process.proc)

    def calls(self) -> list[dict]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/__calls", timeout=10) as r:
            return json.load(r)

    def stop(self):
        self.process.stop()


# --------------------------------------------------------------------------
# Clients that send the path as written
# --------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: bytes
    version: str


def http1(port: int, target: str, *, pki=None, client=None, tls: bool = True) -> Answer:
    """`GET <target> HTTP/1.1` written byte for byte on a new connection (TLS with `client`'s
    certificate, or plain HTTP for the backends)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        conn = raw
        if tls:
            ctx = ssl.create_default_context(cafile=str(pki.ca_crt))
            ctx.set_alpn_protocols(["http/1.1"])
            if client is not None:
                ctx.load_cert_chain(str(client.chain), str(client.key))
            conn = ctx.wrap_socket(raw, server_hostname="localhost")
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                     .encode("latin-1"))
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    finally:
        raw.close()
    assert data.startswith(b"HTTP/1.1 "), f"no HTTP/1.1 answer to {target!r}: {data[:300]!r}"
    head, body = S.split_http1_response(data)
    return Answer(int(head[9:12]), body, "1.1")


def curl(port: int, path: str, *, pki, client, http2: bool) -> Answer:
    r = S.curl(port, path, pki=pki, client=client,
               args=("--path-as-is", "--http2" if http2 else "--http1.1"))
    assert r.rc == 0 and r.status, f"curl {path!r}: rc {r.rc}, {r.stderr}"
    want = "2" if http2 else "1.1"
    assert r.http_version == want, f"curl {path!r} spoke HTTP/{r.http_version}, not {want}"
    return Answer(r.status, r.body, r.http_version)


CLIENTS = {
    "http1.1-socket": lambda port, path, pki, client: http1(port, path, pki=pki, client=client),
    "http1.1-curl": lambda port, path, pki, client: curl(port, path, pki=pki, client=client,
                                                        http2=False),
    "http2-curl": lambda port, path, pki, client: curl(port, path, pki=pki, client=client,
                                                      http2=True),
}


# --------------------------------------------------------------------------
# Fixtures: one gateway, two servers, two backends per module
# --------------------------------------------------------------------------


def routes(upstream: str) -> list[dict]:
    return [
        {"match": {"path_prefix": "/admin/"}, "upstream": upstream,
         "allow": [{"cn": [PRIVILEGED_CN]}]},
        {"match": {"path_prefix": "/private/"}, "upstream": upstream,
         "require_client_cert": True},
        {"match": {"path_prefix": "/"}, "upstream": upstream},
    ]


@dataclass
class Setup:
    pki: object
    ports: dict  # backend name -> gateway port of the server in front of it
    apps: dict  # backend name -> FlaskApp | GoApp
    admin_port: int

    @property
    def alice(self):
        return self.pki.clients["ascii_rsa"]

    @property
    def bob(self):
        return self.pki.clients["email_p384"]


@pytest.fixture(scope="module")
def flask_app():
    app = FlaskApp()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def go_app(tmp_path_factory):
    bins = C.build_go(tmp_path_factory.mktemp("go-bin"))
    app = GoApp(bins, tmp_path_factory.mktemp("go-path-probe"))
    yield app
    app.stop()


@pytest.fixture(scope="module")
def setup(module_gateway_factory, pki, flask_app, go_app) -> Setup:
    for name, cn in (("email_p384", PRIVILEGED_CN), ("ascii_rsa", UNPRIVILEGED_CN)):
        got = pki.clients[name].obj.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        assert [a.value for a in got] == [cn], (name, got)
    ports = {"flask": S.free_port(), "go": S.free_port()}
    config = S.gateway_config(pki, ports["flask"], flask_app.port,
                              client_auth={"verify": "optional"}, routes=routes("flask"),
                              upstreams={"flask": {"servers": [f"127.0.0.1:{flask_app.port}"]},
                                         "go": {"servers": [f"127.0.0.1:{go_app.port}"]}})
    config["servers"][0]["name"] = "flask"
    go_server = copy.deepcopy(config["servers"][0])
    go_server.update(name="go", listen=[f"127.0.0.1:{ports['go']}"], routes=routes("go"))
    config["servers"].append(go_server)
    admin_port = S.free_port()
    config["admin"] = {"listen": f"127.0.0.1:{admin_port}"}
    module_gateway_factory(config)
    S.wait_port(ports["go"])
    S.wait_port(admin_port)
    return Setup(pki, ports, {"flask": flask_app, "go": go_app}, admin_port)


def bad_path_errors(admin_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "certgate_client_errors_total" and s.labels.get("kind") == "bad_path":
                return s.value
    return 0.0


BACKENDS = ["flask", "go"]


# --------------------------------------------------------------------------
# Control: the backends read these spellings as /admin/x
# --------------------------------------------------------------------------


@pytest.mark.parametrize("app_name", BACKENDS)
def test_control_several_spellings_reach_the_admin_handler_of_the_backend_itself(
        flask_app, go_app, app_name):
    """Sent straight to the backend (no gateway), these spellings run the admin handler. A
    gateway that matched routes on the raw path would send them down the open `/` route, and
    the backend would serve its admin handler to anyone: what the tests below must catch."""
    app = {"flask": flask_app, "go": go_app}[app_name]
    reached = {}
    for path, _ in spellings("admin"):
        a = http1(app.port, path, tls=False)
        if ADMIN.encode() in a.body:
            reached[path] = a.status
    # Both decode escapes before matching; werkzeug decodes %2F into a separator too.
    assert {"/%61dmin/x", "/admin%2fx", "/admin%2Fx"} <= set(reached), reached
    if app_name == "flask":
        # Python's http.server merges a leading `//` before the application sees it.
        assert "//admin/x" in reached, reached


# --------------------------------------------------------------------------
# Through certgate
# --------------------------------------------------------------------------


def _send_all(setup, app_name, client_name, who, directory, check):
    """Sends every spelling of /<directory>/x; `check(path, normal, answer, new_calls)`
    returns a failure message or None. Asserts there were none."""
    app = setup.apps[app_name]
    send = CLIENTS[client_name]
    failures = []
    for path, normal in spellings(directory):
        before = len(app.calls())
        answer = send(setup.ports[app_name], path, setup.pki, who)
        new_calls = app.calls()[before:]
        problem = check(path, normal, answer, new_calls)
        if problem:
            failures.append(f"{client_name} {path!r}: {problem}")
    assert not failures, f"{len(failures)} failures against {app_name}:\n" + "\n".join(failures)


@pytest.mark.parametrize("client_name", list(CLIENTS))
@pytest.mark.parametrize("app_name", BACKENDS)
def test_an_unprivileged_caller_never_reaches_the_admin_handler(setup, app_name, client_name):
    def check(path, normal, a, new_calls):
        want = 403 if normal else 400
        if ADMIN.encode() in a.body or any(c["handler"] == ADMIN for c in new_calls):
            return f"REACHED THE ADMIN HANDLER: {a.status} {a.body[:200]!r}, backend saw {new_calls}"
        if a.status != want or new_calls:
            return f"got {a.status} (want {want}), backend saw {new_calls}"
        return None

    _send_all(setup, app_name, client_name, setup.alice, "admin", check)

    app = setup.apps[app_name]
    failures = []
    for path in ELSEWHERE:
        before = len(app.calls())
        a = CLIENTS[client_name](setup.ports[app_name], path, setup.pki, setup.alice)
        new_calls = app.calls()[before:]
        handlers = {c["handler"] for c in new_calls}
        if ADMIN.encode() in a.body or ADMIN in handlers or (a.status == 200) != bool(handlers):
            failures.append(f"{client_name} {path!r}: {a.status} {a.body[:200]!r}, "
                            f"backend saw {new_calls}")
    assert not failures, "\n".join(failures)
    leaked = [c for c in setup.apps[app_name].calls()
              if c["handler"] == ADMIN and f"CN={UNPRIVILEGED_CN}" in c["subject"]]
    assert leaked == [], leaked


@pytest.mark.parametrize("client_name", list(CLIENTS))
@pytest.mark.parametrize("app_name", BACKENDS)
def test_a_caller_without_a_certificate_never_reaches_the_private_handler(
        setup, app_name, client_name):
    def check(path, normal, a, new_calls):
        if PRIVATE.encode() in a.body or any(c["handler"] == PRIVATE for c in new_calls):
            return f"REACHED THE PRIVATE HANDLER: {a.status} {a.body[:200]!r}, backend saw {new_calls}"
        if a.status != 400 or new_calls:
            return f"got {a.status} (want 400), backend saw {new_calls}"
        return None

    _send_all(setup, app_name, client_name, None, "private", check)
    leaked = [c for c in setup.apps[app_name].calls()
              if c["handler"] == PRIVATE and not c["subject"]]
    assert leaked == [], leaked


@pytest.mark.parametrize("client_name", list(CLIENTS))
@pytest.mark.parametrize("app_name", BACKENDS)
@pytest.mark.parametrize("directory", ["admin", "private"])
def test_the_privileged_caller_gets_the_handler_at_the_normal_path(
        setup, app_name, client_name, directory):
    marker = ADMIN if directory == "admin" else PRIVATE
    want_path = f"/{directory}/x"

    def check(path, normal, a, new_calls):
        if not normal:
            if a.status != 400 or new_calls:
                return f"got {a.status} (want 400), backend saw {new_calls}"
            return None
        if a.status != 200 or marker.encode() not in a.body:
            return f"got {a.status} {a.body[:200]!r}, not the {marker}"
        if len(new_calls) != 1:
            return f"backend saw {len(new_calls)} calls: {new_calls}"
        c = new_calls[0]
        if (c["handler"], c["request_uri"], c["path"]) != (marker, want_path, want_path):
            return f"backend saw {c} (want {marker} at exactly {want_path})"
        if f"CN={PRIVILEGED_CN}," not in c["subject"]:
            return f"backend saw subject {c['subject']!r}"
        return None

    _send_all(setup, app_name, client_name, setup.bob, directory, check)


@pytest.mark.parametrize("app_name", BACKENDS)
def test_absolute_form_targets_are_decided_on_their_normal_path(setup, app_name):
    app = setup.apps[app_name]
    port = setup.ports[app_name]
    target = "https://localhost/public/../admin/x"
    request_bytes = f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"

    def s_client(client) -> Answer:
        p = S.s_client(port, ["-servername", "localhost", "-CAfile", str(setup.pki.ca_crt),
                              "-cert", str(client.chain), "-key", str(client.key),
                              "-alpn", "http/1.1", "-quiet"], stdin=request_bytes.encode())
        assert p.returncode is not None, f"s_client still waiting: {p.stdout[:300]!r}"
        assert p.stdout.startswith(b"HTTP/1.1 "), p.stdout[:300] + p.stderr[-500:]
        head, body = S.split_http1_response(p.stdout)
        return Answer(int(head[9:12]), body, "1.1")

    for send in (s_client, lambda c: http1(port, target, pki=setup.pki, client=c)):
        before = len(app.calls())
        a = send(setup.alice)
        assert a.status == 403 and ADMIN.encode() not in a.body, (a.status, a.body[:300])
        assert app.calls()[before:] == []
        a = send(setup.bob)
        assert a.status == 200 and ADMIN.encode() in a.body, (a.status, a.body[:300])
        [c] = app.calls()[before:]
        assert (c["handler"], c["request_uri"], c["path"]) == (ADMIN, "/admin/x", "/admin/x"), c


@pytest.mark.parametrize("client_name", ["http1.1-socket", "http2-curl"])
@pytest.mark.parametrize("app_name", BACKENDS)
def test_the_query_string_arrives_as_sent(setup, app_name, client_name):
    app = setup.apps[app_name]
    query = "next=/../admin/&q=%2e%2e%2F&r=%61;x&s=a//b"
    before = len(app.calls())
    a = CLIENTS[client_name](setup.ports[app_name], f"/public/./y//z?{query}", setup.pki,
                             setup.alice)
    assert a.status == 200, (a.status, a.body[:300])
    [c] = app.calls()[before:]
    assert c["handler"] == "CATCH-ALL"
    assert c["request_uri"] == f"/public/y/z?{query}", c
    assert c["query"] == query, c


def test_refused_spellings_are_counted_as_bad_path(setup):
    before = bad_path_errors(setup.admin_port)
    sent = 0
    for path, normal in spellings("admin"):
        if not normal:
            assert http1(setup.ports["flask"], path, pki=setup.pki, client=setup.bob).status == 400
            sent += 1
    assert bad_path_errors(setup.admin_port) - before == sent
