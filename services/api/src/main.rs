//! The `masstock-api` binary: everything lives in the library, where tests can call it.

fn main() -> std::process::ExitCode {
    masstock_api::cli::main()
}
