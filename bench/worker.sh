#!/usr/bin/env bash
# Benchmarks job throughput: our queue consumer (no-op handler) and our whole worker against Node's BullMQ doing nothing, on the same Redis.
#
# Usage: bench/worker.sh                          (10,000 jobs, concurrency 3 and 50, 2 repetitions)
#        BENCH_REPEATS=3 BENCH_JOBS=20000 bench/worker.sh
#
# Three consumers, each run on a queue of BENCH_JOBS jobs enqueued beforehand (not timed), at
# each concurrency:
#   node         bench/node-bullmq/consumer.js: Node's bullmq 6.7.0 + ioredis, a processor that
#                returns {} at once (the reference's stack, doing nothing)
#   rust-noop    services/queue/examples/noop_consumer.rs: masstock-queue's WorkflowConsumer
#                (bullmq-official underneath), a handler that returns {} at once
#   rust-worker  masstock-worker (release) against a zero-latency fake Gemini: per job, one
#                execution of one prompt, so PostgreSQL updates, an image written to a temporary
#                UPLOADS_DIR, progress in Redis and the shared Gemini rate limiter
# The jobs are the API's (`execute-workflow`, {"executionId", "prompts", "config"}, priority 2,
# 3 attempts, removed on completion), added with Node's addBulk. Runs are interleaved (the order
# of the targets flips every repetition). Each run is timed from outside by bench/node-bullmq/
# watch.js, the same way for all three: from the first job taken to the queue drained. The no-op
# consumers also time themselves (first job taken to last job completed) as a cross-check.
# Prints a table (jobs/s per run, median, ratio to node) and writes bench/results/worker-<time>.txt.
# On exit, success or not, it stops what it started, deletes its Redis keys and drops its database.
#
# Settings (environment):
#   BENCH_JOBS           jobs per run (default 10000)
#   BENCH_CONCURRENCIES  default "3 50"
#   BENCH_REPEATS        runs of each target at each concurrency (default 2)
#   BENCH_TARGETS        default "node rust-noop rust-worker"
#   BENCH_PG_URL         admin connection, a role with CREATEDB
#                        (default postgres://masstock:masstock@127.0.0.1:5432/masstock_test)
#   BENCH_REDIS_URL      default redis://127.0.0.1:6379
#   BENCH_UPLOADS_DIR    where rust-worker's images go (default: a temporary directory under
#                        TMPDIR; /dev/shm takes the file system out of the measurement)
#   BENCH_NO_BUILD=1     use the binaries already built
set -euo pipefail

source "$(dirname "$0")/lib.sh"
RESULTS_DIR="$BENCH_DIR/results"
NODE_DIR="$BENCH_DIR/node-bullmq"

JOBS="${BENCH_JOBS:-10000}"
CONCURRENCIES="${BENCH_CONCURRENCIES:-3 50}"
REPEATS="${BENCH_REPEATS:-2}"
TARGETS="${BENCH_TARGETS:-node rust-noop rust-worker}"
PG_URL="${BENCH_PG_URL:-postgres://masstock:masstock@127.0.0.1:5432/masstock_test}"
REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
UPLOADS_PARENT="${BENCH_UPLOADS_DIR:-}"

WORKER_BIN="$REPO/target/release/masstock-worker"
FAKE_GEMINI_BIN="$REPO/target/release/fake-gemini"
NOOP_BIN="$REPO/target/release/examples/noop_consumer"
DB_NAME="masstock_bench_worker_$$"
DATABASE_URL="${PG_URL%/*}/$DB_NAME"
# Every run has its own prefix under this one: bull-bench-worker-<pid>-<target>-c<n>-r<n>.
PREFIX_BASE="bull-bench-worker-$$"
# The Gemini quota's log is outside the prefix (masstock_worker::gemini_quota::key).
QUOTA_BASE="masstock:gemini-requests:$PREFIX_BASE"

require_tools cargo curl node npm psql redis-cli python3
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || die "BENCH_JOBS \`$JOBS\` is not a positive integer"
[[ $REPEATS =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPEATS \`$REPEATS\` is not a positive integer"
for concurrency in $CONCURRENCIES; do
  [[ $concurrency =~ ^[1-9][0-9]*$ ]] || die "BENCH_CONCURRENCIES: \`$concurrency\` is not a positive integer"
done
for target in $TARGETS; do
  [[ $target =~ ^(node|rust-noop|rust-worker)$ ]] || die "BENCH_TARGETS: unknown target \`$target\` (node, rust-noop, rust-worker)"
done
[[ -z $UPLOADS_PARENT || -d $UPLOADS_PARENT ]] || die "BENCH_UPLOADS_DIR \`$UPLOADS_PARENT\` is not a directory"
require_postgres "$PG_URL"
require_redis "$REDIS_URL"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/masstock-bench-worker.XXXXXX")"
UPLOADS_PARENT="${UPLOADS_PARENT:-$WORK}"
RUNS_FILE="$WORK/runs.jsonl"
FAKE_GEMINI_PID=""
WATCH_PID=""
CONSUMER_PID=""
DB_CREATED=""
CURRENT_LOG=""

cleanup() {
  local status=$?
  set +e
  trap - EXIT INT TERM
  stop "$WATCH_PID"
  stop "$CONSUMER_PID"
  stop "$FAKE_GEMINI_PID"
  delete_keys "$PREFIX_BASE-*"
  delete_keys "$QUOTA_BASE-*"
  rm -rf "$UPLOADS_PARENT"/masstock-bench-uploads-$$-*
  finish "$status" "$CURRENT_LOG"
}
on_exit cleanup

# sql <statement>: runs it on the benchmark's database; prints the rows, unaligned.
sql() {
  psql "$DATABASE_URL" -qAt -v ON_ERROR_STOP=1 -c "$1"
}

# others_busy: how busy the CPUs were over the last second, in % of all of them, while nothing of
# this benchmark ran: the other users of the machine (compilers, tests).
others_busy() {
  local a b
  a="$(head -n 1 /proc/stat)"
  sleep 1
  b="$(head -n 1 /proc/stat)"
  awk -v a="$a" -v b="$b" 'BEGIN {
    n = split(a, x); split(b, y); total = 0; idle = 0
    for (i = 2; i <= n; i++) { d = y[i] - x[i]; total += d; if (i == 5 || i == 6) idle += d }
    printf "%.0f", total ? 100 * (total - idle) / total : 0 }'
}

# redis_cpu: seconds of CPU Redis has used (user + system).
redis_cpu() {
  redis-cli -u "$REDIS_URL" info cpu | tr -d '\r' |
    awk -F: '$1 == "used_cpu_user" || $1 == "used_cpu_sys" { total += $2 } END { printf "%.6f", total }'
}

# process_cpu <pid>: seconds of CPU the process has used so far (user + system, every thread).
process_cpu() {
  local stat ticks
  stat="$(cat "/proc/$1/stat")" || return 1
  ticks="$(getconf CLK_TCK)"
  # Fields 14 and 15, counted after the command name, which is in parentheses and may hold spaces.
  awk -v ticks="$ticks" '{ printf "%.2f", ($12 + $13) / ticks }' <<<"${stat##*) }"
}

# --- Build ------------------------------------------------------------------------------------
if [[ ${BENCH_NO_BUILD:-} != 1 ]]; then
  log "building masstock-worker, fake-gemini and the noop_consumer example (release)"
  (cd "$REPO" && cargo build --release --quiet -p masstock-worker -p masstock-fake-gemini --bins) ||
    die "cargo build --release -p masstock-worker -p masstock-fake-gemini failed"
  (cd "$REPO" && cargo build --release --quiet -p masstock-queue --example noop_consumer) ||
    die "cargo build --release -p masstock-queue --example noop_consumer failed"
fi
for binary in "$WORKER_BIN" "$FAKE_GEMINI_BIN" "$NOOP_BIN"; do
  [[ -x $binary ]] || die "$binary is missing: run without BENCH_NO_BUILD=1"
done
if [[ ! -d $NODE_DIR/node_modules ]]; then
  log "installing bench/node-bullmq's packages (npm ci)"
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error) >&2 || die "npm ci in bench/node-bullmq failed"
fi
NODE_BULLMQ_VERSION="$(node -p 'require(process.argv[1]).version' "$NODE_DIR/node_modules/bullmq/package.json")"
NODE_IOREDIS_VERSION="$(node -p 'require(process.argv[1]).version' "$NODE_DIR/node_modules/ioredis/package.json")"

# --- Database, fake Gemini --------------------------------------------------------------------
log "creating database $DB_NAME"
psql "$PG_URL" -qAtc "create database $DB_NAME" >/dev/null
DB_CREATED=1
for migration in "$REPO"/services/schema/migrations/*.sql; do
  psql "$DATABASE_URL" -q -v ON_ERROR_STOP=1 -1 -f "$migration" >"$WORK/migrate.log" 2>&1 || {
    cat "$WORK/migrate.log" >&2
    die "applying $migration failed"
  }
done
USER_ID="$(sql "insert into users (email, password_hash) values ('bench-$$@example.com', '\$argon2id\$v=19\$m=19456,t=2,p=1\$c2FsdA\$aGFzaA') returning id")"
WORKFLOW_ID="$(sql "select id from workflows order by created_at limit 1")"

GEMINI_KEY="$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
FAKE_GEMINI_OUT="$WORK/fake-gemini.out"
CURRENT_LOG="$WORK/fake-gemini.log"
RUST_LOG=warn "$FAKE_GEMINI_BIN" --port 0 --api-key "$GEMINI_KEY" >"$FAKE_GEMINI_OUT" 2>"$WORK/fake-gemini.log" &
FAKE_GEMINI_PID=$!
for _ in $(seq 100); do
  grep -q '^listening on ' "$FAKE_GEMINI_OUT" 2>/dev/null && break
  kill -0 "$FAKE_GEMINI_PID" 2>/dev/null || die "fake-gemini exited before listening"
  sleep 0.1
done
GEMINI_URL="$(sed -n 's/^listening on //p' "$FAKE_GEMINI_OUT")"
[[ -n $GEMINI_URL ]] || die "fake-gemini did not say where it listens within 10 s"
log "fake Gemini on $GEMINI_URL (latency 0)"

# --- Runs -------------------------------------------------------------------------------------
# run <target> <concurrency> <repetition>: one timed run; appends a JSON line to $RUNS_FILE.
run() {
  local target=$1 concurrency=$2 repetition=$3
  local name="$target-c$concurrency-r$repetition"
  local prefix="$PREFIX_BASE-$name"
  local ids="" uploads="$UPLOADS_PARENT/masstock-bench-uploads-$$-$name"
  local watch_out="$WORK/watch-$name.out" consumer_out="$WORK/consumer-$name.out"
  local consumer_log="$WORK/consumer-$name.log" cpu=""

  if [[ $target == rust-worker ]]; then
    ids="$WORK/ids-$name.txt"
    sql "truncate execution_results, execution_prompt_failures, executions" >/dev/null
    sql "insert into executions (user_id, workflow_id, prompts, config, progress_total)
         select '$USER_ID', '$WORKFLOW_ID', '[\"a lighthouse at dusk\"]', '{\"aspectRatio\": \"1:1\"}', 1
         from generate_series(1, $JOBS) returning id" >"$ids"
    sql "vacuum analyze executions" >/dev/null
    curl -fsS -o /dev/null -X POST "$GEMINI_URL/_fake/reset" || die "POST $GEMINI_URL/_fake/reset failed"
  fi
  node "$NODE_DIR/enqueue.js" "$REDIS_URL" "$prefix" "$JOBS" ${ids:+"$ids"} >/dev/null || die "enqueueing $JOBS jobs failed"

  local busy
  busy="$(others_busy)"
  CURRENT_LOG="$WORK/watch-$name.log"
  node "$NODE_DIR/watch.js" "$REDIS_URL" "$prefix" "$JOBS" >"$watch_out" 2>"$CURRENT_LOG" &
  WATCH_PID=$!
  until grep -q '^ready$' "$watch_out" 2>/dev/null; do
    kill -0 "$WATCH_PID" 2>/dev/null || die "the watcher of $name exited before it was ready"
    sleep 0.02
  done
  local redis_before
  redis_before="$(redis_cpu)"

  CURRENT_LOG="$consumer_log"
  case $target in
    node)
      node "$NODE_DIR/consumer.js" "$REDIS_URL" "$prefix" "$concurrency" "$JOBS" \
        >"$consumer_out" 2>"$consumer_log" &
      ;;
    rust-noop)
      "$NOOP_BIN" "$REDIS_URL" "$prefix" "$concurrency" "$JOBS" \
        >"$consumer_out" 2>"$consumer_log" &
      ;;
    rust-worker)
      mkdir -p "$uploads"
      env DATABASE_URL="$DATABASE_URL" \
        REDIS_URL="$REDIS_URL" \
        QUEUE_PREFIX="$prefix" \
        WORKER_ID="bench-worker" \
        WORKER_CONCURRENCY="$concurrency" \
        GEMINI_API_KEY="$GEMINI_KEY" \
        GEMINI_BASE_URL="$GEMINI_URL" \
        GEMINI_RPM=1000000 \
        UPLOADS_DIR="$uploads" \
        APP_ENV=production \
        SHUTDOWN_GRACE_SECONDS=2 \
        "$WORKER_BIN" run >"$consumer_out" 2>"$consumer_log" &
      ;;
  esac
  CONSUMER_PID=$!

  local status=0
  wait "$WATCH_PID" || status=$?
  WATCH_PID=""
  ((status == 0)) || die "$name: the watcher failed: $(cat "$WORK/watch-$name.log")"
  local redis_after
  redis_after="$(redis_cpu)"
  CURRENT_LOG="$consumer_log"
  if [[ $target == rust-worker ]]; then
    cpu="$(process_cpu "$CONSUMER_PID")" || die "$name: the worker exited before it was stopped"
    # It may be parked on BullMQ's blocking wait for new jobs (up to 5 s) before it notices.
    stop "$CONSUMER_PID" 15
  else
    local tries=0
    while kill -0 "$CONSUMER_PID" 2>/dev/null && ((tries < 300)); do
      sleep 0.1
      tries=$((tries + 1))
    done
    kill -0 "$CONSUMER_PID" 2>/dev/null && die "$name: the consumer still runs 30 s after the queue drained"
    status=0
    wait "$CONSUMER_PID" || status=$?
    ((status == 0)) || die "$name: the consumer exited with status $status"
  fi
  CONSUMER_PID=""

  local check="null"
  if [[ $target == rust-worker ]]; then
    check="$(sql "select json_build_object(
        'completed', count(*) filter (where status = 'completed'),
        'results', (select count(*) from execution_results),
        'seconds', extract(epoch from max(finished_at) - min(started_at)))
      from executions")"
    local counts
    counts="$(sql "select count(*) filter (where status = 'completed'), (select count(*) from execution_results) from executions")"
    [[ $counts == "$JOBS|$JOBS" ]] ||
      die "$name: the queue drained, but of $JOBS executions ${counts%|*} are completed and ${counts#*|} have an image"
  fi
  python3 - "$target" "$concurrency" "$repetition" "$busy" "$redis_before" "$redis_after" \
    "$(sed -n 2p "$watch_out")" "$(tail -n 1 "$consumer_out" 2>/dev/null)" "$cpu" \
    "$check" >>"$RUNS_FILE" <<'PY'
import json, sys

target, concurrency, repetition, busy, redis_before, redis_after, watch, inside, cpu, check = sys.argv[1:]
print(json.dumps({
    "target": target,
    "concurrency": int(concurrency),
    "repetition": int(repetition),
    "others_busy_percent": int(busy),
    "redis_cpu_seconds": float(redis_after) - float(redis_before),
    "watch": json.loads(watch),
    "inside": json.loads(inside) if target != "rust-worker" else None,
    # The no-op consumers measure their CPU over the timed span; the worker's is its whole life.
    "consumer_cpu_seconds": float(cpu) if cpu else json.loads(inside)["cpu_seconds"],
    "database": json.loads(check),
}))
PY
  delete_keys "$prefix:*"
  delete_keys "masstock:gemini-requests:$prefix"
  log "$name: $(tail -n 1 "$RUNS_FILE" | python3 -c 'import json, sys; run = json.load(sys.stdin)
print("{:,.0f} jobs/s (others used {} % of the CPUs before)".format(run["watch"]["jobs_per_second"], run["others_busy_percent"]))')"
}

LOAD_BEFORE="$(uptime)"
log "load before: $LOAD_BEFORE"
for repetition in $(seq "$REPEATS"); do
  for concurrency in $CONCURRENCIES; do
    order="$TARGETS"
    if ((repetition % 2 == 0)); then
      order="$(printf '%s\n' $TARGETS | tac | tr '\n' ' ')"
    fi
    for target in $order; do
      run "$target" "$concurrency" "$repetition"
    done
  done
done
LOAD_AFTER="$(uptime)"

# --- Report -----------------------------------------------------------------------------------
mkdir -p "$RESULTS_DIR"
RESULT_FILE="$RESULTS_DIR/worker-$(date -u +%Y%m%dT%H%M%SZ).txt"
export RUNS_FILE RESULT_FILE JOBS REPO LOAD_BEFORE LOAD_AFTER NODE_BULLMQ_VERSION NODE_IOREDIS_VERSION REDIS_URL
python3 - <<'PY'
import json, os, platform, statistics, subprocess

runs = [json.loads(line) for line in open(os.environ["RUNS_FILE"])]
jobs = int(os.environ["JOBS"])
targets = list(dict.fromkeys(run["target"] for run in runs))
concurrencies = list(dict.fromkeys(run["concurrency"] for run in runs))


def command(*args):
    try:
        return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def of(target, concurrency):
    return [run for run in runs if run["target"] == target and run["concurrency"] == concurrency]


def median(target, concurrency, value):
    values = [value(run) for run in of(target, concurrency)]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def rate(run):
    return run["watch"]["jobs_per_second"]


lines = []
say = lines.append
say(f"{jobs:,} jobs per run, enqueued beforehand; timed from the first job taken to the queue drained (watch.js)")
header = f"{'target':<12} {'conc':>4} {'jobs/s per run':>24} {'median':>9} {'vs node':>8} {'CPU µs/job':>11} {'Redis µs/job':>13}"
say(header)
say("-" * len(header))
for concurrency in concurrencies:
    node = median("node", concurrency, rate)
    for target in targets:
        chosen = of(target, concurrency)
        if not chosen:
            continue
        per_run = " ".join(f"{rate(run):>7,.0f}" for run in sorted(chosen, key=lambda run: run["repetition"]))
        middle = median(target, concurrency, rate)
        versus = "1.00x" if target == "node" else (f"{middle / node:.2f}x" if node else "-")
        cpu = median(target, concurrency, lambda run: run["consumer_cpu_seconds"])
        redis = median(target, concurrency, lambda run: run["redis_cpu_seconds"])
        say(f"{target:<12} {concurrency:>4} {per_run:>24} {middle:>9,.0f} {versus:>8} "
            f"{(cpu * 1e6 / jobs if cpu is not None else float('nan')):>11,.0f} {redis * 1e6 / jobs:>13,.0f}")
say("")
say("Each run (in the order they ran):")
for run in runs:
    inside = run["inside"]
    database = run["database"]
    extra = []
    if inside:
        extra.append(f"inside {inside['jobs_per_second']:,.0f} jobs/s ({inside['seconds']:.3f} s)")
    if database:
        extra.append(f"rows {database['completed']} completed, {database['results']} images, "
                     f"first started to last finished {database['seconds']:.3f} s")
    say(f"  {run['target']:<12} c{run['concurrency']:<3} r{run['repetition']}  "
        f"{run['watch']['jobs_per_second']:>7,.0f} jobs/s ({run['watch']['seconds']:.3f} s), "
        f"failed {run['watch']['failed']}; others used {run['others_busy_percent']:>3} % of the CPUs before; "
        + "; ".join(extra))
say("")
say(f"load before: {os.environ['LOAD_BEFORE']}")
say(f"load after:  {os.environ['LOAD_AFTER']}")
cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
say(f"machine: {os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}")
redis_version = next((line.split(":", 1)[1] for line in command("redis-cli", "-u", os.environ["REDIS_URL"], "info", "server").splitlines()
                      if line.startswith("redis_version:")), "?")
say(f"node {command('node', '--version')}, bullmq {os.environ['NODE_BULLMQ_VERSION']}, ioredis {os.environ['NODE_IOREDIS_VERSION']}; "
    f"redis {redis_version.strip()}")
commit = command("git", "-C", os.environ["REPO"], "rev-parse", "--short", "HEAD")
if commit == "?":
    say(f"git: {os.environ['REPO']} is not a git checkout")
else:
    dirty = command("git", "-C", os.environ["REPO"], "status", "--porcelain", "--untracked-files=no")
    say(f"git {commit}{' (uncommitted changes)' if dirty else ''}")

text = "\n".join(lines) + "\n"
print()
print(text, end="")
with open(os.environ["RESULT_FILE"], "w") as out:
    out.write(text)

problems = [run for run in runs if run["watch"]["failed"]]
for run in problems:
    print(f"bench: WARNING: {run['target']} c{run['concurrency']} r{run['repetition']}: {run['watch']['failed']} jobs failed")
PY
log "results in ${RESULT_FILE#"$REPO/"}; took ${SECONDS}s"
