//! `http-kv-server`: one node of the key-value service on a real port, with real files.
//!
//! ```text
//! http-kv-server --role backup  --listen 127.0.0.1:8081 --state-dir ./backup
//! http-kv-server --role primary --listen 127.0.0.1:8080 --state-dir ./primary --backup 127.0.0.1:8081
//! curl -X PUT --data hello http://127.0.0.1:8080/kv/greeting
//! curl http://127.0.0.1:8080/kv/greeting
//! ```
//!
//! The same service code the `http-kv` scenario tests in simulation; this binary is built
//! only without `--cfg madsim` (the real build). In the simulated build it says so and exits.

#[cfg(madsim)]
fn main() {
    eprintln!("http-kv-server: this is the simulated build; build it without `--cfg madsim`");
    std::process::exit(2);
}

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    real::main()
}

#[cfg(not(madsim))]
mod real {
    use clap::{Parser, ValueEnum};
    use http_kv::{Config, Role};
    use std::process::ExitCode;
    use std::time::Duration;

    #[derive(Clone, Copy, Debug, ValueEnum)]
    enum RoleName {
        Primary,
        Backup,
    }

    /// One node of the primary-backup key-value service over HTTP/1.1.
    #[derive(Debug, Parser)]
    #[command(name = "http-kv-server", version)]
    struct Args {
        /// Primary (serves clients, replicates to --backup) or backup.
        #[arg(long, value_enum)]
        role: RoleName,
        /// The address to listen on (`host:port`).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// The directory of the state files (made if missing).
        #[arg(long)]
        state_dir: String,
        /// The backup's address (`host:port`); the primary needs it.
        #[arg(long, required_if_eq("role", "primary"))]
        backup: Option<String>,
        /// How long the primary waits for the backup, in milliseconds.
        #[arg(long, default_value_t = 150)]
        backup_timeout_ms: u64,
        /// How often the primary heartbeats and the backup checks, in milliseconds.
        #[arg(long, default_value_t = 100)]
        heartbeat_every_ms: u64,
        /// The backup takes over after this long without a word from the primary, in
        /// milliseconds.
        #[arg(long, default_value_t = 1000)]
        promote_after_ms: u64,
    }

    pub fn main() -> ExitCode {
        let args = Args::parse();
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_target(false)
            .init();
        let role = match (args.role, args.backup) {
            (RoleName::Primary, Some(backup)) => Role::Primary { backup },
            (RoleName::Primary, None) => unreachable!("clap requires --backup for a primary"),
            (RoleName::Backup, _) => Role::Backup,
        };
        if let Err(error) = std::fs::create_dir_all(&args.state_dir) {
            eprintln!("http-kv-server: cannot make {}: {error}", args.state_dir);
            return ExitCode::from(2);
        }
        let mut config = Config::new(role);
        config.listen = args.listen;
        config.state_dir = args.state_dir;
        config.backup_timeout = Duration::from_millis(args.backup_timeout_ms);
        config.heartbeat_every = Duration::from_millis(args.heartbeat_every_ms);
        config.promote_after = Duration::from_millis(args.promote_after_ms);
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                eprintln!("http-kv-server: cannot start the runtime: {error}");
                return ExitCode::from(1);
            }
        };
        let listen = config.listen.clone();
        match runtime.block_on(http_kv::service::serve(config)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("http-kv-server: serving on {listen}: {error}");
                ExitCode::from(1)
            }
        }
    }
}
