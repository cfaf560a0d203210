//! How library work (a deploy, image builds, certificate orders) tells whoever runs it what it is
//! doing: a `Reporter` passed in, never printing of its own.
//!
//! The CLI draws it on stderr (`crate::progress::Terminal`: lines, and spinners on a terminal); a
//! monitor or a web console passes its own (a log, a channel); tests pass `Silent`. The library
//! says what happens; the reporter decides what is shown and how.

/// Receives the events of a piece of work, in the order they happen.
pub trait Reporter: Sync {
    /// A step started or ended, said in one line: `api: create…`, `api: create done in 2.1s`.
    fn step(&self, message: &str);
    /// More about a step, for whoever asked to hear more (`-v`).
    fn detail(&self, message: &str);
    /// Whether only errors are wanted: the tools the work runs (cargo) are told to be quiet too.
    fn quiet(&self) -> bool {
        false
    }
    /// A long transfer or build started (`pulling redis:7`, `building masstock/api:1a2b`); it
    /// reports through the returned handle. `bytes`: it will say how many bytes of how many.
    fn transfer(&self, message: &str, bytes: bool) -> Box<dyn Activity + '_>;
    /// `subject` (a container) is being waited for until it is ready; the wait ends when the
    /// returned handle is finished.
    fn waiting(&self, subject: &str) -> Box<dyn Activity + '_>;
}

/// One long operation in progress. Every method does nothing unless the reporter shows it.
pub trait Activity {
    /// What it does now (`Step 3/7 : COPY rootfs /`).
    fn message(&self, _message: &str) {}
    /// How far a transfer is.
    fn bytes(&self, _current: u64, _total: u64) {}
    /// It ended, well or not: whatever showed it goes away.
    fn finish(&self) {}
}

/// A reporter that shows nothing: for tests, and for callers that only want the result.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

/// An activity nobody watches.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unwatched;

impl Activity for Unwatched {}

impl Reporter for Silent {
    fn step(&self, _message: &str) {}

    fn detail(&self, _message: &str) {}

    fn transfer(&self, _message: &str, _bytes: bool) -> Box<dyn Activity + '_> {
        Box::new(Unwatched)
    }

    fn waiting(&self, _subject: &str) -> Box<dyn Activity + '_> {
        Box::new(Unwatched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reporter that keeps what it is told, as a monitor would.
    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<String>>);

    impl Reporter for Recorder {
        fn step(&self, message: &str) {
            self.0.lock().unwrap().push(format!("step {message}"));
        }

        fn detail(&self, message: &str) {
            self.0.lock().unwrap().push(format!("detail {message}"));
        }

        fn transfer(&self, message: &str, _bytes: bool) -> Box<dyn Activity + '_> {
            self.0.lock().unwrap().push(format!("transfer {message}"));
            Box::new(Unwatched)
        }

        fn waiting(&self, subject: &str) -> Box<dyn Activity + '_> {
            self.0.lock().unwrap().push(format!("waiting {subject}"));
            Box::new(Unwatched)
        }
    }

    #[test]
    fn library_work_reaches_any_reporter_and_silent_is_quiet_only_when_asked() {
        let recorder = Recorder::default();
        let reporter: &dyn Reporter = &recorder;
        reporter.step("api: create…");
        reporter.waiting("masstock-api-1").finish();
        assert_eq!(*recorder.0.lock().unwrap(), ["step api: create…", "waiting masstock-api-1"]);
        assert!(!Silent.quiet(), "a silent reporter still lets tools talk: it only shows nothing itself");
    }
}
