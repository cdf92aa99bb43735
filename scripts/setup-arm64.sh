#!/usr/bin/env bash
# Installs what `make test-arm64` needs on Debian/Ubuntu (x86-64 host), when
# any of it is missing: the aarch64 cross compiler, qemu-user, and the arm64
# (multiarch) -dev packages of every library kvq links, so that the whole
# library and its kernel tests cross-build for aarch64 and run under qemu
# (with the arm64 libc, libstdc++ and libgomp of the multiarch packages).
# Idempotent and quiet when everything is present; uses sudo when not root.
set -euo pipefail

packages=(
  g++-aarch64-linux-gnu qemu-user libc6:arm64 libstdc++6:arm64 libgomp1:arm64
  libhwy-dev:arm64 libgtest-dev:arm64 libopenblas-openmp-dev:arm64 libfmt-dev:arm64
  zlib1g-dev:arm64 libcurl4-openssl-dev:arm64 libpcre2-dev:arm64 libutf8proc-dev:arm64
)

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"

# arm64 packages are installable only once dpkg knows the architecture.
added_arch=0
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "setup-arm64: adding the arm64 architecture to dpkg" >&2
  $sudo dpkg --add-architecture arm64
  added_arch=1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && [ "$added_arch" -eq 0 ] && exit 0

echo "setup-arm64: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
[ ${#missing[@]} -eq 0 ] || $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
