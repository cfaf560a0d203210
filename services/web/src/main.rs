//! The `masstock-web` binary: everything lives in the library, where tests can call it.

fn main() -> std::process::ExitCode {
    masstock_web::cli::main()
}
