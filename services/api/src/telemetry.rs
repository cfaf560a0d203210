//! Logs: JSON lines in production, readable lines elsewhere, on stderr. `RUST_LOG` refines.

use crate::config::AppEnv;

pub fn init(app_env: AppEnv) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    // Colour only on a terminal, and never with `NO_COLOR`: log files stay plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    // A second initialisation (tests) keeps the first subscriber.
    let _ = if app_env.is_production() {
        builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init()
    } else {
        builder.try_init()
    };
}
