#!/usr/bin/env bash
# Sets up and runs `logpipe run-all`: InfluxDB from docker-compose.influx.yml where a Docker
# engine runs, else from the OS package `influxdb` (run-all then starts a private server).
source "$(dirname "$0")/setup.sh"
if docker info >/dev/null 2>&1; then
  docker compose -f docker-compose.influx.yml up -d --wait
  export LOGPIPE_INFLUX_URL=http://127.0.0.1:8086 LOGPIPE_INFLUX_TOKEN=logpipe-dev-token
else
  ensure_influxd
fi
ensure_venv
exec .venv/bin/logpipe run-all "$@"
