#!/usr/bin/env bash
# Times `masstockctl deploy` of the local environment against `docker-compose up -d` of the compose
# file `masstockctl render` writes, on the same images, in the same run (issue 6's anchor).
#
# Usage: bench/deploy.sh              (after script/local-up, which builds the images)
#        BENCH_RUNS=5 bench/deploy.sh
#
# Each run, in order:
#   1. `masstockctl down` (volumes kept), then `masstockctl deploy --no-build`: a full deploy, timed
#      until it returns, which is when every container is healthy (deploy waits for it);
#   2. `masstockctl deploy --no-build` again: the no-change deploy;
#   3. `masstockctl down`, then `docker-compose up -d` of the rendered file: timed until it returns
#      and, separately, until `masstockctl health` passes (compose 1.29 has no `--wait`; it does
#      honour `depends_on: condition: service_healthy`, so `up -d` itself waits for redis and api);
#   4. `docker-compose up -d` again: compose's no-change run;
#   5. `docker-compose down`.
# Then it deploys with masstockctl again, so the local environment is left as it was found.
# Prints min/median/max of each figure and writes them to bench/results/deploy-<time>.txt.
#
# Settings: BENCH_RUNS (default 3); BENCH_CTL (default target/release/masstockctl).
set -euo pipefail

source "$(dirname "$0")/lib.sh"
RUNS="${BENCH_RUNS:-3}"
local_ctl
FIGURE_FORMAT='%-42s %7.2fs'

rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
ctl render --out "$rendered" >/dev/null
compose() { docker-compose -p masstock --env-file "$REPO/.env.local" -f "$rendered/docker-compose.yml" "$@"; }

# The same verdict for both: `masstockctl health` (containers running and passing their health
# test, each service's HTTP check, Redis, PostgreSQL, the worker's heartbeat, the sites via nginx).
all_healthy() { ctl health --timeout 2s >/dev/null 2>&1; }

for run in $(seq 1 "$RUNS"); do
  echo "bench: run $run/$RUNS" >&2
  ctl down >/dev/null
  compose down --remove-orphans >/dev/null 2>&1 || true

  start=$(now); ctl deploy --no-build >/dev/null; record "masstockctl deploy, full, to healthy" "$(elapsed "$start")"
  all_healthy || { echo "bench: \`masstockctl health\` fails right after deploy" >&2; exit 1; }
  start=$(now); ctl deploy --no-build >/dev/null; record "masstockctl deploy, no change" "$(elapsed "$start")"
  ctl down >/dev/null

  start=$(now); compose up -d >/dev/null 2>&1; record "docker-compose up -d, until it returns" "$(elapsed "$start")"
  until all_healthy; do sleep 0.2; done
  record "docker-compose up -d, until all healthy" "$(elapsed "$start")"
  start=$(now); compose up -d >/dev/null 2>&1; record "docker-compose up -d, no change" "$(elapsed "$start")"
  compose down >/dev/null 2>&1
done
ctl deploy --no-build >/dev/null

mkdir -p "$BENCH_DIR/results"
out="$BENCH_DIR/results/deploy-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
  echo "# bench/deploy.sh, $RUNS runs, $(nproc) cores, $(docker version --format 'engine {{.Server.Version}} API {{.Server.APIVersion}}'), $(docker-compose version --short)"
  summarize "masstockctl deploy, full, to healthy" "docker-compose up -d, until it returns" "docker-compose up -d, until all healthy" \
    "masstockctl deploy, no change" "docker-compose up -d, no change"
} | tee "$out"
echo "bench: written to $out" >&2
