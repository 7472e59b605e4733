#!/bin/sh
# Compares this crate's $ssl_client_* values with what the installed nginx
# (reference: Debian 12, nginx 1.22.1 + OpenSSL 3.0) produces for the same
# client certificates. Development aid; the unit tests hold the results as literals.
#
#   CERTGATE_IDENTITY_DUMP=/tmp/id-dump cargo test -p certgate-identity --lib -- --ignored dump_fixtures
#   crates/identity/tools/compare_with_nginx.sh /tmp/id-dump
#
# Needs nginx, openssl and curl. Exits non-zero on any difference.
set -eu
dump=$(cd "$1" && pwd)
work=$(mktemp -d)
port=${PORT:-18443}
cleanup() {
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -keyout "$work/server.key" -out "$work/server.crt" 2>/dev/null

vars="ssl_client_s_dn ssl_client_i_dn ssl_client_s_dn_legacy ssl_client_i_dn_legacy ssl_client_serial
ssl_client_fingerprint ssl_client_v_start ssl_client_v_end ssl_client_v_remain ssl_client_escaped_cert"
body=""
for v in $vars; do body="$body$v=\$$v\\n"; done

cat > "$work/nginx.conf" <<CONF
daemon on;
pid $work/nginx.pid;
error_log $work/error.log;
events {}
http {
    access_log off;
    client_body_temp_path $work;
    server {
        listen 127.0.0.1:$port ssl;
        ssl_certificate $work/server.crt;
        ssl_certificate_key $work/server.key;
        ssl_verify_client optional_no_ca;
        location / { default_type text/plain; return 200 "$body"; }
    }
}
CONF
nginx -p "$work" -c "$work/nginx.conf"
sleep 0.5

status=0
for crt in "$dump"/*.crt; do
    name=$(basename "$crt" .crt)
    if ! curl -sk --cert "$crt" --key "$dump/$name.key" "https://127.0.0.1:$port/" > "$work/$name.nginx"; then
        # OpenSSL could not decode the certificate: the handshake fails, and
        # ClientCert::from_chain must refuse it too.
        if [ "$(cat "$dump/$name.ours")" = "unparseable" ]; then
            echo "$name: refused by both"
        else
            echo "$name: nginx refused the certificate, certgate accepted it"
            status=1
        fi
        continue
    fi
    grep -aE "^($(echo $vars | tr ' ' '|'))=" "$dump/$name.ours" > "$work/$name.ours" || true
    if diff -u "$work/$name.nginx" "$work/$name.ours"; then
        echo "$name: identical"
    else
        status=1
    fi
done
exit $status
