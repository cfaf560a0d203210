#!/usr/bin/env bash
# Benchmarks the API with wrk (GET /health, authenticated GET /api/v1/executions/{id}) beside a minimal hyper "hello" server as the ceiling.
#
# Usage: bench/api.sh                       (15 s per target)
#        BENCH_DURATION=30s bench/api.sh
#
# What it does, in order: builds `masstock-api` and bench/hello (release); creates a fresh
# database masstock_bench_<pid>, migrates it, adds a user; starts the API and the hello server on
# free ports; logs in and creates one execution; runs wrk (64 connections, 2 threads, --latency)
# against hello `/`, API `/health` and API `/api/v1/executions/{id}` with `Authorization: Bearer`;
# prints a table (requests/s, p99, non-2xx, ratio to hello) and writes bench/results/latest.json.
# On exit, success or not, it stops both servers, deletes its Redis keys and drops its database.
#
# Settings (environment):
#   BENCH_DURATION     wrk duration per target (default 15s; wrk syntax: 30, 30s, 2m)
#   BENCH_WARMUP       unmeasured wrk run before each target (default 2s; 0 to skip)
#   BENCH_CONNECTIONS  default 64        BENCH_THREADS  default 2
#   BENCH_PG_URL       admin connection, a role with CREATEDB
#                      (default postgres://masstock:masstock@127.0.0.1:5432/masstock_test)
#   BENCH_REDIS_URL    default redis://127.0.0.1:6379
#   BENCH_NO_BUILD=1   use the binaries already built
set -euo pipefail

source "$(dirname "$0")/lib.sh"
RESULTS_DIR="$BENCH_DIR/results"
HELLO_DIR="$BENCH_DIR/hello"

DURATION="${BENCH_DURATION:-15s}"
WARMUP="${BENCH_WARMUP:-2s}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
THREADS="${BENCH_THREADS:-2}"
PG_URL="${BENCH_PG_URL:-postgres://masstock:masstock@127.0.0.1:5432/masstock_test}"
REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}"

API_BIN="$REPO/target/release/masstock-api"
HELLO_BIN="$HELLO_DIR/target/release/bench-hello"
DB_NAME="masstock_bench_$$"
DATABASE_URL="${PG_URL%/*}/$DB_NAME"
QUEUE_PREFIX="bull-bench-$$"
RATE_LIMIT_PREFIX="masstock-bench-$$:ratelimit"
# A workflow id the API knows (DESIGN.md's example workflow).
WORKFLOW_ID="0b6f2c1e-6a43-4c1f-9a57-2d1e5f0c7a10"
EMAIL="bench-$$@example.com"

require_tools cargo wrk curl psql redis-cli python3
require_postgres "$PG_URL"
require_redis "$REDIS_URL"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/masstock-bench.XXXXXX")"
API_LOG="$WORK/api.log"
HELLO_LOG="$WORK/hello.log"
API_PID=""
HELLO_PID=""
WRK_PID=""
DB_CREATED=""

cleanup() {
  local status=$?
  set +e
  trap - EXIT INT TERM
  stop "$WRK_PID"
  stop "$API_PID"
  stop "$HELLO_PID"
  delete_keys "$QUEUE_PREFIX:*"
  delete_keys "$RATE_LIMIT_PREFIX:*"
  finish "$status" "$API_LOG"
}
on_exit cleanup

# free_port: a TCP port nobody listens on right now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for <pid> <url> <what>: poll the URL until it answers 200, for at most 30 s.
wait_for() {
  local pid=$1 url=$2 what=$3 tries=0
  until curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || die "$what exited before answering on $url"
    ((tries < 300)) || die "$what did not answer on $url within 30 s"
    sleep 0.1
    tries=$((tries + 1))
  done
}

# --- Build ------------------------------------------------------------------------------------
if [[ ${BENCH_NO_BUILD:-} != 1 ]]; then
  log "building masstock-api (release)"
  (cd "$REPO" && cargo build --release --quiet -p masstock-api) || die "cargo build --release -p masstock-api failed"
  log "building bench/hello (release)"
  cargo build --release --quiet --manifest-path "$HELLO_DIR/Cargo.toml" --target-dir "$HELLO_DIR/target" ||
    die "building bench/hello failed"
fi
[[ -x $API_BIN ]] || die "$API_BIN is missing: cargo build --release -p masstock-api"
[[ -x $HELLO_BIN ]] || die "$HELLO_BIN is missing: cargo build --release --manifest-path bench/hello/Cargo.toml"

# --- Database and user ------------------------------------------------------------------------
log "creating database $DB_NAME"
psql "$PG_URL" -qAtc "create database $DB_NAME" >/dev/null
DB_CREATED=1
DATABASE_URL="$DATABASE_URL" "$API_BIN" migrate >"$WORK/migrate.log" 2>&1 || {
  cat "$WORK/migrate.log" >&2
  die "masstock-api migrate failed"
}
PASSWORD="$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')"
USER_ID="$(printf '%s' "$PASSWORD" | DATABASE_URL="$DATABASE_URL" "$API_BIN" user add --email "$EMAIL" --password-stdin 2>"$WORK/user.log")" || {
  cat "$WORK/user.log" >&2
  die "masstock-api user add failed"
}
log "user $EMAIL ($USER_ID)"

# --- Servers ----------------------------------------------------------------------------------
API_PORT="$(free_port)"
HELLO_PORT="$(free_port)"
while [[ $HELLO_PORT == "$API_PORT" ]]; do HELLO_PORT="$(free_port)"; done
API="http://127.0.0.1:$API_PORT"
HELLO="http://127.0.0.1:$HELLO_PORT"

mkdir -p "$WORK/uploads"
env DATABASE_URL="$DATABASE_URL" \
  REDIS_URL="$REDIS_URL" \
  JWT_SECRET="$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')" \
  CORS_ORIGIN="https://app.masstock.localhost:8443" \
  PORT="$API_PORT" \
  APP_ENV=production \
  UPLOADS_DIR="$WORK/uploads" \
  QUEUE_PREFIX="$QUEUE_PREFIX" \
  RATE_LIMIT_GENERAL="1000000/60s" \
  RATE_LIMIT_AUTH="1000000/60s" \
  RATE_LIMIT_PREFIX="$RATE_LIMIT_PREFIX" \
  SHUTDOWN_GRACE_SECONDS=2 \
  "$API_BIN" serve >"$API_LOG" 2>&1 &
API_PID=$!
"$HELLO_BIN" "$HELLO_PORT" >"$HELLO_LOG" 2>&1 &
HELLO_PID=$!
wait_for "$HELLO_PID" "$HELLO/" "the hello server"
wait_for "$API_PID" "$API/health/ready" "the API"
log "API on $API (pid $API_PID), hello on $HELLO (pid $HELLO_PID)"

# login: prints a fresh access token (they live 15 minutes).
login() {
  local body headers
  body="$(python3 -c 'import json, sys; print(json.dumps({"email": sys.argv[1], "password": sys.argv[2]}))' "$EMAIL" "$PASSWORD")"
  headers="$(curl -sS -o "$WORK/login.json" -D - -H 'content-type: application/json' --data "$body" "$API/api/v1/auth/login")" ||
    die "POST /api/v1/auth/login: no answer"
  local token
  token="$(printf '%s\n' "$headers" | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: access_token=\([^;]*\).*/\1/p' | head -n 1)"
  [[ -n $token ]] || die "POST /api/v1/auth/login set no access_token cookie: $(head -n 1 <<<"$headers") $(cat "$WORK/login.json")"
  printf '%s' "$token"
}

TOKEN="$(login)"
status="$(curl -sS -o "$WORK/execution.json" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' --data "{\"workflowId\":\"$WORKFLOW_ID\",\"prompts\":[\"a cat\"]}" \
  "$API/api/v1/executions")"
[[ $status == 202 ]] || die "POST /api/v1/executions answered $status: $(cat "$WORK/execution.json")"
EXECUTION_ID="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/execution.json")"
log "execution $EXECUTION_ID"

# check <url> [curl args...]: the target answers 200 before wrk hammers it.
check() {
  local url=$1 status
  shift
  status="$(curl -sS -o "$WORK/check.out" -w '%{http_code}' "$@" "$url")" || die "GET $url: no answer"
  [[ $status == 200 ]] || die "GET $url answered $status: $(head -c 300 "$WORK/check.out")"
}

# --- wrk --------------------------------------------------------------------------------------
mkdir -p "$RESULTS_DIR"
# bench <name> <url> [wrk args...]: warm-up, then the measured run into results/wrk-<name>.txt.
bench() {
  local name=$1 url=$2
  shift 2
  if [[ $WARMUP != 0 && $WARMUP != 0s ]]; then
    run_wrk -d "$WARMUP" "$@" "$url" >/dev/null || die "wrk failed against $url (warm-up)"
  fi
  log "wrk $name: $url, $CONNECTIONS connections, $THREADS threads, $DURATION"
  run_wrk -d "$DURATION" --latency "$@" "$url" >"$RESULTS_DIR/wrk-$name.txt" ||
    die "wrk failed against $url: $(cat "$RESULTS_DIR/wrk-$name.txt")"
}

# run_wrk <wrk args...>: in the background and waited for, so a SIGTERM to this script is
# handled at once rather than when wrk finishes.
run_wrk() {
  wrk -t "$THREADS" -c "$CONNECTIONS" "$@" &
  WRK_PID=$!
  wait "$WRK_PID"
  local status=$?
  WRK_PID=""
  return "$status"
}

EXECUTION_URL="$API/api/v1/executions/$EXECUTION_ID"
check "$HELLO/"
check "$API/health"
check "$EXECUTION_URL" -H "Authorization: Bearer $TOKEN"

bench hello "$HELLO/"
bench health "$API/health"
# A token from just now, so a long BENCH_DURATION cannot outlive it.
TOKEN="$(login)"
bench execution "$EXECUTION_URL" -H "Authorization: Bearer $TOKEN"

# The API's own count of answers by status, for the two routes (warm-ups and checks included).
curl -fsS "$API/metrics" >"$WORK/metrics.txt" || warn "could not read $API/metrics"

# --- Report -----------------------------------------------------------------------------------
API_LOG_LINES="$(wc -l <"$API_LOG")"
API_LOG_WARNINGS="$(grep -c '"level":"WARN"' "$API_LOG" || true)"
API_LOG_ERRORS="$(grep -c '"level":"ERROR"' "$API_LOG" || true)"
grep -E '"level":"(WARN|ERROR)"' "$API_LOG" | head -n 1000 >"$WORK/api-problems.log" || true

export RESULTS_DIR DURATION WARMUP CONNECTIONS THREADS WORK API_LOG_LINES API_LOG_WARNINGS API_LOG_ERRORS REPO
python3 - <<'PY'
import json, os, platform, re, subprocess, sys, datetime

results = os.environ["RESULTS_DIR"]
work = os.environ["WORK"]
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def millis(text):
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        sys.exit(f"bench: ERROR: cannot read the latency `{text}` in wrk's output")
    return float(match.group(1)) * UNITS[match.group(2)]


def parse(name):
    text = open(os.path.join(results, f"wrk-{name}.txt")).read()

    def find(pattern, required=True):
        match = re.search(pattern, text, re.M)
        if not match and required:
            sys.exit(f"bench: ERROR: wrk's output for {name} has no `{pattern}`:\n{text}")
        return match

    totals = find(r"^\s*(\d+) requests in ([\d.]+\w+)")
    socket = find(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", required=False)
    non2xx = find(r"Non-2xx or 3xx responses: (\d+)", required=False)
    return {
        "target": name,
        "requests_per_sec": float(find(r"^Requests/sec:\s+([\d.]+)").group(1)),
        "latency_p50_ms": round(millis(find(r"^\s+50%\s+(\S+)").group(1)), 3),
        "latency_p99_ms": round(millis(find(r"^\s+99%\s+(\S+)").group(1)), 3),
        "requests": int(totals.group(1)),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": dict(zip(("connect", "read", "write", "timeout"), map(int, socket.groups())))
        if socket
        else {"connect": 0, "read": 0, "write": 0, "timeout": 0},
    }


rows = [parse(name) for name in ("hello", "health", "execution")]
hello = rows[0]
for row in rows:
    row["rps_vs_hello"] = round(row["requests_per_sec"] / hello["requests_per_sec"], 3)
    row["p99_vs_hello"] = round(row["latency_p99_ms"] / hello["latency_p99_ms"], 2) if hello["latency_p99_ms"] else None

# The API's own status counts per route, from /metrics.
statuses = {}
try:
    for line in open(os.path.join(work, "metrics.txt")):
        match = re.match(r'masstock_http_requests_total\{method="GET",route="([^"]+)",status="(\d+)"\} (\d+)', line)
        if match:
            statuses.setdefault(match.group(1), {})[match.group(2)] = int(match.group(3))
except FileNotFoundError:
    pass
rows[1]["api_statuses"] = statuses.get("/health", {})
rows[2]["api_statuses"] = statuses.get("/api/v1/executions/{id}", {})


def fmt_ms(value):
    return f"{value:.2f} ms" if value < 100 else f"{value:.0f} ms"


print()
print(f"wrk: {os.environ['CONNECTIONS']} connections, {os.environ['THREADS']} threads, {os.environ['DURATION']} per target "
      f"(after a {os.environ['WARMUP']} warm-up), {os.cpu_count()} CPUs shared by wrk and the servers")
header = f"{'target':<11} {'requests/s':>11} {'p99':>11} {'non-2xx':>8} {'sock err':>9}   vs hello"
print(header)
print("-" * (len(header) + 22))
for row in rows:
    errors = sum(row["socket_errors"].values())
    if row is hello:
        versus = "ceiling"
    else:
        versus = f"{row['target']}: {row['rps_vs_hello']:.2f}x hello (p99 {row['p99_vs_hello']:.1f}x)"
    print(f"{row['target']:<11} {row['requests_per_sec']:>11,.0f} {fmt_ms(row['latency_p99_ms']):>11} "
          f"{row['non_2xx']:>8} {errors:>9}   {versus}")
print()
for row in rows[1:]:
    seen = ", ".join(f"{status}: {count}" for status, count in sorted(row["api_statuses"].items())) or "none"
    print(f"API's /metrics for {row['target']} (warm-up and checks included): {seen}")
print(f"API log: {os.environ['API_LOG_LINES']} lines, {os.environ['API_LOG_WARNINGS']} WARN, {os.environ['API_LOG_ERRORS']} ERROR")

problems = {}
for line in open(os.path.join(work, "api-problems.log")):
    try:
        entry = json.loads(line)
    except ValueError:
        continue
    fields = {**entry.get("fields", {}), **entry}  # tracing's JSON puts the message at the top or under "fields"
    key = f"{entry.get('level')}: {fields.get('message', '')} {fields.get('error', '')}".strip()
    problems[key] = problems.get(key, 0) + 1
for key, count in sorted(problems.items(), key=lambda item: -item[1])[:5]:
    print(f"  {count:>6} x {key}")


def git(*args):
    try:
        return subprocess.run(["git", "-C", os.environ["REPO"], *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


cpu = None
try:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), None)
except OSError:
    pass
report = {
    "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "wrk": {"connections": int(os.environ["CONNECTIONS"]), "threads": int(os.environ["THREADS"]),
            "duration": os.environ["DURATION"], "warmup": os.environ["WARMUP"]},
    "machine": {"cpus": os.cpu_count(), "cpu": cpu, "kernel": platform.release()},
    "git": {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))},
    "api_log": {"lines": int(os.environ["API_LOG_LINES"]), "warnings": int(os.environ["API_LOG_WARNINGS"]),
                "errors": int(os.environ["API_LOG_ERRORS"]), "top": problems},
    "targets": rows,
}
with open(os.path.join(results, "latest.json"), "w") as out:
    json.dump(report, out, indent=2)
    out.write("\n")

bad = [row for row in rows if row["non_2xx"] or sum(row["socket_errors"].values())]
with open(os.path.join(work, "warnings"), "w") as out:
    for row in bad:
        out.write(f"{row['target']}: {row['non_2xx']} non-2xx responses, socket errors {row['socket_errors']}\n")
    limited = sum(row.get("api_statuses", {}).get("429", 0) for row in rows)
    if limited:
        out.write(f"the API answered 429 (rate limited) {limited} times: RATE_LIMIT_GENERAL is not honoured?\n")
PY

while IFS= read -r line; do warn "$line"; done <"$WORK/warnings"
log "results in ${RESULTS_DIR#"$REPO/"}/latest.json (raw wrk output beside it); took ${SECONDS}s"
