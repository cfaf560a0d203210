#!/usr/bin/env bash
# Times `masstockctl queue ls` (and `queue show`) on a queue of 100,000 jobs; the issue wants `ls` under a second.
#
# Usage: bench/queue.sh
#        BENCH_JOBS=200000 BENCH_RUNS=10 bench/queue.sh
#
# What it does, in order: builds masstockctl (release); fills `workflow-queue` under a prefix of
# its own (`bench-queue-<pid>`) with BENCH_JOBS jobs written by Python's bullmq (`addBulk`, 1,000
# jobs per call): 98 % prioritized as the API adds them (half premium, half standard), 1 % plain
# (the `wait` list) and 1 % delayed; then runs `masstockctl queue ls --prefix <prefix>`, as text
# and with `--json`, and `queue show` of one job, BENCH_RUNS times each, and prints the wall
# times (min, median, max) with the size of the keyspace `ls` had to scan. On exit, success or
# not, it deletes its keys.
#
# Settings (environment):
#   BENCH_JOBS         jobs to add (default 100000)
#   BENCH_RUNS         timed runs per command (default 5)
#   BENCH_REDIS_URL    default redis://127.0.0.1:6379
#   BENCH_NO_BUILD=1   use target/release/masstockctl as it is
set -euo pipefail

source "$(dirname "$0")/lib.sh"
JOBS="${BENCH_JOBS:-100000}"
RUNS="${BENCH_RUNS:-5}"
REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
PREFIX="bench-queue-$$"
CTL="$REPO/target/release/masstockctl"
PYTHON="$REPO/.venv/bin/python"

require_tools cargo redis-cli
[[ -x $PYTHON ]] || die "no Python venv with bullmq at $PYTHON (run script/bootstrap)"
require_redis "$REDIS_URL"

cleanup() {
  log "deleting the keys under $PREFIX:"
  redis-cli -u "$REDIS_URL" --scan --pattern "$PREFIX:*" \
    | xargs -r -n 1000 redis-cli -u "$REDIS_URL" unlink >/dev/null || true
}
trap cleanup EXIT

if [[ ${BENCH_NO_BUILD:-} != 1 ]]; then
  log "building masstockctl (release)"
  (cd "$REPO" && cargo build --release -q -p masstockctl)
fi
[[ -x $CTL ]] || die "$CTL is missing (unset BENCH_NO_BUILD)"

log "adding $JOBS jobs under $PREFIX:workflow-queue with Python's bullmq"
fill_started=$(date +%s%N)
"$PYTHON" - "$REDIS_URL" "$PREFIX" "$JOBS" <<'PYTHON'
import asyncio, sys, uuid
from bullmq import Queue

url, prefix, total = sys.argv[1], sys.argv[2], int(sys.argv[3])

def job(n):
    execution_id = str(uuid.uuid4())
    data = {"executionId": execution_id, "prompts": ["a red fox", "a blue whale"], "config": {"aspectRatio": "1:1"}}
    opts = {"jobId": execution_id, "removeOnComplete": True, "removeOnFail": False}
    if n % 100 == 0:
        opts["delay"] = 3_600_000
    elif n % 100 != 1:
        opts["priority"] = 1 if n % 2 else 2
    return {"name": "execute-workflow", "data": data, "opts": opts}

async def main():
    queue = Queue("workflow-queue", {"connection": url, "prefix": prefix})
    for start in range(0, total, 1000):
        await queue.addBulk([job(n) for n in range(start, min(start + 1000, total))])
    await queue.close()

asyncio.run(main())
PYTHON
fill_ms=$((($(date +%s%N) - fill_started) / 1000000))
keys=$(redis-cli -u "$REDIS_URL" dbsize)
log "filled in ${fill_ms} ms; the database holds $keys keys"

one_job=$(redis-cli -u "$REDIS_URL" zrange "$PREFIX:workflow-queue:prioritized" 0 0)

# time_runs LABEL COMMAND...: runs the command RUNS times, prints min / median / max in ms.
time_runs() {
  local label=$1
  shift
  local times=() started
  "$@" >/dev/null # unmeasured: warms the page cache
  for ((run = 0; run < RUNS; run++)); do
    started=$(date +%s%N)
    "$@" >/dev/null
    times+=($((($(date +%s%N) - started) / 1000)))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v label="$label" '
    { t[NR] = $1 }
    END { printf "%-34s %9.1f %9.1f %9.1f\n", label, t[1] / 1000, t[int((NR + 1) / 2)] / 1000, t[NR] / 1000 }'
}

export REDIS_URL
echo
echo "masstockctl queue, $JOBS jobs, keyspace of $keys keys, $RUNS runs each (wall time, ms)"
printf '%-34s %9s %9s %9s\n' command min median max
printf '%s\n' "--------------------------------------------------------------------"
time_runs "queue ls" "$CTL" queue ls --prefix "$PREFIX"
time_runs "queue ls --json" "$CTL" --json queue ls --prefix "$PREFIX"
time_runs "queue show <job>" "$CTL" queue show "$one_job" --prefix "$PREFIX"
echo
"$CTL" queue ls --prefix "$PREFIX"
