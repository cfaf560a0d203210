#!/usr/bin/env bash
# Times `masstockctl backup` (first, then unchanged) and `restore --drill` on a stack of its own holding 1 GiB of uploads and 100,000 queued jobs, beside `tar | gzip` of the same data.
#
# Usage: bench/backup.sh                              (after script/local-up or script/bootstrap)
#        BENCH_UPLOADS_MIB=256 BENCH_JOBS=20000 bench/backup.sh
#
# What it does, in order:
#   1. builds masstockctl (release, unless BENCH_NO_BUILD=1 or BENCH_CTL names one);
#   2. writes a deploy.toml of its own in a work folder: the shipped one with an environment
#      `bench` (the local environment's settings, project `mstbench<pid>`, free host ports, image
#      repositories `mstbench<pid>/…`, the edge's commands `true` so the host's nginx is left
#      alone, `[backup]` on a repository in the work folder), an env file with fresh secrets, and
#      a database `mstbench<pid>` on the bootstrap's PostgreSQL; deploys it (BENCH_CARGO_PROFILE);
#   3. stops the worker through the engine, adds BENCH_JOBS jobs to `workflow-queue` with Python's
#      bullmq (`addBulk`, 1,000 per call, the API's options) so they stay queued, and streams
#      BENCH_UPLOADS_MIB MiB of random files (incompressible, 2-6 MiB each, like images) into the
#      uploads volume (`docker cp -` of a tar made on the fly into the api container);
#   4. times the first `backup`, an unchanged second one, `restore --drill`, and the naive anchor:
#      `tar | gzip` of the uploads volume and of Redis's /data (both read with `docker cp`) and
#      `pg_dump | gzip`, into files in the work folder;
#   5. prints a table (seconds, bytes added, MiB/s) and the ratios, and writes it to
#      bench/results/backup-<time>.txt.
# On exit, success or not: `down --volumes`, the images `mstbench<pid>/*` and anything labelled
# by a drill of this project removed, the database dropped, the work folder removed (kept on
# failure, with the logs).
#
# Settings (environment):
#   BENCH_UPLOADS_MIB    MiB of uploads (default 1024)
#   BENCH_JOBS           queued jobs (default 100000)
#   BENCH_CARGO_PROFILE  profile of the stack's images (default release; `dev` builds faster)
#   BENCH_CTL            the masstockctl to time (default target/release/masstockctl, built)
#   BENCH_NO_BUILD=1     use BENCH_CTL as it is
#   BENCH_PG_URL         admin connection, a role with CREATEDB
#                        (default postgres://masstock:masstock@127.0.0.1:5432/masstock_test)
set -euo pipefail

source "$(dirname "$0")/lib.sh"
UPLOADS_MIB="${BENCH_UPLOADS_MIB:-1024}"
JOBS="${BENCH_JOBS:-100000}"
CARGO_PROFILE="${BENCH_CARGO_PROFILE:-release}"
PG_URL="${BENCH_PG_URL:-postgres://masstock:masstock@127.0.0.1:5432/masstock_test}"
CTL="${BENCH_CTL:-$REPO/target/release/masstockctl}"
PYTHON="$REPO/.venv/bin/python"
PROJECT="mstbench$$"
DB_NAME="$PROJECT"
RESULTS_DIR="$BENCH_DIR/results"

require_tools cargo docker psql pg_dump gzip tar restic python3
[[ -x $PYTHON ]] || die "no Python venv with bullmq at $PYTHON (run script/bootstrap)"
require_postgres "$PG_URL"
docker info >/dev/null 2>&1 || die "the Docker engine does not answer (run script/bootstrap)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/masstock-bench-backup.XXXXXX")"
chmod 700 "$WORK"
LOG="$WORK/bench.log"
DB_CREATED=""
DEPLOYED=""

cleanup() {
  local status=$?
  set +e
  trap - EXIT INT TERM
  if [[ -n $DEPLOYED ]]; then
    log "removing the stack $PROJECT (down --volumes, images, drill leftovers)"
    rm -f "$WORK/state/$PROJECT.deploy.lock"
    ctl down --volumes >>"$LOG" 2>&1 || warn "\`down --volumes\` failed (see $LOG)"
  fi
  local kind ids
  for kind in container volume network; do
    case $kind in
      container) ids=$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT") ;;
      *) ids=$(docker "$kind" ls -q --filter "label=com.docker.compose.project=$PROJECT") ;;
    esac
    # shellcheck disable=SC2086 # one id per word
    [[ -z $ids ]] || docker "$kind" rm -f $ids >/dev/null 2>&1 || docker "$kind" rm $ids >/dev/null 2>&1 || true
  done
  drill_leftovers | while read -r kind name; do
    warn "the drill left $kind $name: removing it"
    docker "$kind" rm -f "$name" >/dev/null 2>&1 || docker "$kind" rm "$name" >/dev/null 2>&1
  done
  ids=$(docker image ls --filter "reference=$PROJECT/*" --format '{{.Repository}}:{{.Tag}}')
  # shellcheck disable=SC2086
  [[ -z $ids ]] || docker image rm -f $ids >/dev/null 2>&1 || warn "could not remove the images $PROJECT/*"
  finish "$status" "$LOG"
}
on_exit cleanup

# drill_leftovers: `<kind> <name>` of each Docker object a drill of this project labelled.
drill_leftovers() {
  local kind
  for kind in container volume network; do
    case $kind in
      container) docker ps -a --filter label=io.masstock.drill --format '{{.Names}} {{.Label "io.masstock.drill"}}' ;;
      *) docker "$kind" ls --filter label=io.masstock.drill --format '{{.Name}} {{.Label "io.masstock.drill"}}' ;;
    esac | awk -v kind="$kind" -v prefix="$PROJECT-drill-" 'index($2, prefix) == 1 { print kind, $1 }'
  done
}

# --- masstockctl ------------------------------------------------------------------------------
if [[ ${BENCH_NO_BUILD:-} != 1 && -z ${BENCH_CTL:-} ]]; then
  log "building masstockctl (release)"
  (cd "$REPO" && cargo build --release -q -p masstockctl) || die "cargo build --release -p masstockctl failed"
fi
[[ -x $CTL ]] || die "$CTL is missing (unset BENCH_NO_BUILD, or set BENCH_CTL)"
# From the checkout, where `deploy` finds the workspace it builds the images from.
cd "$REPO"
ctl() { "$CTL" --config "$WORK/deploy.toml" --env bench --no-progress "$@"; }

# --- The stack's configuration, secrets and database ------------------------------------------
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
log "creating database $DB_NAME"
psql "$PG_URL" -qAtc "create database $DB_NAME" >/dev/null
DB_CREATED=1
PG_SERVER="${PG_URL%/*}"
# The containers reach the host's PostgreSQL through host-gateway, as in the local environment.
DATABASE_URL_CONTAINERS="${PG_SERVER/127.0.0.1/host.docker.internal}/$DB_NAME"
(
  umask 077
  random() { python3 -c 'import secrets; print(secrets.token_urlsafe(32))'; }
  {
    echo "DATABASE_URL=$DATABASE_URL_CONTAINERS"
    echo "REDIS_PASSWORD=$(random)"
    echo "JWT_SECRET=$(random)"
    echo "GEMINI_API_KEY=$(random)"
    echo "ENCRYPTION_KEY=$(random)"
    echo "RESTIC_PASSWORD=$(random)"
  } >"$WORK/env"
)

export WORK PROJECT REPO
export VITRINE_PORT="$(free_port)" APP_PORT="$(free_port)" API_PORT="$(free_port)"
python3 - <<'PY'
import json, os, re, tomllib

work, project, repo = os.environ["WORK"], os.environ["PROJECT"], os.environ["REPO"]
with open(os.path.join(repo, "deploy.toml"), "rb") as shipped:
    document = tomllib.load(shipped)


def merge(base, over):
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


port = lambda name: int(os.environ[name])
bench = merge(json.loads(json.dumps(document["environments"].get("local", {}))), {
    "project": {"name": project, "network": f"{project}_network", "env_file": f"{work}/env",
                "state_dir": f"{work}/state"},
    "services": {
        "vitrine": {"image": f"{project}/vitrine", "build": {"assets": f"{repo}/services/web/vitrine"},
                    "ports": [{"host": port("VITRINE_PORT"), "container": 80}]},
        "app": {"image": f"{project}/app", "build": {"assets": f"{repo}/services/web/app"},
                "ports": [{"host": port("APP_PORT"), "container": 80}]},
        "api": {"image": f"{project}/api", "ports": [{"host": port("API_PORT"), "container": 3000}]},
        "worker": {"image": f"{project}/worker"},
        "redis": {"image": f"{project}/redis:local"},
    },
    # The host's nginx is not the bench's business: the site is written and nothing is reloaded.
    "edge": {"site_file": f"{work}/nginx/masstock.conf", "enabled_link": "", "test_command": ["true"],
             "reload_command": ["true"], "start_command": [], "log_dir": f"{work}/nginx/logs"},
    "acme": {"cert_dir": f"{work}/letsencrypt", "webroot": f"{work}/acme-webroot",
             "systemd_dir": f"{work}/systemd"},
    "backup": {"repository": f"{work}/restic", "password": "${RESTIC_PASSWORD}",
               "systemd_dir": f"{work}/systemd"},
})
document["environments"]["bench"] = bench


def key(name):
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def value(item):
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, (int, float)):
        return repr(item)
    if isinstance(item, str):
        return json.dumps(item)
    if isinstance(item, list):
        return "[" + ", ".join(value(element) for element in item) + "]"
    if isinstance(item, dict):
        return "{ " + ", ".join(f"{key(name)} = {value(element)}" for name, element in item.items()) + " }"
    raise SystemExit(f"bench: ERROR: cannot write {item!r} as TOML")


def table(path, items, out):
    scalars = {name: item for name, item in items.items() if not isinstance(item, dict)}
    tables = {name: item for name, item in items.items() if isinstance(item, dict)}
    if path and (scalars or not tables):
        out.append(f"\n[{'.'.join(key(part) for part in path)}]")
    out.extend(f"{key(name)} = {value(item)}" for name, item in scalars.items())
    for name, item in tables.items():
        table(path + [name], item, out)


lines = ["# Written by bench/backup.sh: the shipped deploy.toml and its environment `bench`."]
table([], document, lines)
with open(os.path.join(work, "deploy.toml"), "w") as out:
    out.write("\n".join(lines) + "\n")
PY

# --- The stack --------------------------------------------------------------------------------
ctl config check >>"$LOG" 2>&1 || die "the bench's deploy.toml does not check (see $LOG)"
log "deploying $PROJECT (images built with the $CARGO_PROFILE profile; the first time takes minutes)"
DEPLOYED=1
ctl deploy --cargo-profile "$CARGO_PROFILE" >>"$LOG" 2>&1 || die "deploy failed (see $LOG)"

log "stopping the worker, so that the jobs stay queued"
docker stop --time 30 "${PROJECT}_worker" >/dev/null

REDIS_IP=$(docker inspect -f "{{(index .NetworkSettings.Networks \"${PROJECT}_network\").IPAddress}}" "${PROJECT}_redis")
REDIS_PASSWORD=$(sed -n 's/^REDIS_PASSWORD=//p' "$WORK/env")
log "adding $JOBS jobs to workflow-queue with Python's bullmq (addBulk)"
started=$(now)
# The URL reaches Python on its standard input, never on a command line.
"$PYTHON" -c '
import asyncio, sys, uuid
from bullmq import Queue

url, total = sys.stdin.readline().strip(), int(sys.argv[1])

def job(n):
    execution_id = str(uuid.uuid4())
    data = {"executionId": execution_id, "prompts": ["a red fox", "a blue whale"], "config": {"aspectRatio": "1:1"}}
    return {"name": "execute-workflow", "data": data,
            "opts": {"jobId": execution_id, "priority": 1 if n % 2 else 2, "removeOnComplete": True, "removeOnFail": False}}

async def main():
    queue = Queue("workflow-queue", {"connection": url})
    for start in range(0, total, 1000):
        await queue.addBulk([job(n) for n in range(start, min(start + 1000, total))])
    await queue.close()

asyncio.run(main())
' "$JOBS" < <(printf 'redis://:%s@%s:6379\n' "$REDIS_PASSWORD" "$REDIS_IP") || die "adding the jobs failed"
log "  added in $(elapsed "$started") s"

log "streaming $UPLOADS_MIB MiB of random files into the uploads volume"
started=$(now)
python3 - "$UPLOADS_MIB" <<'PY' | docker cp - "${PROJECT}_api:/app/uploads" || die "filling the uploads volume failed"
import io, os, random, sys, tarfile

total = int(sys.argv[1]) * 1024 * 1024
generator = random.Random(17)
with tarfile.open(fileobj=sys.stdout.buffer, mode="w|") as archive:
    written, index = 0, 0
    while written < total:
        size = min(generator.randint(2 * 1024 * 1024, 6 * 1024 * 1024), total - written)
        info = tarfile.TarInfo(f"bench/{index // 100:03}/result-{index:05}.png")
        info.size, info.mode, info.uid, info.gid = size, 0o640, 10001, 10001
        archive.addfile(info, io.BytesIO(os.urandom(size)))
        written, index = written + size, index + 1
PY
log "  written in $(elapsed "$started") s"

# --- Measures ---------------------------------------------------------------------------------
# added <json file>: the bytes restic added over every component of a `backup --json` report.
added() { python3 -c 'import json, sys; print(sum(c.get("added_bytes") or 0 for c in json.load(open(sys.argv[1]))["components"]))' "$1"; }

declare -A seconds bytes
measure_backup() {
  local name=$1 started
  started=$(now)
  ctl --json backup >"$WORK/$name.json" 2>>"$LOG" || die "\`backup\` ($name) failed (see $LOG)"
  seconds[$name]=$(elapsed "$started")
  bytes[$name]=$(added "$WORK/$name.json")
  log "  $name: ${seconds[$name]} s, $(numfmt --to=iec "${bytes[$name]}")B added"
}

log "backup, first"
measure_backup "backup, first"
log "backup, unchanged"
measure_backup "backup, unchanged"

log "restore --drill"
started=$(now)
ctl --json restore --drill >"$WORK/drill.json" 2>>"$LOG" || die "\`restore --drill\` failed (see $LOG)"
seconds["restore --drill"]=$(elapsed "$started")
bytes["restore --drill"]=0 # a drill adds nothing to the repository
ESTIMATED=$(python3 -c 'import json, sys; print("%.1f" % json.load(open(sys.argv[1]))["estimated_restore_seconds"])' "$WORK/drill.json")
log "  ${seconds["restore --drill"]} s (it estimates a real restore at $ESTIMATED s)"
[[ -z $(drill_leftovers) ]] || warn "the drill left objects behind: $(drill_leftovers | tr '\n' ' ')"

log "tar | gzip of the same data (the naive anchor)"
started=$(now)
docker cp "${PROJECT}_api:/app/uploads" - | gzip >"$WORK/anchor-uploads.tar.gz"
docker cp "${PROJECT}_redis:/data" - | gzip >"$WORK/anchor-redis.tar.gz"
pg_dump --format=plain --no-owner --dbname="$PG_SERVER/$DB_NAME" | gzip >"$WORK/anchor-postgres.sql.gz"
seconds["tar | gzip"]=$(elapsed "$started")
bytes["tar | gzip"]=$(cat "$WORK"/anchor-* | wc -c)
rm -f "$WORK"/anchor-*
log "  ${seconds["tar | gzip"]} s, $(numfmt --to=iec "${bytes["tar | gzip"]}")B"
REPOSITORY_BYTES=$(du -sb "$WORK/restic" | cut -f1)

# --- Report -----------------------------------------------------------------------------------
mkdir -p "$RESULTS_DIR"
out="$RESULTS_DIR/backup-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
  echo "# bench/backup.sh: $UPLOADS_MIB MiB of uploads, $JOBS queued jobs; $(nproc) cores; $(restic version | cut -d' ' -f1-2);"
  echo "# images: $CARGO_PROFILE profile; masstockctl: ${CTL#"$REPO/"}"
  printf '%-20s %10s %14s %10s\n' what seconds "bytes added" "MiB/s"
  for name in "backup, first" "backup, unchanged" "restore --drill" "tar | gzip"; do
    awk -v name="$name" -v s="${seconds[$name]}" -v b="${bytes[$name]}" -v mib="$UPLOADS_MIB" \
      'BEGIN { printf "%-20s %10.2f %14s %10.1f\n", name, s, (name == "restore --drill" ? "-" : b), mib / s }'
  done
  echo
  awk -v b1="${seconds["backup, first"]}" -v b2="${seconds["backup, unchanged"]}" -v d="${seconds["restore --drill"]}" \
    -v a="${seconds["tar | gzip"]}" -v y1="${bytes["backup, first"]}" -v y2="${bytes["backup, unchanged"]}" \
    -v ya="${bytes["tar | gzip"]}" -v repo="$REPOSITORY_BYTES" -v est="$ESTIMATED" 'BEGIN {
      printf "first backup / tar|gzip:      %.2fx the time, %.2fx the bytes\n", b1 / a, y1 / ya
      printf "unchanged backup / first:     %.2fx the time, %.4fx the bytes\n", b2 / b1, y2 / y1
      printf "drill / first backup:         %.2fx the time (a real restore estimated at %s s)\n", d / b1, est
      printf "repository on disk:           %d bytes (%.2fx tar|gzip)\n", repo, repo / ya
    }'
} | tee "$out"
log "written to ${out#"$REPO/"}; took ${SECONDS}s"
