"""Fixtures for the certgate end-to-end suite.

- `pki`: a CA, an intermediate, a server certificate (SAN localhost, gw.test,
  127.0.0.1) and many client certificates chosen as hard cases (see e2e_pki.py);
- `backend`: a real Flask echo app (werkzeug server in a thread, free port) that
  answers the raw request headers it received and counts requests;
- `gateway_factory` / `gateway`: certgate started from a generated gateway.yaml;
- `nginx_factory`: Debian's nginx, configured equivalently, run as the current user
  with every temp path inside its own temp directory.
Every process is stopped by a finalizer; when a test fails, the logs of the
processes still alive are attached to the report.
"""

from __future__ import annotations

import shutil

import pytest

import e2e_pki
import e2e_servers as S


def pytest_configure(config):
    for tool in ("curl", "openssl"):
        if shutil.which(tool) is None:
            raise pytest.UsageError(f"the e2e suite needs `{tool}` on PATH")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        for p in list(S.LIVE):
            rep.sections.append((f"{p.name} log ({p.log_path})", p.log_text()))


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return e2e_pki.build_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def backend():
    b = S.EchoBackend()
    yield b
    b.stop()


def _factory(request, tmp_path_factory, starter, prefix):
    started = []

    def start(*args, **kw):
        d = tmp_path_factory.mktemp(prefix)
        obj = starter(d, *args, **kw)
        started.append(obj)
        return obj

    def cleanup():
        for obj in reversed(started):
            obj.stop()

    request.addfinalizer(cleanup)
    return start


@pytest.fixture
def gateway_factory(request, tmp_path_factory, pki, backend):
    """start(config_dict=None, **gateway_config_kwargs) -> Gateway (function scope)."""

    def starter(d, config=None, **kw):
        if config is None:
            config = S.gateway_config(pki, S.free_port(), backend.port, **kw)
        return S.start_gateway(d, config)

    return _factory(request, tmp_path_factory, starter, "certgate")


@pytest.fixture(scope="module")
def module_gateway_factory(request, tmp_path_factory, pki, backend):
    def starter(d, config=None, **kw):
        if config is None:
            config = S.gateway_config(pki, S.free_port(), backend.port, **kw)
        return S.start_gateway(d, config)

    return _factory(request, tmp_path_factory, starter, "certgate")


@pytest.fixture(scope="module")
def gateway(module_gateway_factory):
    """certgate with verify: on, ca, verify_depth 1, identity preset nginx."""
    return module_gateway_factory()


@pytest.fixture(scope="module")
def nginx_factory(request, tmp_path_factory, pki, backend):
    """start(verify="on", depth=1) -> Nginx (module scope)."""

    def starter(d, **kw):
        return S.start_nginx(pki, d, backend.port, **kw)

    return _factory(request, tmp_path_factory, starter, "nginx")
