//! The `dst` command line over the workspace's scenarios, built with the workspace tests so that
//! they can run its real parser (`CARGO_BIN_EXE_*` names only a package's own binaries, and
//! `dst` is the `scenarios` package's). `tests/deploy.rs` runs the deployment files' command
//! lines through it.

fn main() -> std::process::ExitCode {
    harness::cli::main(scenarios::registry().command("cargo dst"))
}
