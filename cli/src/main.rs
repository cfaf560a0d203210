//! The `masstockctl` binary: everything lives in the library, where tests can call it.

fn main() -> std::process::ExitCode {
    masstockctl::main()
}
