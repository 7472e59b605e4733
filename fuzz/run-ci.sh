#!/usr/bin/env bash
# The bounded fuzz run of CI (called from .ci/run; also fine locally): builds every fuzz
# target with cargo-fuzz on the STABLE toolchain (`--sanitizer none`: AddressSanitizer
# needs nightly's -Zsanitizer; safe Rust needs it least, and the checks are assertions),
# then runs each one for FUZZ_SECONDS (default 20) with libFuzzer, starting from the
# committed seeds. The build is `--dev` (FUZZ_PROFILE, default dev): from scratch it takes
# half the CPU time of `--release`, which matters more in CI than executions per second. Fails on the first crash, timeout or out-of-memory, and prints the
# input (base64) so it can be turned into a regression file (docs/fuzzing.md).
#
# The committed corpus is only read: libFuzzer writes what it finds into a temporary
# directory (the first corpus directory is the writable one), so a run never changes the
# repository.
#
#   fuzz/run-ci.sh                      # every target, 20 s each
#   FUZZ_SECONDS=600 fuzz/run-ci.sh pki_crl
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-20}"
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(RUSTUP_TOOLCHAIN=stable cargo fuzz list)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
  exit 1
fi

# No toolchain but the machine's stable one: CI machines have no nightly.
export RUSTUP_TOOLCHAIN=stable
fuzz=(--sanitizer none "--${FUZZ_PROFILE:-dev}")

echo "== fuzz: building ${targets[*]} (stable, --sanitizer none)"
start=$(date +%s)
# Quiet: only warnings and errors, not a line per crate.
CARGO_TERM_QUIET=true cargo fuzz build "${fuzz[@]}"
echo "   built in $(( $(date +%s) - start )) s"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=0
for target in "${targets[@]}"; do
  mkdir -p "$work/$target/corpus" "$work/$target/artifacts"
  echo "== fuzz: $target for ${seconds} s (seeds: corpus/$target)"
  log="$work/$target/log"
  if cargo fuzz run "${fuzz[@]}" "$target" "$work/$target/corpus" "corpus/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$work/$target/artifacts/" >"$log" 2>&1; then
    # libFuzzer's summary: executions, speed, coverage reached.
    grep -E '^(Done [0-9]+ runs|stat::number_of_executed_units|#[0-9]+ +DONE)' "$log" | sed 's/^/   /' || true
  else
    failed=1
    echo "!! fuzz target $target FAILED; last lines of its log:" >&2
    tail -n 60 "$log" >&2
    for artifact in "$work/$target/artifacts/"*; do
      [ -f "$artifact" ] || continue
      echo "!! input $(basename "$artifact") (base64; save it as fuzz/regressions/$target/<name>):" >&2
      base64 -w 0 "$artifact" >&2
      echo >&2
    done
  fi
done
exit "$failed"
