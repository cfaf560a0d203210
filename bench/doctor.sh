#!/usr/bin/env bash
# Times `masstockctl doctor` on the deployed local environment (issue 8's anchor: under two
# seconds on a healthy stack), beside `masstockctl health` and beside the reference's
# troubleshooting commands run one after the other, as an operator would by hand.
#
# Usage: bench/doctor.sh               (after script/local-up; the stack must be healthy)
#        BENCH_RUNS=50 bench/doctor.sh
#
# Each run, in order: `doctor --json` (must exit 0 with no finding: a finding means the stack is
# not healthy and the figure would measure something else), `health --json`, then the manual
# sequence: `docker ps -a`, `docker logs --tail 100` and `docker inspect` of the api, the CORS
# preflight with curl through the edge, `redis-cli ping` and `LLEN` of the waiting jobs in the
# redis container, `openssl x509 -enddate` of the certificate, `df -h`, `docker system df`, and
# `du -h` of the log folder. Prints min/median/max of each and writes them to
# bench/results/doctor-<time>.txt.
#
# Settings: BENCH_RUNS (default 20); BENCH_CTL (default target/release/masstockctl).
set -euo pipefail

source "$(dirname "$0")/lib.sh"
RUNS="${BENCH_RUNS:-20}"
local_ctl

if ! findings=$(ctl doctor --json); then
  echo "bench: doctor finds problems on the local stack; fix them first:" >&2
  echo "$findings" >&2
  exit 1
fi

redis_password=$(sed -n 's/^REDIS_PASSWORD=//p' .env.local)
live=$(find .masstock/local/letsencrypt/live -mindepth 1 -maxdepth 1 -type d | head -n 1)
manual() {
  docker ps -a --filter name=masstock_
  docker logs masstock_api --tail 100
  docker inspect masstock_api
  curl -sS -o /dev/null -D - -X OPTIONS "https://api.masstock.localhost:8443/api/v1/auth/login" \
    --resolve api.masstock.localhost:8443:127.0.0.1 --cacert .masstock/local/ca/roots.pem \
    -H "Origin: https://app.masstock.localhost:8443" -H "Access-Control-Request-Method: POST"
  docker exec masstock_redis redis-cli --no-auth-warning -a "$redis_password" ping
  docker exec masstock_redis redis-cli --no-auth-warning -a "$redis_password" ZCARD bull:workflow-queue:prioritized
  openssl x509 -noout -enddate -in "$live/cert.pem"
  df -h
  docker system df
  du -h .masstock/local/nginx/logs | sort -h | tail -20
}


for run in $(seq 1 "$RUNS"); do
  echo "bench: run $run/$RUNS" >&2
  start=$(now); ctl doctor --json >/dev/null; record "masstockctl doctor (healthy stack)" "$(elapsed "$start")"
  start=$(now); ctl health --json >/dev/null; record "masstockctl health" "$(elapsed "$start")"
  start=$(now); manual >/dev/null 2>&1; record "the reference's commands, one after another" "$(elapsed "$start")"
done

mkdir -p "$BENCH_DIR/results"
out="$BENCH_DIR/results/doctor-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
  echo "# bench/doctor.sh, $RUNS runs, $(nproc) CPUs, $(git rev-parse --short HEAD)"
  summarize "masstockctl doctor (healthy stack)" "masstockctl health" "the reference's commands, one after another"
} | tee "$out"
echo "bench: written to $out" >&2
