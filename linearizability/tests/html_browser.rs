//! The HTML view loaded in a real headless browser: the script must run and draw every
//! operation, the verdict, the linearization order and the operation that cannot be placed.
//! Skipped only when no browser is installed and `CI` is not `true` (`.ci/run` installs
//! Chromium, so under CI a missing browser fails the test).

use linearizability::history::History;
use linearizability::html;
use linearizability::models::{Register, RegisterInput, RegisterOutput};
use linearizability::{check_with, CheckOptions};
use std::path::PathBuf;
use std::process::Command;

const BROWSERS: [&str; 4] = ["chromium", "chromium-browser", "google-chrome", "chrome"];

/// The first browser on the `PATH` that answers `--version`.
fn browser() -> Option<&'static str> {
    BROWSERS.into_iter().find(|name| {
        Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success())
    })
}

/// The DOM after the page's script ran, or `None` when no browser is installed.
fn rendered_dom(page: &str, name: &str) -> Option<String> {
    let Some(browser) = browser() else {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!ci, "CI=true but no browser ({BROWSERS:?}) is installed");
        eprintln!("skipped: no browser installed ({BROWSERS:?})");
        return None;
    };
    // One profile per page: tests run in parallel, and Chromium locks its profile.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("html_browser");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, page).unwrap();
    let out = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!(
            "--user-data-dir={}",
            dir.join(format!("profile-{name}")).display()
        ))
        .arg(format!("file://{}", file.display()))
        .output()
        .expect("the browser runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

fn history(stale: bool) -> History<RegisterInput<u32>, RegisterOutput<u32>> {
    let mut history = History::new();
    let write = history.invoke(1, RegisterInput::Write(1), 0).unwrap();
    history
        .complete(write, RegisterOutput::WriteOk, 10)
        .unwrap();
    let open = history.invoke(2, RegisterInput::Write(2), 5).unwrap();
    history.mark_indeterminate(open).unwrap();
    let read = history.invoke(3, RegisterInput::Read, 20).unwrap();
    let seen = if stale { 0 } else { 1 };
    history
        .complete(read, RegisterOutput::ReadOk(seen), 30)
        .unwrap();
    history
}

#[test]
fn an_illegal_history_shows_its_prefix_and_the_operation_that_cannot_be_placed() {
    let history = history(true);
    let report = check_with(&Register::new(0), &history, &CheckOptions::default());
    assert!(report.result.is_illegal());
    let page = html::render(&history, &report);
    let Some(dom) = rendered_dom(&page, "illegal.html") else {
        return;
    };
    assert!(
        dom.contains(r#"data-rendered="3""#),
        "the script ran: {dom}"
    );
    assert_eq!(dom.matches(r#"data-op=""#).count(), 3, "{dom}");
    assert!(dom.contains("not linearizable"), "{dom}");
    assert!(
        dom.contains("cannot be placed: #2 Read -&gt; ReadOk(0)"),
        "{dom}"
    );
    assert!(dom.contains(r#"class="op blocking" data-op="2""#), "{dom}");
    assert!(
        dom.contains("[1] Write(1)"),
        "the prefix is numbered: {dom}"
    );
}

#[test]
fn a_linearizable_history_shows_its_linearization_order() {
    let history = history(false);
    let report = check_with(&Register::new(0), &history, &CheckOptions::default());
    assert!(report.result.is_ok());
    let page = html::render(&history, &report);
    let Some(dom) = rendered_dom(&page, "ok.html") else {
        return;
    };
    assert!(dom.contains("<h1 id=\"result\">linearizable</h1>"), "{dom}");
    assert!(dom.contains("[1] Write(1) -&gt; WriteOk"), "{dom}");
    assert!(dom.contains("[2] Read -&gt; ReadOk(1)"), "{dom}");
    assert!(
        dom.contains(r#"class="op open" data-op="1""#),
        "the open write: {dom}"
    );
}
