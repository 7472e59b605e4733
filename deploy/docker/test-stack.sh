#!/usr/bin/env bash
# Real test of the Compose sidecar stack (issue 15, item 3), for CI machines where no
# registry can be reached and only loopback traffic is allowed:
#
#   deploy/docker/test-stack.sh                 # as root; bounded by STACK_TIMEOUT (900 s)
#
# Installs Debian's docker.io, docker-compose, debootstrap and golang-go when missing,
# starts dockerd when none answers (and stops it again, by PID), builds the images with
# the classic builder (certgate from a host-built binary + the libraries ldd names,
# Python from a debootstrapped root file system, Go from a static host-built binary),
# brings compose.yaml + compose.host.yaml up and checks, through certgate:
#   /api/ (Flask) and /go/ (Go) with the client certificate -> 200 and the identity;
#   no client certificate -> 400;
#   CA swapped + `docker-compose kill -s HUP certgate` -> old client 400, new client 200;
#   `docker-compose stop certgate` -> exit code 0 within shutdown_grace (5 s);
# then removes the containers, the network and every image it built.
#
# Environment: CERTGATE_BIN (default: the newer of target/release/certgate and
# target/debug/certgate),
# STACK_TIMEOUT (seconds, default 900), KEEP_IMAGES=1 (keep the images it built, e.g.
# to rerun quickly: the Python base takes the longest to make).
set -euo pipefail

# The whole run is under one `timeout` (it signals this process group on expiry; the inner
# timeouts use --foreground so their commands stay in the group and get the signal too).
if [[ -z "${CERTGATE_STACK_TIMED:-}" ]]; then
    export CERTGATE_STACK_TIMED=1
    exec timeout --kill-after=30 "${STACK_TIMEOUT:-900}" "$0" "$@"
fi

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=$(mktemp -d /tmp/certgate-stack.XXXXXX)
PROJECT=certgate-ci
export COMPOSE_PROJECT_NAME=$PROJECT
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0
export CERTGATE_IMAGE=certgate-test/certgate:ci
export FLASK_IMAGE=certgate-test/flask:ci
export GO_IMAGE=certgate-test/go:ci
export PYTHON_IMAGE=certgate-test/python:bookworm
export CERTGATE_CERTS=$WORK/certs
GW=https://127.0.0.1:18443 ADMIN=http://127.0.0.1:19901
PORTS=(18443 19901 15000 18080)
SHUTDOWN_GRACE=5

T0=$(date +%s.%N) PHASES=() PHASE= PHASE_T=
DOCKERD_PID= MADE_IMAGES=() STACK_UP= STATUS=1

log() { printf '[test-stack %6.1fs] %s\n' "$(echo "$(date +%s.%N) - $T0" | bc)" "$*"; }
die() { log "FAIL: $*"; exit 1; }
phase() {   # phase NAME: close the running phase, start the next
    local now; now=$(date +%s.%N)
    [[ -n "$PHASE" ]] && PHASES+=("$(printf '%-28s %6.1fs' "$PHASE" "$(echo "$now - $PHASE_T" | bc)")")
    PHASE=$1 PHASE_T=$now
    [[ -n "$PHASE" ]] && log "== $PHASE"
    return 0
}
# docker-compose v1 refuses published ports under network_mode: host and cannot drop the
# base file's `ports` in an override (no `!reset`): merge compose.yaml + compose.host.yaml
# with `config`, drop the ports of host-network services, run the result.
merge_compose() {
    docker-compose -f "$HERE/compose.yaml" -f "$HERE/compose.host.yaml" config | python3 -c '
import sys, yaml
d = yaml.safe_load(sys.stdin)
for s in d["services"].values():
    if s.get("network_mode") == "host":
        s.pop("ports", None)
yaml.safe_dump(d, sys.stdout)' > "$WORK/compose.ci.yaml"
}
dc() { timeout --foreground 120 docker-compose -f "$WORK/compose.ci.yaml" --project-directory "$HERE" "$@"; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ $STATUS -eq 0 || $rc -ne 0 ]] || rc=1
    phase teardown
    if [[ -n "$STACK_UP" ]]; then
        if [[ $rc -ne 0 ]]; then
            log "logs of the stack:"; dc logs --no-color --tail=50 2>&1 | sed 's/^/    /' || true
        fi
        dc down --remove-orphans -t 10 >/dev/null 2>&1 || log "docker-compose down failed"
    fi
    if [[ -z "${KEEP_IMAGES:-}" && ${#MADE_IMAGES[@]} -gt 0 ]]; then
        docker rmi -f "${MADE_IMAGES[@]}" >/dev/null 2>&1 || log "could not remove ${MADE_IMAGES[*]}"
    fi
    if [[ -n "$DOCKERD_PID" ]]; then
        kill "$DOCKERD_PID" 2>/dev/null || true
        for _ in $(seq 30); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 1; done
        if kill -0 "$DOCKERD_PID" 2>/dev/null; then log "dockerd $DOCKERD_PID still running: SIGKILL"; kill -9 "$DOCKERD_PID" || true; fi
        log "stopped dockerd (pid $DOCKERD_PID)"
    fi
    # an interrupted debootstrap can leave /proc, /sys mounted in its target
    grep -o " $WORK/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf --one-file-system "$WORK"
    phase ""
    echo "---- timings"
    printf '  %s\n' "${PHASES[@]}"
    printf '  %-28s %6.1fs\n' total "$(echo "$(date +%s.%N) - $T0" | bc)"
    if [[ $rc -eq 0 ]]; then echo "test-stack: PASS"; else echo "test-stack: FAIL (exit $rc)"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted (timeout?)"; exit 124' INT TERM

[[ $(id -u) -eq 0 ]] || die "run as root (apt, dockerd, debootstrap)"

# ---------------------------------------------------------------------------------
phase "packages"
need=()
command -v dockerd >/dev/null        || need+=(docker.io)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v debootstrap >/dev/null    || need+=(debootstrap)
command -v go >/dev/null             || need+=(golang-go)
command -v curl >/dev/null           || need+=(curl)
command -v bc >/dev/null             || need+=(bc)
if [[ ${#need[@]} -gt 0 ]]; then
    log "apt-get install ${need[*]}"
    timeout --foreground 300 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout --foreground 600 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
for p in "${PORTS[@]}"; do
    if ss -Hltn "sport = :$p" | grep -q .; then die "port $p is already in use (compose.host.yaml needs ${PORTS[*]})"; fi
done

BIN=${CERTGATE_BIN:-}
if [[ -z "$BIN" ]]; then
    BIN=$(ls -t "$ROOT/target/release/certgate" "$ROOT/target/debug/certgate" 2>/dev/null | head -1 || true)
fi
[[ -n "$BIN" && -x "$BIN" ]] || die "no certgate binary: cargo build -p certgate, or set CERTGATE_BIN"
mkdir -p "$WORK/bin"; cp "$BIN" "$WORK/bin/certgate"   # others may rebuild it meanwhile
CG=$WORK/bin/certgate
log "certgate binary: $BIN ($("$CG" --version))"

# ---------------------------------------------------------------------------------
phase "dockerd"
if timeout --foreground 10 docker info >/dev/null 2>&1; then
    log "dockerd already running: using it (not stopping it at the end)"
else
    dockerd > "$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 60); do timeout --foreground 5 docker info >/dev/null 2>&1 && break; sleep 1; done
    timeout --foreground 5 docker info >/dev/null 2>&1 || { tail -20 "$WORK/dockerd.log"; die "dockerd did not come up"; }
    log "started dockerd (pid $DOCKERD_PID)"
fi

# Containers left by an earlier run that was killed (SIGKILL skips the cleanup).
stale=$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT")
[[ -z "$stale" ]] || { log "removing containers of an earlier run"; docker rm -f $stale >/dev/null; }

# ---------------------------------------------------------------------------------
phase "python base (debootstrap)"
if docker image inspect "$PYTHON_IMAGE" >/dev/null 2>&1; then
    log "$PYTHON_IMAGE exists: reusing it"
else
    mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
    mirror=${mirror:-http://deb.debian.org/debian}
    timeout --foreground 600 debootstrap --variant=minbase --include=python3,python3-flask \
        bookworm "$WORK/rootfs" "$mirror" > "$WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap.log"; die "debootstrap failed"; }
    rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
    tar -C "$WORK/rootfs" -c . | docker import - "$PYTHON_IMAGE" >/dev/null
    MADE_IMAGES+=("$PYTHON_IMAGE")
    rm -rf "$WORK/rootfs"
fi

build() {   # classic builder; its output only on failure (it warns that it is deprecated)
    timeout --foreground 300 docker build "$@" > "$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; die "docker build $* failed"; }
}

# ---------------------------------------------------------------------------------
phase "build certgate image"
ctx=$WORK/certgate-ctx
mkdir -p "$ctx/rootfs/etc/certgate" "$ctx/rootfs/tmp"
chmod 1777 "$ctx/rootfs/tmp"
cp "$CG" "$ctx/rootfs/certgate"
# The dynamic loader and every library ldd resolves, at the same paths.
ldd "$CG" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\/.*ld-linux/ {print $1}' | sort -u | while read -r lib; do
    mkdir -p "$ctx/rootfs$(dirname "$lib")"
    cp -L "$lib" "$ctx/rootfs$lib"
done
cp "$HERE/Dockerfile.prebuilt" "$ctx/Dockerfile"
build -t "$CERTGATE_IMAGE" "$ctx"
MADE_IMAGES+=("$CERTGATE_IMAGE")
docker run --rm "$CERTGATE_IMAGE" --version | grep -q certgate || die "image does not run"

phase "build flask image"
build --network host --build-arg PYTHON_IMAGE="$PYTHON_IMAGE" \
    -t "$FLASK_IMAGE" "$HERE/flask"
MADE_IMAGES+=("$FLASK_IMAGE")

phase "build go image"
mkdir -p "$WORK/go"
cp "$HERE/go/main.go" "$HERE/go/go.mod" "$HERE/go/Dockerfile" "$WORK/go/"
(cd "$WORK/go" && CGO_ENABLED=0 GOFLAGS=-mod=mod timeout --foreground 300 go build -trimpath -ldflags=-s -o go-app .)
build -t "$GO_IMAGE" "$WORK/go"
MADE_IMAGES+=("$GO_IMAGE")

# ---------------------------------------------------------------------------------
phase "stack up"
"$CG" certs init --dir "$WORK/certs" >/dev/null
chown 65532:65532 "$WORK/certs/server.key"    # the container user; stays 0600
"$CG" certs init --dir "$WORK/certs2" >/dev/null   # the CA swapped in later
mkdir -p "$WORK/check"; cp "$HERE/gateway.host.yaml" "$WORK/check/"; ln -s "$WORK/certs" "$WORK/check/certs"
"$CG" check -c "$WORK/check/gateway.host.yaml" >/dev/null || die "certgate check gateway.host.yaml failed"
merge_compose
STACK_UP=1
dc up -d --no-build >/dev/null 2>"$WORK/up.log" || { cat "$WORK/up.log"; die "docker-compose up failed"; }
CID=$(dc ps -q certgate)
[[ -n "$CID" ]] || die "no certgate container"

c=$WORK/certs
call() {   # call URL OUT [curl args]: prints the HTTP status, body in OUT (a new connection each time)
    local url=$1 out=$2; shift 2
    curl -sS --max-time 5 --cacert "$c/ca.crt" -o "$out" -w '%{http_code}' "$@" "$url" 2>>"$WORK/curl.err" || echo 000
}
for _ in $(seq 60); do
    [[ $(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "$ADMIN/readyz" || true) == 200 ]] &&
    [[ $(call "$GW/api/ready" /dev/null --cert "$c/client.crt" --key "$c/client.key") == 200 ]] &&
    [[ $(call "$GW/go/ready" /dev/null --cert "$c/client.crt" --key "$c/client.key") == 200 ]] && break
    sleep 0.5
done
[[ $(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "$ADMIN/readyz" || true) == 200 ]] || die "certgate /readyz not 200"

# ---------------------------------------------------------------------------------
phase "requests"
DN=$("$CG" certs inspect "$c/client.crt" | sed -n 's/^ *x-ssl-client-s-dn: //p')
[[ -n "$DN" ]] || die "cannot read the client's subject DN"
check_json() {   # check_json FILE APP PATH
    python3 - "$@" "$DN" <<'PY' || die "unexpected body from $2: $(cat "$1")"
import json, sys
f, app, path, dn = sys.argv[1:]
b = json.load(open(f))
assert b["app"] == app, b
assert b["path"] == path, b
assert b["ssl_client_s_dn"] == dn, b
assert b["ssl_client_verify"] == "SUCCESS", b
PY
}
for route in api:flask go:go; do
    p=${route%%:*} app=${route#*:}
    s=$(call "$GW/$p/whoami" "$WORK/body" --cert "$c/client.crt" --key "$c/client.key")
    [[ $s == 200 ]] || die "/$p/ with the client certificate: $s, want 200"
    check_json "$WORK/body" "$app" "/$p/whoami"
    log "/$p/whoami with certificate: 200, $app saw $(cat "$WORK/body")"
    s=$(call "$GW/$p/whoami" "$WORK/body")
    [[ $s == 400 ]] || die "/$p/ without a client certificate: $s, want 400"
    log "/$p/whoami without certificate: 400"
done

# ---------------------------------------------------------------------------------
phase "CA swap + SIGHUP"
cp "$c/ca.crt" "$WORK/old-ca.crt"            # still signs the server certificate
cp "$WORK/certs2/ca.crt" "$c/ca.crt"          # in place: the bind mount sees it
s=$(call "$GW/api/before-hup" /dev/null --cacert "$WORK/old-ca.crt" --cert "$c/client.crt" --key "$c/client.key")
[[ $s == 200 ]] || die "old client certificate after the CA swap, before HUP: $s, want 200 (no reload yet)"
dc kill -s HUP certgate >/dev/null 2>&1
ok=
for _ in $(seq 40); do
    s=$(call "$GW/api/old" /dev/null --cacert "$WORK/old-ca.crt" --cert "$c/client.crt" --key "$c/client.key")
    [[ $s == 400 ]] && { ok=1; break; }
    sleep 0.25
done
[[ -n "$ok" ]] || die "old client certificate after the CA swap + HUP: $s, want 400"
log "old client certificate after CA swap + HUP: 400"
s=$(call "$GW/api/new" "$WORK/body" --cacert "$WORK/old-ca.crt" --cert "$WORK/certs2/client.crt" --key "$WORK/certs2/client.key")
[[ $s == 200 ]] || die "client of the new CA: $s, want 200"
log "client certificate of the new CA: 200"
[[ $(docker inspect -f '{{.State.Running}} {{.RestartCount}}' "$CID") == "true 0" ]] || die "certgate restarted instead of reloading"

# ---------------------------------------------------------------------------------
phase "stop (SIGTERM)"
t=$(date +%s.%N)
dc stop -t 10 certgate >/dev/null 2>&1
took=$(echo "$(date +%s.%N) - $t" | bc)
code=$(docker inspect -f '{{.State.ExitCode}}' "$CID")
log "certgate stopped in ${took}s, exit code $code"
[[ $code == 0 ]] || die "certgate exit code $code, want 0"
(( $(echo "$took <= $SHUTDOWN_GRACE" | bc) )) || die "stop took ${took}s, more than shutdown_grace ${SHUTDOWN_GRACE}s"
dc stop -t 10 >/dev/null 2>&1
for svc in flask go; do
    id=$(dc ps -q $svc); code=$(docker inspect -f '{{.State.ExitCode}}' "$id")
    [[ $code == 0 ]] || log "note: $svc exited with $code"
done

STATUS=0
