#!/usr/bin/env python3
"""Offline checks of deploy/systemd and deploy/kubernetes (docs/deploy.md).

    python3 deploy/check.py          # from anywhere; CERTGATE_BIN=path picks the binary

systemd
  - `systemd-analyze verify` of certgate.service (ExecStart/ExecReload pointed at a built
    certgate binary in a temporary copy: verify refuses a missing executable), and
    `systemd-analyze security --offline` below an exposure of 2.0;
  - the directives docs/deploy.md promises (sandbox, capabilities, reload, stop timeout
    above shutdown_grace, pid file in RuntimeDirectory, access log in LogsDirectory);
  - certgate.sysusers and certgate.tmpfiles applied to a scratch root (`--root`) after
    `certgate certs init`: keys end up root:certgate-keys 0640, the CA key stays 0600;
    then `certgate check` of deploy/systemd/gateway.yaml against those files.
Kubernetes
  - the kustomization rendered by a small renderer below that knows exactly the fields
    deploy/kubernetes uses (and refuses others), compared with `kubectl kustomize` when
    kubectl is installed;
  - every rendered object, and the Secrets made by docs/deploy.md's `kubectl create
    secret` commands, validated against the Kubernetes OpenAPI schemas in strict mode
    (PyPI kubernetes-validate, offline) for 1.30 (the oldest with preStop `sleep`) and
    the newest version it ships;
  - the invariants of the Deployment, Service, ConfigMap, PDB and HPA (replicas, probes,
    drain timing against shutdown_grace, security context, mounts, ports, labels, no key
    material in the repository);
  - the pod's /etc/certgate as the kubelet writes it (timestamped directory, `..data`
    symlink, nested projected paths), `certgate check` on it, then certgate run with the
    Deployment's arguments: healthy, JSON logs on stderr, a kubelet-style Secret update
    swaps the served certificate with no restart, SIGTERM exits 0 in time.

Installs what it needs (pip: kubernetes-validate, PyYAML; apt: systemd) when missing.
Prints one line per check and ends with `deploy: N passed, N failed`; exit 1 on a failure.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
SYSTEMD = DEPLOY / "systemd"
KUBE = DEPLOY / "kubernetes"

KUBERNETES_VALIDATE = "kubernetes-validate==1.37.0"
# 1.30: the oldest release where lifecycle.preStop.sleep is on by default; 1.37: the newest
# schema kubernetes-validate 1.37.0 ships.
K8S_VERSIONS = ["1.30.0", "1.37.0"]

# The Secrets docs/deploy.md tells the user to create, with the keys each must hold.
SECRETS = {
    "certgate-tls": ("kubernetes.io/tls", ["tls.crt", "tls.key"]),
    "certgate-client-ca": ("Opaque", ["ca.crt"]),
    "certgate-tickets": ("Opaque", ["current.key", "previous.key"]),
}

passed = 0
failed = 0


def ok(what: str) -> None:
    global passed
    passed += 1
    print(f"ok    {what}", flush=True)


def fail(what: str, detail: str = "") -> None:
    global failed
    failed += 1
    print(f"FAIL  {what}" + (f": {detail}" if detail else ""), flush=True)


def check(cond: bool, what: str, detail: str = "") -> bool:
    if cond:
        ok(what)
    else:
        fail(what, detail)
    return bool(cond)


def skip(what: str, why: str) -> None:
    print(f"skip  {what}: {why}", flush=True)


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run(cmd, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 120)
    return subprocess.run([str(c) for c in cmd], **kw)


# --------------------------------------------------------------------------- set-up


def ensure_tools() -> None:
    section("tools")
    missing = []
    try:
        import yaml  # noqa: F401
    except ImportError:
        missing.append("PyYAML")
    try:
        import kubernetes_validate  # noqa: F401
    except ImportError:
        missing.append(KUBERNETES_VALIDATE)
    if missing:
        print(f"pip install {' '.join(missing)}", flush=True)
        r = run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", *missing])
        if r.returncode != 0:
            sys.exit(f"deploy/check.py: pip install failed:\n{r.stdout}{r.stderr}")
    if not shutil.which("systemd-analyze"):
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        print("apt-get install systemd (for systemd-analyze)", flush=True)
        for cmd in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "systemd"]):
            r = run(sudo + cmd, env=env, timeout=600)
            if r.returncode != 0:
                sys.exit(f"deploy/check.py: {' '.join(cmd)} failed:\n{r.stdout}{r.stderr}")
    r = run(["systemd-analyze", "--version"])
    print(f"systemd-analyze: {r.stdout.splitlines()[0] if r.stdout else '?'}")
    from importlib.metadata import version

    print(f"kubernetes-validate {version('kubernetes-validate')}: schemas for {', '.join(K8S_VERSIONS)}")
    print(f"kubectl: {shutil.which('kubectl') or 'not installed (the Python renderer alone)'}")


def certgate_binary() -> Path:
    env = os.environ.get("CERTGATE_BIN")
    candidates = [Path(env)] if env else [ROOT / "target/debug/certgate", ROOT / "target/release/certgate"]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            print(f"certgate: {c}")
            return c
    if env:
        sys.exit(f"deploy/check.py: CERTGATE_BIN={env} is not an executable file")
    print("certgate: building it (cargo build -p certgate)", flush=True)
    r = run(["cargo", "build", "-q", "--locked", "-p", "certgate"], cwd=ROOT, capture_output=False, timeout=1800)
    if r.returncode != 0:
        sys.exit("deploy/check.py: cargo build -p certgate failed")
    return ROOT / "target/debug/certgate"


# --------------------------------------------------------------------------- helpers


def nginx_seconds(value) -> float:
    """certgate's duration syntax (crates/config/src/units.rs): `10s`, `1m30s`, `500ms`, `10`."""
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if text.isdigit():
        return float(text)
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    parts = re.findall(r"(\d+)([a-z]+)", text)
    if not parts or "".join(n + u for n, u in parts) != text or any(u not in units for _, u in parts):
        raise ValueError(f"not a duration: {text!r}")
    return sum(int(n) * units[u] for n, u in parts)


def systemd_seconds(value: str) -> float:
    """systemd.time(7) spans as used in units: `30s`, `1min 30s`, `90`."""
    text = value.strip()
    if text.isdigit():
        return float(text)
    units = {"ms": 0.001, "s": 1, "sec": 1, "second": 1, "seconds": 1, "m": 60, "min": 60,
             "minute": 60, "minutes": 60, "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600}
    total = 0.0
    for n, u in re.findall(r"(\d+)\s*([a-z]+)", text):
        total += int(n) * units[u]
    return total


def listen_port(addr: str) -> tuple[str, int]:
    host, _, port = str(addr).rpartition(":")
    return host.strip("[]"), int(port)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


# --------------------------------------------------------------------------- systemd


def check_systemd(certgate: Path) -> None:
    import yaml

    section("systemd: deploy/systemd/certgate.service")
    unit_path = SYSTEMD / "certgate.service"
    unit = parse_unit(unit_path)
    svc = unit.get("Service", {})

    def one(key):
        values = svc.get(key, [])
        return values[-1] if values else None

    with tempfile.TemporaryDirectory() as tmp:
        copy_path = Path(tmp) / "certgate.service"
        copy_path.write_text(unit_path.read_text().replace("/usr/local/bin/certgate", str(certgate)))
        r = run(["systemd-analyze", "verify", copy_path])
        out = (r.stdout + r.stderr).strip()
        ours = [line for line in out.splitlines() if "certgate" in line]
        check(r.returncode == 0 and not ours, "systemd-analyze verify certgate.service (ExecStart -> the built binary)",
              out)
        for line in out.splitlines():
            if line not in ours:
                print(f"      (systemd-analyze, not about certgate: {line})")
        r = run(["systemd-analyze", "security", "--offline=true", "--threshold=20", "--no-pager", copy_path])
        level = re.search(r"Overall exposure level for \S+: ([\d.]+)", r.stdout)
        check(r.returncode == 0 and level is not None,
              f"systemd-analyze security --offline: exposure {level.group(1) if level else '?'} (at most 2.0)",
              r.stdout[-2000:] + r.stderr)

    gw = yaml.safe_load((SYSTEMD / "gateway.yaml").read_text())
    grace = nginx_seconds(gw.get("shutdown_grace", "10s"))
    expected = {
        "Type": "exec",
        "ExecStart": "/usr/local/bin/certgate run -c /etc/certgate/gateway.yaml --pid-file /run/certgate/certgate.pid",
        "ExecReload": "/usr/local/bin/certgate reload -c /etc/certgate/gateway.yaml --pid-file /run/certgate/certgate.pid",
        "DynamicUser": "yes",
        "ProtectSystem": "strict",
        "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",
        "RuntimeDirectory": "certgate",
        "LogsDirectory": "certgate",
    }
    for key, want in expected.items():
        check(svc.get(key) == [want], f"{key}={want}", f"found {svc.get(key)}")
    check("/etc/certgate" in " ".join(svc.get("ReadOnlyPaths", [])).split(), "ReadOnlyPaths=/etc/certgate")
    check(one("LimitNOFILE") is not None and int(one("LimitNOFILE")) >= 4096, f"LimitNOFILE={one('LimitNOFILE')}")
    stop = systemd_seconds(one("TimeoutStopSec") or "90s")
    check(stop > grace, f"TimeoutStopSec {stop:g}s > shutdown_grace {grace:g}s (deploy/systemd/gateway.yaml)")
    pid_file = re.search(r"--pid-file (\S+)", expected["ExecStart"]).group(1)
    check(Path(pid_file).parent == Path("/run") / one("RuntimeDirectory"),
          f"the pid file {pid_file} is in RuntimeDirectory /run/{one('RuntimeDirectory')}")
    access = gw.get("log", {}).get("access", "stdout")
    check(str(access).startswith(f"/var/log/{one('LogsDirectory')}/"),
          f"log.access {access} is in LogsDirectory /var/log/{one('LogsDirectory')}")
    groups = [line.split()[1] for line in (SYSTEMD / "certgate.sysusers").read_text().splitlines()
              if line.strip() and not line.startswith("#") and line.split()[0] == "g"]
    check(svc.get("SupplementaryGroups") == groups,
          f"SupplementaryGroups={' '.join(groups)} is the group certgate.sysusers creates",
          f"unit has {svc.get('SupplementaryGroups')}, sysusers {groups}")

    section("systemd: certgate.sysusers + certgate.tmpfiles on a scratch root, then certgate check")
    with tempfile.TemporaryDirectory() as root_dir:
        root = Path(root_dir)
        (root / "etc/sysusers.d").mkdir(parents=True)
        (root / "etc/tmpfiles.d").mkdir(parents=True)
        shutil.copy(SYSTEMD / "certgate.sysusers", root / "etc/sysusers.d/certgate.conf")
        shutil.copy(SYSTEMD / "certgate.tmpfiles", root / "etc/tmpfiles.d/certgate.conf")
        r = run(["systemd-sysusers", f"--root={root}", "certgate.conf"])
        group_line = next((line for line in (root / "etc/group").read_text().splitlines()
                           if line.startswith(f"{groups[0]}:")), None) if (root / "etc/group").exists() else None
        check(r.returncode == 0 and group_line is not None, f"systemd-sysusers creates group {groups[0]}",
              r.stdout + r.stderr)
        gid = int(group_line.split(":")[2]) if group_line else -1
        etc = root / "etc/certgate"
        etc.mkdir()
        r = run([certgate, "certs", "init", "--dir", etc / "certs"])
        check(r.returncode == 0, "certgate certs init --dir <root>/etc/certgate/certs", r.stderr)
        (root / "var/log/certgate").mkdir(parents=True)
        text = (SYSTEMD / "gateway.yaml").read_text()
        (etc / "gateway.yaml").write_text(text.replace("/etc/certgate/", f"{etc}/")
                                          .replace("/var/log/certgate/", f"{root}/var/log/certgate/"))
        r = run(["systemd-tmpfiles", "--create", f"--root={root}", "certgate.conf"])
        check(r.returncode == 0, "systemd-tmpfiles --create certgate.conf", r.stdout + r.stderr)

        def mode(p: Path) -> tuple[str, int, int]:
            st = p.stat()
            return oct(st.st_mode & 0o777), st.st_uid, st.st_gid

        for path, want in [(etc, ("0o750", 0, gid)), (etc / "certs", ("0o750", 0, gid)),
                           (etc / "gateway.yaml", ("0o640", 0, gid)),
                           (etc / "certs/server.key", ("0o640", 0, gid)),
                           (etc / "certs/server.crt", ("0o640", 0, gid)),
                           (etc / "certs/ca.crt", ("0o640", 0, gid)),
                           (etc / "certs/ca.key", ("0o600", 0, 0)),
                           (etc / "certs/client.key", ("0o600", 0, 0))]:
            got = mode(path)
            check(got == want, f"{path.relative_to(root)}: mode {want[0][2:]} uid {want[1]} gid {want[2]}",
                  f"found mode {got[0][2:]} uid {got[1]} gid {got[2]}")
        r = run([certgate, "check", "-c", etc / "gateway.yaml"])
        check(r.returncode == 0, "certgate check of deploy/systemd/gateway.yaml (paths under the scratch root)",
              r.stdout + r.stderr)


# --------------------------------------------------------------------------- kustomize


class RenderError(Exception):
    pass


NAMESPACED_KINDS = {"Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget",
                    "HorizontalPodAutoscaler", "ServiceAccount"}


def render_kustomization(directory: Path) -> list[dict]:
    """What `kustomize build` does for the fields deploy/kubernetes uses; anything else is
    refused, so the renderer never silently differs from kustomize."""
    import yaml

    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    allowed = {"apiVersion", "kind", "namespace", "resources", "configMapGenerator"}
    unknown = set(k) - allowed
    if unknown:
        raise RenderError(f"kustomization.yaml: field(s) this renderer does not know: {sorted(unknown)}")
    if k.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or k.get("kind") != "Kustomization":
        raise RenderError("kustomization.yaml: not a kustomize.config.k8s.io/v1beta1 Kustomization")
    objects: list[dict] = []
    for res in k.get("resources", []):
        path = directory / res
        if not path.is_file():
            raise RenderError(f"resource {res}: only files are supported (not directories or URLs)")
        objects += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    for gen in k.get("configMapGenerator", []):
        unknown = set(gen) - {"name", "files", "options"}
        if unknown:
            raise RenderError(f"configMapGenerator {gen.get('name')}: unsupported field(s) {sorted(unknown)}")
        options = gen.get("options", {})
        unknown = set(options) - {"disableNameSuffixHash", "labels", "annotations"}
        if unknown:
            raise RenderError(f"configMapGenerator {gen['name']}: unsupported option(s) {sorted(unknown)}")
        if options.get("disableNameSuffixHash") is not True:
            raise RenderError(f"configMapGenerator {gen['name']}: name-suffix hashes are not implemented here")
        data = {}
        for entry in gen.get("files", []):
            key, _, file = entry.rpartition("=") if "=" in entry else (Path(entry).name, "", entry)
            data[key] = (directory / file).read_text()
        meta = {"name": gen["name"]}
        if options.get("labels"):
            meta["labels"] = dict(options["labels"])
        if options.get("annotations"):
            meta["annotations"] = dict(options["annotations"])
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data})
    namespace = k.get("namespace")
    for obj in objects:
        if obj.get("kind") not in NAMESPACED_KINDS:
            raise RenderError(f"{obj.get('kind')}: not a kind this renderer knows to be namespaced")
        if namespace:
            obj.setdefault("metadata", {})["namespace"] = namespace
    seen = set()
    for obj in objects:
        ident = (obj["kind"], obj["metadata"]["name"])
        if ident in seen:
            raise RenderError(f"{ident}: defined twice")
        seen.add(ident)
    return objects


def by_ident(objects: list[dict]) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


# --------------------------------------------------------------------------- kubernetes


def make_pki(certgate: Path, directory: Path) -> dict[str, bytes]:
    r = run([certgate, "certs", "init", "--dir", directory])
    if r.returncode != 0:
        raise RuntimeError(f"certgate certs init: {r.stderr}")
    return {name: (directory / name).read_bytes() for name in ("ca.crt", "server.crt", "server.key")}


def make_secrets(certgate: Path, work: Path, pki: dict[str, bytes], namespace: str) -> list[dict]:
    """The three Secrets, made with docs/deploy.md's commands (kubectl, --dry-run=client)
    when kubectl is installed, or the same objects built here."""
    files = work / "secret-files"
    files.mkdir()
    (files / "server.crt").write_bytes(pki["server.crt"])
    (files / "server.key").write_bytes(pki["server.key"])
    (files / "ca.crt").write_bytes(pki["ca.crt"])
    for name in ("current.key", "previous.key"):
        r = run([certgate, "certs", "ticket-key", "--out", files / name])
        if r.returncode != 0:  # a certgate without `certs ticket-key`: what docs say instead
            (files / name).write_bytes(os.urandom(80))
    kubectl = shutil.which("kubectl")
    if kubectl:
        commands = [
            ["create", "secret", "tls", "certgate-tls", "--cert=server.crt", "--key=server.key"],
            ["create", "secret", "generic", "certgate-client-ca", "--from-file=ca.crt"],
            ["create", "secret", "generic", "certgate-tickets", "--from-file=current.key",
             "--from-file=previous.key"],
        ]
        secrets = []
        for cmd in commands:
            r = run([kubectl, "-n", namespace, *cmd, "--dry-run=client", "-o", "json"], cwd=files)
            if r.returncode != 0:
                raise RuntimeError(f"kubectl {' '.join(cmd)}: {r.stderr}")
            obj = json.loads(r.stdout)
            obj["metadata"].pop("creationTimestamp", None)
            secrets.append(obj)
        return secrets

    def b64(name: str) -> str:
        return base64.b64encode((files / name).read_bytes()).decode()

    def secret(name, type_, data):
        return {"apiVersion": "v1", "kind": "Secret", "type": type_,
                "metadata": {"name": name, "namespace": namespace}, "data": data}

    return [secret("certgate-tls", "kubernetes.io/tls", {"tls.crt": b64("server.crt"), "tls.key": b64("server.key")}),
            secret("certgate-client-ca", "Opaque", {"ca.crt": b64("ca.crt")}),
            secret("certgate-tickets", "Opaque", {"current.key": b64("current.key"),
                                                  "previous.key": b64("previous.key")})]


def projection_payload(volume: dict, objects: dict[tuple[str, str], dict]) -> dict[str, bytes]:
    """The files the kubelet writes for a projected (or configMap/secret) volume: path -> bytes."""
    payload: dict[str, bytes] = {}
    if "projected" in volume:
        sources = volume["projected"]["sources"]
    else:
        sources = [{k: v} for k, v in volume.items() if k in ("configMap", "secret")]
    for source in sources:
        (kind_key, spec), = source.items()
        name = spec.get("name") or spec.get("secretName")
        kind = {"configMap": "ConfigMap", "secret": "Secret"}[kind_key]
        obj = objects.get((kind, name))
        if obj is None:
            raise KeyError(f"{kind} {name}")
        if kind == "ConfigMap":
            data = {k: v.encode() for k, v in obj.get("data", {}).items()}
        else:
            data = {k: base64.b64decode(v) for k, v in obj.get("data", {}).items()}
        items = spec.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            if item["key"] not in data:
                raise KeyError(f"{kind} {name} has no key {item['key']}")
            payload[item["path"]] = data[item["key"]]
    return payload


def kubelet_write(volume_dir: Path, payload: dict[str, bytes], generation: int, mode: int) -> None:
    """kubelet's AtomicWriter: a new timestamped directory, `..data_tmp` -> it, renamed over
    `..data`, top-level user-visible symlinks into `..data`, then the old directory removed."""
    volume_dir.mkdir(parents=True, exist_ok=True)
    old = os.readlink(volume_dir / "..data") if (volume_dir / "..data").is_symlink() else None
    ts = f"..2026_01_01_00_00_{generation:02d}.{os.getpid()}"
    for path, data in payload.items():
        target = volume_dir / ts / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(mode)
    os.symlink(ts, volume_dir / "..data_tmp")
    os.rename(volume_dir / "..data_tmp", volume_dir / "..data")
    for top in {p.split("/")[0] for p in payload}:
        link = volume_dir / top
        if not link.is_symlink():
            os.symlink(f"..data/{top}", link)
    if old:
        shutil.rmtree(volume_dir / old)


def served_certificate(port: int) -> bytes | None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                return tls.getpeercert(binary_form=True)
    except OSError:
        return None


def pem_to_der(pem: bytes) -> bytes:
    body = re.search(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", pem, re.S).group(1)
    return base64.b64decode(b"".join(body.split()))


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def check_kubernetes(certgate: Path) -> None:
    import yaml
    import kubernetes_validate

    section("kubernetes: render deploy/kubernetes")
    try:
        objects = render_kustomization(KUBE)
    except RenderError as e:
        fail("render the kustomization", str(e))
        return
    ok("rendered: " + ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objects))
    kubectl = shutil.which("kubectl")
    if kubectl:
        r = run([kubectl, "kustomize", KUBE])
        if check(r.returncode == 0, "kubectl kustomize deploy/kubernetes", r.stderr):
            theirs = by_ident([d for d in yaml.safe_load_all(r.stdout) if d])
            ours = by_ident(objects)
            diff = [k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k)]
            check(not diff, "the Python renderer's objects equal kubectl kustomize's", f"differ: {sorted(diff)}")
    else:
        skip("kubectl kustomize comparison", "kubectl is not installed")
    objs = by_ident(objects)
    namespace = next(iter(objects))["metadata"].get("namespace")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pki = make_pki(certgate, work / "pki1")
        secrets = make_secrets(certgate, work, pki, namespace)

        section(f"kubernetes: OpenAPI schemas, strict ({', '.join(K8S_VERSIONS)})")
        for version in K8S_VERSIONS:
            for obj in objects + secrets:
                label = f"{obj['kind']}/{obj['metadata']['name']}"
                if obj["kind"] == "Secret":
                    label += (" (docs/deploy.md's kubectl create secret, --dry-run=client)" if shutil.which("kubectl")
                              else " (as docs/deploy.md's kubectl create secret makes it)")
                try:
                    kubernetes_validate.validate(copy.deepcopy(obj), version, strict=True)
                    ok(f"{version} {label}")
                except kubernetes_validate.ValidationError as e:
                    fail(f"{version} {label}", str(e).splitlines()[0])
                except Exception as e:  # noqa: BLE001 - a schema that cannot be found, …
                    fail(f"{version} {label}", repr(e))

        section("kubernetes: invariants")
        invariants(objs, namespace)

        section("kubernetes: no key material in the repository")
        leaks = []
        for path in sorted(DEPLOY.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                text = path.read_bytes()
                if re.search(rb"-----BEGIN [A-Z ]*(PRIVATE KEY|CERTIFICATE)-----", text) and path.name != "check.py":
                    leaks.append(str(path.relative_to(ROOT)))
                if path.suffix in (".key", ".crt", ".pem", ".p12"):
                    leaks.append(str(path.relative_to(ROOT)))
        check(not leaks, "no PEM block and no .key/.crt/.pem/.p12 file under deploy/", ", ".join(leaks))
        rendered_secrets = [o for o in objects if o["kind"] == "Secret"]
        check(all(not o.get("data") and not o.get("stringData") for o in rendered_secrets),
              f"the render holds no Secret data ({len(rendered_secrets)} Secret objects)")

        section("kubernetes: the pod's /etc/certgate as the kubelet writes it, and certgate on it")
        pod_view(certgate, work, objs, secrets)


def container(deployment: dict, name: str) -> dict:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def invariants(objs: dict[tuple[str, str], dict], namespace: str | None) -> None:
    import yaml

    kinds = sorted({k for k, _ in objs})
    check(set(kinds) >= {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "HorizontalPodAutoscaler"},
          "Deployment, Service, ConfigMap, PodDisruptionBudget, HorizontalPodAutoscaler present", str(kinds))
    check("ServiceMonitor" not in kinds, "no ServiceMonitor")
    check(namespace is not None and all(o["metadata"].get("namespace") == namespace for o in objs.values()),
          f"every object in namespace {namespace}")

    dep = objs[("Deployment", "certgate")]
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"].get("labels", {})
    check(spec.get("replicas") == 3, f"Deployment replicas: {spec.get('replicas')} (3)")
    check(spec["selector"]["matchLabels"].items() <= labels.items(), "Deployment selector matches the pod labels")
    cg = container(dep, "certgate")
    check(cg.get("args") == ["run", "-c", "/etc/certgate/gateway.yaml", "--watch", "--pid-file", "/tmp/certgate.pid"],
          "certgate args: run -c /etc/certgate/gateway.yaml --watch --pid-file /tmp/certgate.pid", str(cg.get("args")))

    # gateway.yaml, as the pod reads it.
    mounts = {m["mountPath"]: m for m in cg.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    config_path = cg["args"][cg["args"].index("-c") + 1]
    cm = objs[("ConfigMap", "certgate-config")]
    try:
        gw = yaml.safe_load(cm["data"]["gateway.yaml"])
        ok("ConfigMap certgate-config: gateway.yaml parses as YAML")
    except yaml.YAMLError as e:
        fail("ConfigMap certgate-config: gateway.yaml parses as YAML", str(e))
        return
    check(gw.get("watch") is True, "gateway.yaml: watch: true")
    check(gw.get("log", {}).get("stderr_format") == "json", "gateway.yaml: log.stderr_format: json")
    server = gw["servers"][0]
    tickets = server.get("tls", {}).get("session_ticket_keys")
    check(tickets == ["/etc/certgate/tickets/current.key", "/etc/certgate/tickets/previous.key"],
          "gateway.yaml: tls.session_ticket_keys [/etc/certgate/tickets/current.key, …/previous.key]", str(tickets))
    check(str(server["tls"]["cert"]).startswith("/etc/certgate/tls/") and
          str(server["tls"]["key"]).startswith("/etc/certgate/tls/") and
          str(server["client_auth"]["ca"]).startswith("/etc/certgate/client-ca/"),
          "gateway.yaml: server cert/key under /etc/certgate/tls/, client CA under /etc/certgate/client-ca/")

    check(not any("subPath" in m or "subPathExpr" in m for c in pod["containers"] for m in c.get("volumeMounts", [])),
          "no subPath mounts (their files never update)")
    # Every file gateway.yaml names comes from a mounted ConfigMap/Secret, under a name its
    # Secret (as docs/deploy.md creates it) holds.
    named = [config_path, server["tls"]["cert"], server["tls"]["key"], server["client_auth"]["ca"], *(tickets or [])]
    named += server["client_auth"].get("trusted_ca", []) + server["client_auth"].get("crl", [])
    provided: dict[str, tuple[str, str, str]] = {}
    for mount_path, m in mounts.items():
        v = volumes[m["name"]]
        sources = v["projected"]["sources"] if "projected" in v else [{k: v[k]} for k in ("configMap", "secret") if k in v]
        if sources:
            check(m.get("readOnly") is True, f"volume {m['name']} mounted read-only at {mount_path}, whole")
        for s in sources:
            (kind, sp), = s.items()
            for item in sp.get("items", []):
                provided[f"{mount_path.rstrip('/')}/{item['path']}"] = (kind, sp["name"], item["key"])
    for path in named:
        src = provided.get(str(path))
        if not check(src is not None, f"{path} is mounted from a ConfigMap/Secret item", "no volume item provides it"):
            continue
        kind, name, key = src
        if kind == "secret":
            check(name in SECRETS and key in SECRETS[name][1],
                  f"{path} <- Secret {name} key {key}, as docs/deploy.md creates it")
        else:
            check((("ConfigMap", name) in objs) and key in objs[("ConfigMap", name)]["data"],
                  f"{path} <- ConfigMap {name} key {key}")

    # Ports: the Service reaches the TLS listener; probes and scrape reach admin.
    ports = {p["name"]: p["containerPort"] for p in cg.get("ports", [])}
    https_host, https_port = listen_port(server["listen"][0] if isinstance(server["listen"], list) else server["listen"])
    admin_host, admin_port = listen_port(gw.get("admin", {}).get("listen", ":0"))
    check(admin_host == "0.0.0.0" and admin_port == 9901, f"gateway.yaml: admin.listen {admin_host}:{admin_port} (0.0.0.0:9901)")
    check(https_host == "0.0.0.0" and ports.get("https") == https_port,
          f"container port https {ports.get('https')} = gateway.yaml listen {https_host}:{https_port}")
    check(ports.get("admin") == admin_port, f"container port admin {ports.get('admin')} = admin.listen port")

    def port_of(ref):
        return ports.get(ref) if isinstance(ref, str) else ref

    live, ready = cg.get("livenessProbe", {}), cg.get("readinessProbe", {})
    check(live.get("httpGet", {}).get("path") == "/healthz" and port_of(live["httpGet"].get("port")) == admin_port,
          "livenessProbe: GET /healthz on the admin port")
    check(ready.get("httpGet", {}).get("path") == "/readyz" and port_of(ready["httpGet"].get("port")) == admin_port,
          "readinessProbe: GET /readyz on the admin port")
    ann = spec["template"]["metadata"].get("annotations", {})
    check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(admin_port)
          and ann.get("prometheus.io/path") == "/metrics",
          "pod annotations prometheus.io/scrape \"true\", /port = admin port, /path /metrics", str(ann))

    svc = objs[("Service", "certgate")]
    sport = svc["spec"]["ports"][0]
    check(sport["port"] == 443 and port_of(sport.get("targetPort")) == https_port,
          f"Service 443 -> targetPort {sport.get('targetPort')} = {https_port}")
    check(svc["spec"]["selector"].items() <= labels.items(), "Service selector matches the pod labels")

    # Drain timing.
    pre_stop = cg.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds")
    grace = nginx_seconds(gw.get("shutdown_grace", "10s"))
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    check(isinstance(pre_stop, int) and pre_stop >= 5, f"preStop sleep {pre_stop}s (kubelet's sleep action, >= 5 s)")
    check(isinstance(pre_stop, int) and tgps > pre_stop + grace,
          f"terminationGracePeriodSeconds {tgps} > preStop {pre_stop} + shutdown_grace {grace:g}")

    # Security context, for every container (pod-level settings count).
    psc = pod.get("securityContext", {})
    check(pod.get("automountServiceAccountToken") is False, "automountServiceAccountToken: false")
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        n = c["name"]
        check((sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True)
              and sc.get("runAsUser", psc.get("runAsUser", 1)) != 0, f"{n}: runAsNonRoot, a non-zero runAsUser")
        check(sc.get("readOnlyRootFilesystem") is True, f"{n}: readOnlyRootFilesystem")
        check(sc.get("allowPrivilegeEscalation") is False, f"{n}: allowPrivilegeEscalation false")
        check(sc.get("capabilities", {}).get("drop") == ["ALL"] and not sc.get("capabilities", {}).get("add"),
              f"{n}: capabilities drop ALL, add none")
        check(sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type") == "RuntimeDefault",
              f"{n}: seccompProfile RuntimeDefault")
        check(bool(c.get("resources", {}).get("requests", {}).get("cpu")), f"{n}: a CPU request (the HPA needs one)")
    res = cg.get("resources", {})
    check(bool(res.get("requests", {}).get("memory")) and bool(res.get("limits", {}).get("memory")),
          "certgate: memory request and limit", str(res))
    tmp_mount = mounts.get("/tmp")
    check(tmp_mount is not None and "emptyDir" in volumes[tmp_mount["name"]], "/tmp is an emptyDir (the pid file)")

    # Placement and disruptions.
    anti = pod.get("affinity", {}).get("podAntiAffinity", {}).get("preferredDuringSchedulingIgnoredDuringExecution", [])
    check(any(t["podAffinityTerm"].get("topologyKey") == "kubernetes.io/hostname"
              and t["podAffinityTerm"].get("labelSelector", {}).get("matchLabels", {}).items() <= labels.items()
              and t["podAffinityTerm"].get("labelSelector", {}).get("matchLabels")
              for t in anti), "podAntiAffinity preferred by kubernetes.io/hostname, selecting these pods")
    pdb = objs[("PodDisruptionBudget", "certgate")]["spec"]
    check(pdb.get("maxUnavailable") == 1 or pdb.get("minAvailable") == 2,
          f"PodDisruptionBudget maxUnavailable 1 or minAvailable 2 ({pdb})")
    check(pdb["selector"]["matchLabels"].items() <= labels.items(), "PodDisruptionBudget selector matches the pod labels")
    hpa = objs[("HorizontalPodAutoscaler", "certgate")]
    hs = hpa["spec"]
    cpu = [m for m in hs.get("metrics", []) if m.get("type") == "Resource" and m["resource"]["name"] == "cpu"]
    check(hpa["apiVersion"] == "autoscaling/v2" and cpu
          and cpu[0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70},
          "HorizontalPodAutoscaler autoscaling/v2 on CPU 70 %")
    check(hs["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "certgate"}
          and hs.get("minReplicas", 1) >= 3 and hs["maxReplicas"] >= hs.get("minReplicas", 1),
          f"HPA scales Deployment certgate from {hs.get('minReplicas')} to {hs.get('maxReplicas')}")
    upstream_ports = {listen_port(s.split()[0]) for u in gw.get("upstreams", {}).values() for s in u["servers"]}
    app_ports = {p["containerPort"] for c in pod["containers"] if c["name"] != "certgate" for p in c.get("ports", [])}
    check(all(h in ("127.0.0.1", "localhost", "::1") and p in app_ports for h, p in upstream_ports),
          f"upstreams {sorted(upstream_ports)} are the app container of the same pod (ports {sorted(app_ports)})")


def pod_view(certgate: Path, work: Path, objs: dict, secrets: list[dict]) -> None:
    dep = objs[("Deployment", "certgate")]
    pod = dep["spec"]["template"]["spec"]
    cg = container(dep, "certgate")
    volumes = {v["name"]: v for v in pod["volumes"]}
    cluster = dict(objs)
    cluster.update(by_ident(secrets))
    etc_mount = next(m for m in cg["volumeMounts"] if m["mountPath"] == "/etc/certgate")
    volume = volumes[etc_mount["name"]]
    mode = volume.get("projected", {}).get("defaultMode", 0o644)
    try:
        payload = projection_payload(volume, cluster)
    except KeyError as e:
        fail("every item of the /etc/certgate volume exists in its ConfigMap/Secret", str(e))
        return
    ok(f"/etc/certgate volume items all exist: {', '.join(sorted(payload))}")

    # The pod's file system, under a scratch root, listening on free loopback ports.
    root = work / "pod"
    etc = root / "etc/certgate"
    https_port, admin_port = free_port(), free_port()
    text = payload["gateway.yaml"].decode()
    text = (text.replace("/etc/certgate/", f"{etc}/")
            .replace('"0.0.0.0:8443"', f'"127.0.0.1:{https_port}"')
            .replace("0.0.0.0:9901", f"127.0.0.1:{admin_port}"))
    # The app container's port, on a free port here: nothing listens there until later.
    import yaml

    app_port = free_port()
    upstreams = [s.split()[0] for u in yaml.safe_load(text).get("upstreams", {}).values() for s in u["servers"]]
    for server in upstreams:
        text = text.replace(f'"{server}"', f'"127.0.0.1:{app_port}"')
    payload["gateway.yaml"] = text.encode()
    kubelet_write(etc, payload, 1, mode)
    check((etc / "tls").is_symlink() and os.readlink(etc / "tls") == "..data/tls"
          and (etc / "gateway.yaml").is_symlink(),
          "the volume looks as the kubelet writes it (tls -> ..data/tls, gateway.yaml -> ..data/gateway.yaml)")

    features = run([certgate, "run", "--help"]).stdout
    r = run([certgate, "check", "-c", etc / "gateway.yaml"])
    unknown = "unknown key" in r.stdout + r.stderr
    if "--watch" not in features or unknown:
        why = (r.stdout + r.stderr).strip().splitlines()[0] if unknown else "no `run --watch`"
        skip("certgate check / run on the pod's files",
             f"this certgate predates run --watch, tls.session_ticket_keys or log.stderr_format (issue 15): {why}")
        return
    check(r.returncode == 0, "certgate check -c /etc/certgate/gateway.yaml on the pod's files", r.stdout + r.stderr)

    def in_scratch(arg: str) -> str:
        for pod_dir, here in (("/etc/certgate/", f"{etc}/"), ("/tmp/", f"{work}/")):
            if arg.startswith(pod_dir):
                return here + arg[len(pod_dir):]
        return arg

    args = [in_scratch(a) for a in cg["args"]]
    stderr_path = work / "certgate.stderr"
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen([str(certgate), *args], stdout=subprocess.DEVNULL, stderr=err, cwd=work)
    try:
        deadline = time.time() + 15
        while (time.time() < deadline and proc.poll() is None
               and http_status(f"http://127.0.0.1:{admin_port}/healthz") != 200):
            time.sleep(0.2)
        if not check(http_status(f"http://127.0.0.1:{admin_port}/healthz") == 200,
                     f"certgate {' '.join(cg['args'])}: /healthz 200",
                     f"exit {proc.poll()}" if proc.poll() is not None else "no answer in 15 s"):
            return
        check(http_status(f"http://127.0.0.1:{admin_port}/readyz") == 503,
              "/readyz 503 while the app container is not listening (upstream health check)")
        with socket.socket() as app:
            app.bind(("127.0.0.1", app_port))
            app.listen(16)
            t0 = time.time()
            while time.time() < t0 + 15 and http_status(f"http://127.0.0.1:{admin_port}/readyz") != 200:
                time.sleep(0.25)
            check(http_status(f"http://127.0.0.1:{admin_port}/readyz") == 200,
                  f"/readyz 200 once the app listens ({time.time() - t0:.1f} s)")
        first = pem_to_der(base64.b64decode(cluster[("Secret", "certgate-tls")]["data"]["tls.crt"]))
        check(served_certificate(https_port) == first, "serves the certificate of Secret certgate-tls")

        # A Secret update, as the kubelet applies it: new timestamped directory, ..data swapped.
        pki2 = make_pki(certgate, work / "pki2")
        update = dict(payload)
        update["tls/tls.crt"], update["tls/tls.key"] = pki2["server.crt"], pki2["server.key"]
        kubelet_write(etc, update, 2, mode)
        second = pem_to_der(pki2["server.crt"])
        deadline = time.time() + 15
        t0 = time.time()
        while time.time() < deadline and served_certificate(https_port) != second:
            time.sleep(0.2)
        check(served_certificate(https_port) == second and proc.poll() is None,
              f"after a kubelet-style ..data swap the new certificate is served, same process "
              f"({time.time() - t0:.1f} s)")

        proc.send_signal(signal.SIGTERM)
        t0 = time.time()
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            code = None
        check(code == 0, f"SIGTERM: exit {code} after {time.time() - t0:.1f} s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [line for line in stderr_path.read_text(errors="replace").splitlines() if line.strip()]
    bad = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            bad.append(line)
    check(lines and not bad, f"stderr: {len(lines)} lines, each one JSON object (log.stderr_format: json)",
          (bad[0][:200] if bad else "no output"))
    check(not any("\x1b[" in line for line in lines), "stderr: no terminal colour codes")


def snapshot(binary: Path, directory: Path) -> Path:
    """A link (or copy) of the binary that stays put while cargo rebuilds target/."""
    dest = directory / "certgate"
    try:
        os.link(binary, dest)
    except OSError:
        shutil.copy2(binary, dest)
    return dest


def main() -> int:
    started = time.time()
    ensure_tools()
    with tempfile.TemporaryDirectory() as bin_dir:
        certgate = snapshot(certgate_binary(), Path(bin_dir))
        check_systemd(certgate)
        check_kubernetes(certgate)
    print(f"\n({time.time() - started:.1f} s)")
    print(f"deploy: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
