# Sourced by the other scripts: installs what a fresh Debian/Ubuntu machine lacks.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then
    as_root apt-get update -q
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

ensure_influxd() {
  command -v influxd >/dev/null || apt_install influxdb
  influxd version
}

# the rotation tests rotate with the real logrotate
ensure_logrotate() {
  command -v logrotate >/dev/null || [ -x /usr/sbin/logrotate ] || apt_install logrotate
}

# the dashboard tests look at the page in a real headless Chromium
ensure_chromium() {
  { command -v chromium && command -v chromedriver; } >/dev/null || apt_install chromium chromium-driver
}

ensure_wrk() {
  command -v wrk >/dev/null || apt_install wrk
}

# the C fast path of the parser (logpipe/process/_fastparse.c) needs a compiler and Python's
# headers; without them it is left out and the tests refuse to run on the slower fallback
ensure_compiler() {
  command -v cc >/dev/null || apt_install gcc
  local headers
  headers=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  [ -f "$headers/Python.h" ] || apt_install python3-dev
}

# .venv with logpipe (editable) and its test tools
ensure_venv() {
  ensure_compiler
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv 2>/dev/null || { apt_install python3-venv && python3 -m venv .venv; }
  fi
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]' 'nox>=2024.4'
}
