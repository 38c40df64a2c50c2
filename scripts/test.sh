#!/usr/bin/env bash
# Command 2: set up and run the whole test suite (unit and end-to-end, with real runsc).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "$(id -u)" != 0 ]; then
  echo "test: the end-to-end tests start gVisor sandboxes and need root" >&2
  exit 1
fi
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast --profile ci "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
