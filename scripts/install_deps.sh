#!/usr/bin/env bash
# Installs what int4mm's build, tests and benchmark need, on Debian or Ubuntu.
# Fast when there is nothing to do: it asks dpkg first and runs apt-get only
# for what is missing. Runs as root as is (CI images have no sudo), else with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

# Programs: present if on PATH, whoever installed them (a newer cmake from pip
# or a vendor is fine, as long as it is >= 3.25).
declare -A programs=([cmake]=cmake [ninja]=ninja-build [g++]=g++)
# Header-only and library packages: present if dpkg says so.
packages=(googletest libgtest-dev libcli11-dev nlohmann-json3-dev libopenblas-dev)
if [ -f pyproject.toml ] || [ -f python/pyproject.toml ] || [ -f python/setup.py ]; then
  packages+=(python3-dev python3-pip python3-venv)
fi

missing=()
for program in "${!programs[@]}"; do
  command -v "$program" >/dev/null 2>&1 || missing+=("${programs[$program]}")
done
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: everything is present"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_deps: missing ${missing[*]}, and there is no apt-get here: install them by hand" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
echo "install_deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
