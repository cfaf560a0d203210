#!/usr/bin/env bash
# Times the release build of masstockctl from scratch and counts Cargo.lock's packages, for one
# or more git revisions (issue 15's dependency hygiene: before and after).
#
# Usage: bench/build.sh                    (HEAD)
#        bench/build.sh edefaff HEAD       (one line per revision, in the order given)
#        BENCH_DRY_RUN=1 bench/build.sh edefaff HEAD   (counts only: no build)
#
# For each revision, in order: a detached git worktree of it in a temporary folder, with its own
# empty target dir (CARGO_TARGET_DIR inside the folder, so nothing is reused from another build;
# the registry's downloaded sources are shared, so the network is not measured); counts the
# `name = ` lines of its Cargo.lock and the crates masstockctl's build compiles (`cargo tree`,
# normal and build dependencies, each package and feature set once); times `cargo build
# --release --locked -p masstockctl`, on the wall clock and in CPU time (user + system of every
# process, which another load on the machine disturbs far less than the wall clock); removes the
# worktree. Prints one line per revision:
#   <revision> <short hash>  packages <n>  crates <n>  release build <wall>s wall, <cpu>s CPU
# and appends them to bench/results/build-<time>.txt. On exit, success or not, it removes the
# worktrees it made.
#
# Settings (environment):
#   BENCH_DRY_RUN=1    count the packages, skip the build (a quick check of the script)
#   CARGO_BUILD_JOBS   as cargo reads it (default: every CPU)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

require_tools git cargo
(($# > 0)) || set -- HEAD

WORK="$(mktemp -d "${TMPDIR:-/tmp}/masstock-bench-build.XXXXXX")"
cleanup() {
  local status=$?
  set +e
  trap - EXIT INT TERM
  local tree
  for tree in "$WORK"/tree-*; do
    [[ -d $tree ]] && git -C "$REPO" worktree remove --force "$tree" >/dev/null 2>&1
  done
  git -C "$REPO" worktree prune
  rm -rf "$WORK"
  exit "$status"
}
on_exit cleanup

mkdir -p "$BENCH_DIR/results"
out="$BENCH_DIR/results/build-$(date -u +%Y%m%dT%H%M%SZ).txt"
[[ ${BENCH_DRY_RUN:-} == 1 ]] || echo "# bench/build.sh, $(nproc) CPUs, $(cargo --version)" >>"$out"

for revision in "$@"; do
  hash=$(git -C "$REPO" rev-parse --short --verify "$revision^{commit}") || die "\`$revision\` is not a revision of $REPO"
  tree="$WORK/tree-$hash"
  git -C "$REPO" worktree add --detach --quiet "$tree" "$hash"
  packages=$(grep -c '^name = ' "$tree/Cargo.lock")
  crates=$(cd "$tree" && cargo tree --offline --locked -p masstockctl -e normal,build --prefix none -f '{p} {f}' | sort -u | wc -l)
  if [[ ${BENCH_DRY_RUN:-} == 1 ]]; then
    printf '%s %s  packages %d  crates %d  release build skipped (BENCH_DRY_RUN)\n' "$revision" "$hash" "$packages" "$crates"
  else
    log "building masstockctl (release) at $revision ($hash) in $tree"
    # bash's `time` reports the wall clock and the CPU time of the command and its children.
    TIMEFORMAT='%R %U %S'
    # The inner braces keep the build's own stderr apart from `time`'s report.
    { time { (cd "$tree" && CARGO_TARGET_DIR="$tree/target" cargo build --release --locked --quiet -p masstockctl) \
      2>"$WORK/build.err"; }; } 2>"$WORK/time" || die "the release build of $revision failed: $(tail -5 "$WORK/build.err")"
    read -r wall user system <"$WORK/time"
    cpu=$(awk -v u="$user" -v s="$system" 'BEGIN { printf "%.1f", u + s }')
    printf '%s %s  packages %d  crates %d  release build %.1fs wall, %ss CPU\n' \
      "$revision" "$hash" "$packages" "$crates" "$wall" "$cpu" | tee -a "$out"
  fi
  git -C "$REPO" worktree remove --force "$tree"
done
[[ ${BENCH_DRY_RUN:-} == 1 ]] || log "written to $out"
