//! A `dst` of the register example's own, as a downstream project writes one; the command-line
//! tests run it.

fn main() -> std::process::ExitCode {
    harness::cli::main(harness::Registry::new().with(register_example::Register))
}
