//! Backups that are too old to count on: `backup-stale` (no successful `backup` in the last 26
//! hours) and `drill-stale` (no successful `restore --drill` in the last 8 days), only when
//! deploy.toml declares `[backup]`.
//!
//! The evidence is the status file `backup` and the drill keep (`crate::backup::status`): the
//! last run with how it ended, and the last successful one with its age, so an operator sees at
//! once whether the runs fail (the last one failed, an older one succeeded) or do not happen at
//! all (nothing since). Nothing asks the repository: doctor stays fast and works with the
//! repository unreachable (which `backup` itself reports).
//!
//! 26 hours is a day's schedule plus the timer's random delay and a slow run; 8 days is the
//! weekly drill plus a day. Both are warnings: nothing is broken yet, but the next loss would be
//! bigger than it should (doctor exits 1 on warnings too, so a monitor running it sees them). The
//! fix is the command, with `backup install-timer` added when the timer's unit is not in
//! `[backup] systemd_dir` (a timer that is installed and still leaves the backups stale fails:
//! its journal says why). A status file that cannot be read is `backup-status-unreadable`.

use chrono::{DateTime, Utc};

use super::{truncate, Context, Finding};
use crate::backup::status::{self, Run, Status};
use crate::systemd::{BACKUP_TIMER_UNIT, DRILL_TIMER_UNIT};
use crate::ui::short_duration;

/// The age past which the last successful backup is stale.
pub const BACKUP_MAX_AGE_HOURS: i64 = 26;
/// The age past which the last successful drill is stale.
pub const DRILL_MAX_AGE_DAYS: i64 = 8;

/// Which timers' units are in `[backup] systemd_dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Installed {
    pub backup_timer: bool,
    pub drill_timer: bool,
}

pub async fn examine(context: &Context<'_>) -> Vec<Finding> {
    let stack = context.stack;
    let Some(backup) = &stack.config.backup else { return Vec::new() };
    let folder = backup.systemd_dir();
    let path = status::path(stack);
    let owned = stack.clone();
    // Reading two files takes no time on a sane host; one that does not answer gets a finding.
    let look = tokio::task::spawn_blocking(move || {
        let installed = Installed {
            backup_timer: folder.join(BACKUP_TIMER_UNIT).is_file(),
            drill_timer: folder.join(DRILL_TIMER_UNIT).is_file(),
        };
        (status::read(&owned).map_err(|error| error.to_string()), installed)
    });
    let (status, installed) = match tokio::time::timeout(context.timeout, look).await {
        Ok(Ok(found)) => found,
        Ok(Err(error)) => return vec![unreadable(&path, &error.to_string(), context)],
        Err(_) => return vec![unreadable(&path, "reading it did not end in time", context)],
    };
    match status {
        Ok(status) => {
            let now = DateTime::from_timestamp_millis(i64::try_from(context.now_ms).unwrap_or(i64::MAX))
                .unwrap_or_else(Utc::now);
            judge(&status, now, installed, &path, &|arguments| context.command(arguments))
        }
        Err(error) => vec![unreadable(&path, &error, context)],
    }
}

fn unreadable(path: &std::path::Path, error: &str, context: &Context<'_>) -> Finding {
    Finding::warning(
        "backup-status-unreadable",
        "when the last backup ran cannot be told: its status file cannot be read",
        format!("fix the file's permissions, or remove it: the next {} writes it again", context.command("backup")),
    )
    .with_evidence([format!("`{}`: {error}", path.display())])
}

/// The findings for `status` at `now`; `command` writes a masstockctl command as the operator
/// would type it.
#[must_use]
pub fn judge(
    status: &Status,
    now: DateTime<Utc>,
    installed: Installed,
    path: &std::path::Path,
    command: &dyn Fn(&str) -> String,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let kinds = [
        (
            "backup-stale",
            "backup",
            chrono::Duration::hours(BACKUP_MAX_AGE_HOURS),
            format!("{BACKUP_MAX_AGE_HOURS} hours"),
            &status.last_backup,
            &status.last_successful_backup,
            installed.backup_timer,
            BACKUP_TIMER_UNIT,
            "backup",
        ),
        (
            "drill-stale",
            "drill",
            chrono::Duration::days(DRILL_MAX_AGE_DAYS),
            format!("{DRILL_MAX_AGE_DAYS} days"),
            &status.last_drill,
            &status.last_successful_drill,
            installed.drill_timer,
            DRILL_TIMER_UNIT,
            "restore --drill",
        ),
    ];
    for (id, what, max_age, max_age_text, last, last_successful, timer_installed, timer, arguments) in kinds {
        let age = last_successful.as_ref().map(|run| now.signed_duration_since(run.at));
        if age.is_some_and(|age| age <= max_age) {
            continue;
        }
        let summary = match age {
            None => format!("no {what} has succeeded yet: nothing proves the data can be brought back"),
            Some(age) => format!(
                "the last successful {what} is {} old, more than {max_age_text}",
                short_duration(u64::try_from(age.num_seconds()).unwrap_or(0))
            ),
        };
        let mut evidence = Vec::new();
        match last {
            Some(run) if !run.ok => evidence.push(format!("last {what}: {}", described(run, now))),
            Some(_) | None => {}
        }
        match last_successful {
            Some(run) => evidence.push(format!("last successful {what}: {}", described(run, now))),
            None => evidence.push(format!("no successful {what} recorded in `{}`", path.display())),
        }
        let fix = if timer_installed {
            format!(
                "run {}; `{timer}` is installed, so its runs fail or do not start: `journalctl -u {}` says why",
                command(arguments),
                timer.replace(".timer", ".service")
            )
        } else {
            format!(
                "run {}, then {} so that it runs on its schedule",
                command(arguments),
                command("backup install-timer")
            )
        };
        findings.push(Finding::warning(id, summary, fix).with_evidence(evidence));
    }
    findings
}

/// `2026-12-06 03:00:12 UTC (1d02h ago): <what it said>`, its words cut short.
fn described(run: &Run, now: DateTime<Utc>) -> String {
    let ago = u64::try_from(now.signed_duration_since(run.at).num_seconds()).unwrap_or(0);
    let ended = if run.ok { "succeeded" } else { "failed" };
    format!(
        "{} ({} ago), {ended}: {}",
        run.at.format("%Y-%m-%d %H:%M:%S UTC"),
        short_duration(ago),
        truncate(&run.summary, 200)
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn at(hours_ago: i64, now: DateTime<Utc>) -> DateTime<Utc> {
        now - chrono::Duration::hours(hours_ago)
    }

    /// A run `hours_ago`, as a status field holds it.
    #[allow(clippy::unnecessary_wraps, reason = "every `Status` field is an `Option<Run>`")]
    fn run(hours_ago: i64, ok: bool, summary: &str, now: DateTime<Utc>) -> Option<Run> {
        Some(Run { at: at(hours_ago, now), ok, summary: summary.to_owned() })
    }

    fn findings(status: &Status, now: DateTime<Utc>, installed: Installed) -> Vec<Finding> {
        judge(status, now, installed, &PathBuf::from("/state/backup/masstock.status.json"), &|arguments| {
            format!("`masstockctl --env local {arguments}`")
        })
    }

    const NONE: Installed = Installed { backup_timer: false, drill_timer: false };
    const BOTH: Installed = Installed { backup_timer: true, drill_timer: true };

    /// A status file of our own, written and read back as `backup` and doctor do.
    fn through_a_file(status: &Status) -> Status {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("masstock.status.json");
        fs_err::write(&path, serde_json::to_string_pretty(status).unwrap()).unwrap();
        serde_json::from_str(&fs_err::read_to_string(&path).unwrap()).unwrap()
    }

    #[test]
    fn fresh_runs_give_no_finding() {
        let now = Utc::now();
        let status = through_a_file(&Status {
            last_backup: run(3, true, "4 snapshots stored", now),
            last_successful_backup: run(3, true, "4 snapshots stored", now),
            last_drill: run(24 * 7, true, "every figure matches", now),
            last_successful_drill: run(24 * 7, true, "every figure matches", now),
        });
        assert_eq!(findings(&status, now, NONE), []);
    }

    #[test]
    fn nothing_ever_ran_names_both_with_the_timer_to_install() {
        let now = Utc::now();
        let found = findings(&through_a_file(&Status::default()), now, NONE);
        let ids: Vec<&str> = found.iter().map(|finding| finding.id.as_str()).collect();
        assert_eq!(ids, ["backup-stale", "drill-stale"]);
        assert!(found.iter().all(|finding| finding.severity == super::super::Severity::Warning));
        assert_eq!(found[0].summary, "no backup has succeeded yet: nothing proves the data can be brought back");
        assert_eq!(found[0].evidence, ["no successful backup recorded in `/state/backup/masstock.status.json`"]);
        assert_eq!(
            found[0].fix,
            "run `masstockctl --env local backup`, then `masstockctl --env local backup install-timer` so that it runs on its schedule"
        );
        assert!(found[1].fix.starts_with("run `masstockctl --env local restore --drill`, then"), "{}", found[1].fix);
    }

    #[test]
    fn stale_runs_are_aged_and_an_installed_timer_points_at_its_journal() {
        let now = Utc::now();
        let status = through_a_file(&Status {
            last_backup: run(27, true, "4 snapshots stored", now),
            last_successful_backup: run(27, true, "4 snapshots stored", now),
            last_drill: run(24 * 9, true, "every figure matches", now),
            last_successful_drill: run(24 * 9, true, "every figure matches", now),
        });
        let found = findings(&status, now, BOTH);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert_eq!(found[0].summary, "the last successful backup is 1d03h old, more than 26 hours");
        assert_eq!(found[0].evidence.len(), 1, "the last run is the successful one: {:?}", found[0].evidence);
        assert!(found[0].evidence[0].starts_with("last successful backup: "), "{:?}", found[0].evidence);
        assert!(
            found[0].evidence[0].ends_with("(1d03h ago), succeeded: 4 snapshots stored"),
            "{:?}",
            found[0].evidence
        );
        assert_eq!(
            found[0].fix,
            "run `masstockctl --env local backup`; `masstock-backup.timer` is installed, so its runs fail or do not start: `journalctl -u masstock-backup.service` says why"
        );
        assert_eq!(found[1].summary, "the last successful drill is 9d00h old, more than 8 days");
        assert!(found[1].fix.contains("`journalctl -u masstock-drill.service`"), "{}", found[1].fix);
    }

    #[test]
    fn a_failed_last_run_is_shown_beside_the_older_success() {
        let now = Utc::now();
        let status = through_a_file(&Status {
            last_backup: run(2, false, "restic: wrong password or no key found", now),
            last_successful_backup: run(50, true, "4 snapshots stored", now),
            last_drill: run(1, false, "figure `rows.users` differs: 12 recorded, 11 restored", now),
            last_successful_drill: run(24 * 3, true, "every figure matches", now),
        });
        let found = findings(&status, now, NONE);
        let ids: Vec<&str> = found.iter().map(|finding| finding.id.as_str()).collect();
        assert_eq!(ids, ["backup-stale"], "a drill that succeeded 3 days ago still counts: {found:#?}");
        assert_eq!(found[0].evidence.len(), 2, "{:?}", found[0].evidence);
        assert!(found[0].evidence[0].starts_with("last backup: "), "{:?}", found[0].evidence);
        assert!(
            found[0].evidence[0].ends_with("(2h00m ago), failed: restic: wrong password or no key found"),
            "{:?}",
            found[0].evidence
        );
        assert!(
            found[0].evidence[1].ends_with("(2d02h ago), succeeded: 4 snapshots stored"),
            "{:?}",
            found[0].evidence
        );
    }

    #[test]
    fn the_limits_are_inclusive() {
        let now = Utc::now();
        let status = Status {
            last_backup: run(BACKUP_MAX_AGE_HOURS, true, "ok", now),
            last_successful_backup: run(BACKUP_MAX_AGE_HOURS, true, "ok", now),
            last_drill: run(24 * DRILL_MAX_AGE_DAYS, true, "ok", now),
            last_successful_drill: run(24 * DRILL_MAX_AGE_DAYS, true, "ok", now),
        };
        assert_eq!(findings(&status, now, NONE), []);
    }
}
