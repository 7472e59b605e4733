#!/bin/sh
# Regenerates src/oid_table.rs from the installed libcrypto (run on the reference
# platform: Debian 12, OpenSSL 3.0). Needs gcc, libssl-dev and python3.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gcc "$here/gen_oids.c" -o "$tmp/gen_oids" -lcrypto
"$tmp/gen_oids" > "$tmp/oids.tsv"
python3 - "$tmp/oids.tsv" "$here/../src/oid_table.rs" "$(openssl version | cut -d' ' -f2)" <<'PY'
import sys
src, dst, version = sys.argv[1], sys.argv[2], sys.argv[3]
rows = {}
for line in open(src):
    dotted, sn, hexder = line.rstrip("\n").split("\t")
    der = bytes.fromhex(hexder)
    # OID 1.3 has two NIDs (ORG, identified-organization); OBJ_obj2nid finds ORG,
    # which is the lower NID and so the first one printed.
    rows.setdefault(der, (sn, dotted))
out = [f"""//! OpenSSL 3.0's object table, reduced to what name printing needs: the DER
//! content octets of every OID OpenSSL knows and its short name (`OBJ_nid2sn`).
//!
//! OpenSSL prints an attribute by short name when `OBJ_obj2nid` knows its OID, and
//! as dotted numbers with a hex dump of the value otherwise, so the whole table is
//! kept (not only the usual DN attributes) to print every name exactly as nginx does.
//!
//! Generated from libcrypto {version} (Debian 12) by `tools/gen_oid_table.sh`, which
//! walks every NID with `OBJ_nid2obj`; do not edit by hand. OID 1.3 has two NIDs;
//! `OBJ_obj2nid` resolves it to `ORG`, which is the one kept.

/// `(OID content octets, short name)`, sorted by the octets for binary search.
#[rustfmt::skip]
pub(crate) static OID_SHORT_NAMES: &[(&[u8], &str)] = &["""]
for der, (sn, dotted) in sorted(rows.items()):
    lit = ",".join("0x%02x" % b for b in der)
    out.append(f'    (&[{lit}], "{sn}"), // {dotted}')
out.append("];")
open(dst, "w").write("\n".join(out) + "\n")
PY
