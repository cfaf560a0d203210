# shellcheck shell=bash
# The shell every bench/*.sh shares; sourced, never run: `source "$(dirname "$0")/lib.sh"`.
#
# Sets BENCH_DIR (this folder) and REPO (the checkout), and defines:
#   log / warn / die <message>        talk on stderr, prefixed `bench:`; die exits 1
#   require_tools <tool>...           dies naming the first tool missing from PATH
#   require_postgres <url>            dies unless PostgreSQL answers `select 1` there
#   require_redis <url>               dies unless Redis answers PING there
#   stop <pid> [seconds]              SIGTERM, then SIGKILL after 5 s (or the seconds given)
#   delete_keys <pattern>             deletes every Redis key at REDIS_URL matching it
#   on_exit <function>                runs it on exit, on Ctrl-C (status 130) and on SIGTERM (143)
#   finish <status> [log]             the end of a cleanup: drops DB_NAME (from PG_URL) if
#                                     DB_CREATED, shows the log's tail on failure, removes WORK on
#                                     success (keeps it on failure), exits with <status>
#   local_ctl                         for the scripts that time the deployed local environment:
#                                     checks CTL (BENCH_CTL, default target/release/masstockctl)
#                                     and .env.local, cds to REPO and defines `ctl`
#   now / elapsed <start>             wall clock, and seconds since <start> (3 decimals)
#   record <figure> <seconds>         keeps one measure of a figure, and prints it (FIGURE_FORMAT)
#   summarize <figure>...             a `figure min median max` table of what record kept

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"

log() { printf 'bench: %s\n' "$*" >&2; }
warn() { printf 'bench: WARNING: %s\n' "$*" >&2; }
die() { printf 'bench: ERROR: %s\n' "$*" >&2; exit 1; }

require_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || die "\`$tool\` is not on PATH (script/bootstrap installs what is missing)"
  done
}

require_postgres() {
  psql "$1" -qAtc 'select 1' >/dev/null 2>&1 || die "PostgreSQL does not answer at ${1%%@*}@... (run script/bootstrap)"
}

require_redis() {
  redis-cli -u "$1" ping >/dev/null 2>&1 || die "Redis does not answer at $1 (run script/bootstrap)"
}

stop() {
  local pid=$1 tries=0 limit=$((${2:-5} * 10))
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null && ((tries < limit)); do
    sleep 0.1
    tries=$((tries + 1))
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

delete_keys() {
  redis-cli -u "$REDIS_URL" --scan --pattern "$1" 2>/dev/null | xargs -r -n 500 redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
}

on_exit() {
  trap "$1" EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

finish() {
  local status=$1 log_file=${2:-}
  if [[ -n ${DB_CREATED:-} ]]; then
    psql "$PG_URL" -qAtc "drop database if exists $DB_NAME with (force)" >/dev/null 2>&1 ||
      warn "could not drop database $DB_NAME; drop it by hand"
  fi
  if ((status != 0)); then
    if [[ -n $log_file && -s $log_file ]]; then
      log "last lines of $log_file:"
      tail -n 20 "$log_file" >&2
    fi
    log "failed (exit $status); logs kept in $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}

local_ctl() {
  CTL="${BENCH_CTL:-$REPO/target/release/masstockctl}"
  cd "$REPO" || die "cannot enter $REPO"
  [[ -x $CTL ]] || die "$CTL is missing: run script/local-up first (or set BENCH_CTL)"
  [[ -f .env.local ]] || die ".env.local is missing: run script/local-up first"
  ctl() { "$CTL" --env local -q "$@"; }
}

now() { date +%s.%N; }
elapsed() { awk -v end="$(now)" -v start="$1" 'BEGIN { printf "%.3f", end - start }'; }

declare -A figures
FIGURE_FORMAT='%-44s %7.3fs'
record() {
  figures[$1]+="$2 "
  # shellcheck disable=SC2059 # the format is the script's own
  printf "bench:   $FIGURE_FORMAT\n" "$1" "$2" >&2
}

summarize() {
  local name sorted min median max values
  local width=${FIGURE_FORMAT%%s *}
  # shellcheck disable=SC2059
  printf "${width}s %8s %8s %8s\n" figure min median max
  for name in "$@"; do
    read -r -a values <<<"${figures[$name]}"
    sorted=$(printf '%s\n' "${values[@]}" | sort -g)
    min=$(head -n 1 <<<"$sorted")
    max=$(tail -n 1 <<<"$sorted")
    median=$(awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }' <<<"$sorted")
    local value=${FIGURE_FORMAT#* }
    # shellcheck disable=SC2059
    printf "${width}s $value $value $value\n" "$name" "$min" "$median" "$max"
  done
}
