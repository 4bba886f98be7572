#!/usr/bin/env bash
# Give the report test a real headless browser: Debian's chromium package.
#
# tests/workbench/test_report.py renders report.html in headless Chromium and reads back the DOM
# (the videos decoded, the numbers shown). Idempotent: does nothing when chromium is on PATH. Never
# fails the build: without root or apt that one test skips with the reason, and this prints the fix.
set -uo pipefail

if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
  exit 0
fi
fix="apt-get install chromium (as root)"
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
  echo "install_chromium: no chromium and no root apt here; the report's browser test will skip. Fix: $fix" >&2
  exit 0
fi
echo "install_chromium: installing Debian's chromium for the report's browser test" >&2
if (DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1) || \
   (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q --no-install-recommends chromium >/dev/null); then
  exit 0
fi
echo "install_chromium: the install failed; the report's browser test will skip. Fix: $fix" >&2
exit 0
