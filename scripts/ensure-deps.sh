#!/usr/bin/env bash
# Make sure the Debian packages the build and tests need are installed (CI runs as root on a
# clean Debian 12). Quiet and instant when everything is present.
#   libssl-dev, zlib1g-dev, pkg-config: the CTLS system library (Package.swift, pkgConfig "openssl").
#   valgrind: the instruction-count regression gate (scripts/callgrind-check.sh).
#   python3-venv: `python3 -m venv` for .venv-test and .tools when pyenv is not on PATH.
#   haproxy: the proxy in front of sharded relays (tests/interop/test_sharding.py, deploy/haproxy.cfg);
#     the test starts its own on loopback. Debian's package enables haproxy.service, whose
#     default configuration binds nothing.
#   pebble: the ACME test server and its DNS (pebble-challtestsrv) for tests/interop/test_acme.py.
#   iproute2, nftables: the soak's network faults (tests/soak/netfaults.py: namespaces, veth, tc;
#     nftables for loss and partitions where the kernel has no netem).
#   libcap2-bin: capsh names capability bits for tests/interop/test_operations.py.
set -euo pipefail

PKGS=(libssl-dev zlib1g-dev pkg-config python3-venv valgrind haproxy pebble iproute2 nftables libcap2-bin)
missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done
[[ ${#missing[@]} == 0 ]] && exit 0

echo "ensure-deps: installing ${missing[*]}" >&2
SUDO=
if [[ $(id -u) != 0 ]]; then
  command -v sudo >/dev/null 2>&1 || { echo "ensure-deps: ERROR: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "ensure-deps: ok" >&2
