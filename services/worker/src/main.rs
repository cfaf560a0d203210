//! The `masstock-worker` binary: everything lives in the library, where tests can call it.

fn main() -> std::process::ExitCode {
    masstock_worker::cli::main()
}
