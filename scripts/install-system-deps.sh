#!/usr/bin/env bash
# Debian packages the tests and the demo use: independent IPFIX decoders (tshark,
# libfixbuf's ipfixDump), a real exporter (pmacct, softflowd), a database server
# (PostgreSQL), a browser for the page test, and cross compilers with qemu-user for the
# router targets. Installs only what is missing; needs root (or sudo).
set -euo pipefail

packages=(
  build-essential python3-dev
  tshark libfixbuf-tools pmacct softflowd
  postgresql
  chromium chromium-driver
  gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf gcc-mipsel-linux-gnu gcc-mips-linux-gnu
  libc6-dev-arm64-cross libc6-dev-armhf-cross libc6-dev-mipsel-cross libc6-dev-mips-cross
  qemu-user
  time
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
echo "installing Debian packages: ${missing[*]}" >&2
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
