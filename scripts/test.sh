#!/usr/bin/env bash
# Runs the whole test suite: lint, types, unit and integration tests against a real influxd,
# and the dashboard in a real headless Chromium.
source "$(dirname "$0")/setup.sh"
ensure_influxd
ensure_logrotate
ensure_chromium
ensure_venv
exec .venv/bin/nox -s lint tests "$@"
