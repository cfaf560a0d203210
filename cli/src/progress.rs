//! The terminal's `Reporter`: steps as lines on stderr (through `Ui`, so `-q`, `-v` and `--json`
//! behave as for any other talk), and on a terminal indicatif spinners, one per transfer and one
//! per container waited for (with the time it has waited), drawn together by a `MultiProgress`.
//!
//! No spinner is drawn when stderr is not a terminal, with `--no-progress` or with `-q`: the
//! lines are then exactly the plain ones.
//!
//! Also the closing report `deploy` and `rollback` both print, from `deploy::rollout::Rollout`.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::Stack;
use crate::deploy::rollout::{roll_out, Rollout};
use crate::deploy::Plan;
use crate::report::{Activity, Reporter, Unwatched};
use crate::ui::Ui;

/// How often a spinner turns.
const TICK: Duration = Duration::from_millis(120);

/// Reports to the operator at the terminal.
#[derive(Debug)]
pub struct Terminal<'a> {
    ui: &'a Ui,
    /// Where spinners are drawn; `None` when none may be.
    bars: Option<MultiProgress>,
}

impl<'a> Terminal<'a> {
    #[must_use]
    pub fn new(ui: &'a Ui) -> Self {
        let draws = ui.progress && ui.verbosity >= 0 && std::io::stderr().is_terminal();
        Self { ui, bars: draws.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())) }
    }

    fn spinner(&self, template: &str, message: &str) -> Box<dyn Activity + '_> {
        let Some(bars) = &self.bars else { return Box::new(Unwatched) };
        let bar = bars.add(ProgressBar::new_spinner());
        bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner()));
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(TICK);
        Box::new(Spinner { bars, bar })
    }

    /// A line of talk, printed above the spinners so they are not torn.
    fn line(&self, print: impl FnOnce()) {
        match &self.bars {
            Some(bars) => bars.suspend(print),
            None => print(),
        }
    }
}

impl Reporter for Terminal<'_> {
    fn step(&self, message: &str) {
        self.line(|| self.ui.info(message));
    }

    fn detail(&self, message: &str) {
        self.line(|| self.ui.detail(message));
    }

    fn quiet(&self) -> bool {
        self.ui.verbosity < 0
    }

    fn transfer(&self, message: &str, bytes: bool) -> Box<dyn Activity + '_> {
        let template = if bytes { "{spinner} {msg} {bytes}/{total_bytes}" } else { "{spinner} {msg}" };
        self.spinner(template, message)
    }

    fn waiting(&self, subject: &str) -> Box<dyn Activity + '_> {
        self.spinner("{spinner} {msg} ({elapsed})", &format!("{subject}: waiting until it is ready"))
    }
}

/// A spinner on the terminal, removed when its activity finishes or is dropped.
struct Spinner<'a> {
    bars: &'a MultiProgress,
    bar: ProgressBar,
}

impl Activity for Spinner<'_> {
    fn message(&self, message: &str) {
        self.bar.set_message(message.to_owned());
    }

    fn bytes(&self, current: u64, total: u64) {
        self.bar.set_length(total);
        self.bar.set_position(current);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
        self.bars.remove(&self.bar);
    }
}

impl Drop for Spinner<'_> {
    fn drop(&mut self) {
        self.finish();
    }
}

/// What `deploy` and `rollback` do once their plan is made: show it (not with `--json`, whose
/// document comes at the end), apply it through this terminal, and report what was done.
pub async fn show_plan_and_roll_out(
    docker: &bollard::Docker,
    stack: &Stack,
    plan: &Plan,
    timeout: Duration,
    terminal: &Terminal<'_>,
    started: Instant,
) -> ExitCode {
    if !terminal.ui.json {
        terminal.ui.data(&plan.to_text());
    }
    let rollout = roll_out(docker, stack, plan, timeout, terminal, started).await;
    print_rollout(terminal.ui, stack, plan, &rollout)
}

/// Prints what a rollout did and returns the exit status: 0 when every step succeeded, else 1.
#[must_use]
fn print_rollout(ui: &Ui, stack: &Stack, plan: &Plan, rollout: &Rollout) -> ExitCode {
    if ui.json {
        ui.json_document(&rollout.to_json(plan));
    }
    for failure in rollout.failures() {
        ui.failure(failure);
    }
    if rollout.outcome.failed {
        return ExitCode::from(1);
    }
    ui.info(rollout.done(stack));
    if !ui.json {
        for site in Rollout::sites(stack) {
            ui.info(site);
        }
    }
    ExitCode::SUCCESS
}
