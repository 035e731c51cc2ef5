#!/usr/bin/env bash
# Runs the benchmarks (ingest and API) as the README reports them: a few minutes.
source "$(dirname "$0")/setup.sh"
ensure_influxd
ensure_wrk
ensure_venv
exec .venv/bin/nox -s bench "$@"
