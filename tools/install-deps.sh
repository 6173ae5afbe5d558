#!/usr/bin/env bash
# Installs the Debian 12 packages that building, running and testing Norn need
# (python3-venv and python3-pip: the per-agent virtualenvs of agent runs).
# Idempotent: apt runs only when a package is missing. Node packages for the
# Node tests are installed by tests/node/ itself (npm ci) when those tests run.
set -euo pipefail

pkgs=(
  build-essential pkg-config cmake ninja-build git clang
  libgrpc-dev grpc-proto libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libprotobuf-dev libprotoc-dev
  librocksdb-dev libjansson-dev libpcre2-dev libcurl4-openssl-dev libgit2-dev libssl-dev libcmocka-dev
  libtree-sitter-dev
  python3-grpcio python3-grpc-tools python3-protobuf python3-botocore python3-venv python3-pip
  nodejs npm openssl bazel-bootstrap
)
if [ "${NORN_SKIP_BAZEL:-0}" = 1 ]; then
  pkgs=("${pkgs[@]/bazel-bootstrap}")
fi

missing=()
for p in "${pkgs[@]}"; do
  [ -n "$p" ] || continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# nodejs/npm may come from outside Debian's archive on some machines: a working
# node and npm on PATH is enough.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
want=()
for p in "${missing[@]}"; do [ -n "$p" ] && want+=("$p"); done
[ ${#want[@]} -eq 0 ] && { echo "install-deps: all packages present"; exit 0; }

echo "install-deps: installing ${want[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${want[@]}"
