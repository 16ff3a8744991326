//! `dst`: hunt, shrink and replay failures of our scenarios. See `dst --help`.

fn main() -> std::process::ExitCode {
    harness::cli::main(scenarios::registry().command("cargo dst"))
}
