#!/usr/bin/env bash
# Give SAPIEN (ManiSkill3) a Vulkan device on a machine without a GPU.
#
# SAPIEN needs Vulkan even for state-only envs. Debian 12's own lavapipe (Mesa 22.3) is rejected
# by SAPIEN 3; Mesa 25 lavapipe from bookworm-backports works. Idempotent: does nothing when a
# Mesa >= 25 Vulkan driver is already installed. Never fails the build: without root or apt the
# ManiSkill tests skip with the reason, and this prints how to fix it.
set -uo pipefail

want_major=25
have=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
if [[ -n "$have" && "${have%%.*}" -ge $want_major ]] 2>/dev/null; then
  exit 0
fi

fix="apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1 (as root, with bookworm-backports in apt's sources)"
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
  echo "install_vulkan: no Mesa >= $want_major Vulkan driver and no root apt here; ManiSkill tests will skip. Fix: $fix" >&2
  exit 0
fi
. /etc/os-release 2>/dev/null || true
if [[ "${VERSION_CODENAME:-}" != "bookworm" ]]; then
  # Newer Debian/Ubuntu releases ship Mesa >= 25 in their main archive.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q mesa-vulkan-drivers libvulkan1 >/dev/null \
    || echo "install_vulkan: apt-get install mesa-vulkan-drivers failed; ManiSkill tests will skip" >&2
  exit 0
fi

list=/etc/apt/sources.list.d/bookworm-backports.list
if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "deb http://deb.debian.org/debian bookworm-backports main" > "$list"
fi
echo "install_vulkan: installing Mesa $want_major lavapipe (mesa-vulkan-drivers) from bookworm-backports" >&2
if apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null; then
  exit 0
fi
echo "install_vulkan: the install failed; ManiSkill tests will skip. Fix: $fix" >&2
exit 0
