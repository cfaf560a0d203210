//! The `fake-gemini` binary: everything lives in the library, where tests can call it.

fn main() -> std::process::ExitCode {
    masstock_fake_gemini::cli::main()
}
