#!/usr/bin/env bash
# Command 2: set up and run the whole test suite (unit and end-to-end, with real runsc).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "$(id -u)" != 0 ]; then
  echo "test: the end-to-end tests start gVisor sandboxes and need root" >&2
  exit 1
fi
# The fuzz targets (property tests named fuzz_*, docs/security.md) run with the bounded case
# counts their files set, about a minute in all; PROPTEST_CASES, when set, overrides them.
# Formatting and lints first: they take a minute and fail with what to change.
cargo fmt --all --check || {
  echo "test: run \`cargo fmt --all\` and commit the result" >&2
  exit 1
}
cargo clippy --workspace --all-targets --locked -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  status=0
  cargo nextest run --workspace --no-fail-fast --profile ci "$@" || status=$?
  # nextest does not run doc examples; they are tests too.
  cargo test --workspace --doc --no-fail-fast || status=$?
  exit "$status"
else
  cargo test --workspace --no-fail-fast "$@"
fi
