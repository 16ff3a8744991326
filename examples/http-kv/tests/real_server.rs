//! The service for real: `http-kv-server` processes on loopback ports with real files, the
//! primary killed with SIGKILL, the backup taking over with every acknowledged write, and a
//! restarted node serving what it stored (the real build only: no `--cfg madsim`).
#![cfg(not(madsim))]
// Real processes on real ports: the deadlines are on the real clock, which is the point here.
#![allow(clippy::disallowed_methods)]

use http_kv::client::KvClient;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the server process when the test ends, whatever happens.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("an ephemeral port");
    listener.local_addr().unwrap().port()
}

fn start(role: &str, listen: &str, state_dir: &Path, backup: Option<&str>) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_http-kv-server"));
    command
        .args([
            "--role",
            role,
            "--listen",
            listen,
            "--promote-after-ms",
            "400",
        ])
        .arg("--state-dir")
        .arg(state_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(backup) = backup {
        command.args(["--backup", backup]);
    }
    Server(command.spawn().expect("the server binary starts"))
}

fn wait_listening(addr: &str) {
    let addr: SocketAddr = addr.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
        assert!(Instant::now() < deadline, "{addr} never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("http-kv-real-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Reads `key` until some server answers `expected`, for at most `within`.
async fn read_until(client: &mut KvClient, key: &str, expected: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        match client.get(key).await {
            Ok(served) if served.value.as_deref() == Some(expected) => return,
            Ok(served) => panic!("{key} read {:?}, expected {expected}", served.value),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(failed) => panic!("{key} never read back: {failed:?}"),
        }
    }
}

#[test]
fn a_killed_primary_loses_no_acknowledged_write_and_a_restarted_backup_keeps_them() {
    let root = temp_dir("failover");
    let primary_addr = format!("127.0.0.1:{}", free_port());
    let backup_addr = format!("127.0.0.1:{}", free_port());
    let backup = start("backup", &backup_addr, &root.join("backup"), None);
    let primary = start(
        "primary",
        &primary_addr,
        &root.join("primary"),
        Some(&backup_addr),
    );
    wait_listening(&backup_addr);
    wait_listening(&primary_addr);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let servers = vec![primary_addr.clone(), backup_addr.clone()];
        let mut client = KvClient::new(servers, Duration::from_secs(2));
        for (key, value) in [("a", "1"), ("b", "2"), ("a", "3")] {
            let served = client
                .put(key, value)
                .await
                .expect("the primary acknowledges");
            assert_eq!(served.server, 0, "the primary is the first server");
        }
        read_until(&mut client, "a", "3", Duration::from_secs(5)).await;
        assert_eq!(client.get("missing").await.unwrap().value, None);

        // SIGKILL: no goodbye. The backup takes over after 400 ms of silence.
        drop(primary);
        read_until(&mut client, "a", "3", Duration::from_secs(10)).await;
        read_until(&mut client, "b", "2", Duration::from_secs(10)).await;
        client
            .put("c", "4")
            .await
            .expect("the promoted backup takes writes");

        // The promoted backup restarts: its files still hold every acknowledged write.
        drop(backup);
        let _backup = start("backup", &backup_addr, &root.join("backup"), None);
        wait_listening(&backup_addr);
        let mut client = KvClient::new(vec![backup_addr.clone()], Duration::from_secs(2));
        read_until(&mut client, "c", "4", Duration::from_secs(10)).await;
        read_until(&mut client, "a", "3", Duration::from_secs(10)).await;
    });
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_primary_without_a_backup_address_is_refused_on_one_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_http-kv-server"))
        .args(["--role", "primary", "--state-dir", "/tmp/unused"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("error:"), "{stderr}");
    assert!(stderr.contains("--backup"), "{stderr}");
}
