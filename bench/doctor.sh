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

BENCH_DIR="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
RUNS="${BENCH_RUNS:-20}"
CTL="${BENCH_CTL:-$REPO/target/release/masstockctl}"
cd "$REPO"
[[ -x $CTL ]] || { echo "bench: $CTL is missing: run script/local-up first (or set BENCH_CTL)" >&2; exit 1; }
[[ -f .env.local ]] || { echo "bench: .env.local is missing: run script/local-up first" >&2; exit 1; }
ctl() { "$CTL" --env local -q "$@"; }

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

now() { date +%s.%N; }
elapsed() { awk -v end="$(now)" -v start="$1" 'BEGIN { printf "%.3f", end - start }'; }
declare -A figures
record() {
  figures[$1]+="$2 "
  printf 'bench:   %-44s %7.3fs\n' "$1" "$2" >&2
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
  printf '%-44s %8s %8s %8s\n' figure min median max
  for name in "masstockctl doctor (healthy stack)" "masstockctl health" "the reference's commands, one after another"; do
    read -r -a values <<<"${figures[$name]}"
    sorted=$(printf '%s\n' "${values[@]}" | sort -g)
    min=$(head -n 1 <<<"$sorted"); max=$(tail -n 1 <<<"$sorted")
    median=$(awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }' <<<"$sorted")
    printf '%-44s %7.3fs %7.3fs %7.3fs\n' "$name" "$min" "$median" "$max"
  done
} | tee "$out"
echo "bench: written to $out" >&2
