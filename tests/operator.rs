//! What the operator is told, against the real binary: a configuration file holding only
//! `[sip]` runs (merged over the embedded default); the start-up names the callers' page
//! and the agent console and warns loudly about the demo agents; a configuration error, a
//! port in use and a `--data` that names a file are each said once, with what to do.

mod common;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Gateway, HOST, free_port, scratch_dir};

/// Runs the binary with `args` to its exit (bounded): (exit code, stderr + stdout).
fn run(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_holdline"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start holdline");
    let rx = common::drain(&mut child);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "holdline did not exit: {:?}",
            {
                let _ = child.kill();
                rx.iter().collect::<Vec<_>>()
            }
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), rx.iter().collect::<Vec<_>>().join("\n"))
}

fn free_addr() -> String {
    format!("{HOST}:{}", free_port())
}

#[test]
fn a_file_with_only_sip_runs_and_the_start_up_names_the_pages_and_the_demo_agents() {
    let mut g = Gateway::start_with("operator-partial", Some("[sip]\nanswer_delay_ms = 0\n"));
    let log = g.log_text();
    let base = format!("http://{}", g.http);
    assert!(log.contains(&format!("callers' page: {base}/ ")), "{log}");
    assert!(
        log.contains(&format!("agent console: {base}/agent")),
        "{log}"
    );
    assert!(log.contains("DEMO AGENTS ACTIVE: ada, grace"), "{log}");
    // The default's queues and demo agents are there: the support number answers and
    // the demo agent logs in to the API.
    let run = common::sipp(
        &g,
        "caller-waits-and-hangs-up",
        "support",
        &[],
        Duration::from_secs(30),
    );
    assert!(run.ok, "{}", run.output);
    let mut http = common::Http::new(&g);
    let auth = common::basic_auth("ada:demo-ada-change-me");
    let r = http.send("GET", "/api/agent/me", &[("Authorization", &auth)], None);
    assert_eq!(r.status, 200, "{}", r.body);
    g.terminate();
}

#[test]
fn without_demo_agents_there_is_no_warning() {
    let g = Gateway::start_with("operator-no-demo", Some("agent = []\n"));
    let log = g.log_text();
    assert!(log.contains("callers' page:"), "{log}");
    assert!(!log.contains("DEMO AGENTS"), "{log}");
}

/// `line` occurs exactly once in `text`.
fn once(text: &str, line: &str) {
    assert_eq!(
        text.matches(line).count(),
        1,
        "{line:?} not once in:\n{text}"
    );
}

#[test]
fn each_start_up_error_is_said_once_with_what_to_do() {
    let dir = scratch_dir("operator-errors");
    let (sip, http) = (free_addr(), free_addr());
    let data = dir.join("data");
    let data = data.to_str().unwrap();

    // A wrong value: the key, once, and a hint; exit code 2.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[sip]\nlisten = 5\n").unwrap();
    let (code, text) = run(&["--config", bad.to_str().unwrap(), "--data", data]);
    assert_eq!(code, Some(2), "{text}");
    once(&text, "sip.listen");
    once(&text, "hint: ");
    assert!(!text.contains("Caused by"), "{text}");

    // A missing file.
    let (code, text) = run(&["--config", dir.join("nope.toml").to_str().unwrap()]);
    assert_eq!(code, Some(2), "{text}");
    once(&text, "nope.toml: No such file or directory");
    once(&text, "hint: check the path given to --config");

    // The HTTP port is taken.
    let taken = TcpListener::bind((HOST, 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let (code, text) = run(&[
        "--sip",
        &sip,
        "--http",
        &format!("{HOST}:{port}"),
        "--data",
        data,
    ]);
    assert_eq!(code, Some(1), "{text}");
    once(
        &text,
        &format!("HTTP port {port} on {HOST} is already in use"),
    );
    once(&text, "--http ADDR:PORT");
    assert!(!text.contains("Caused by"), "{text}");
    drop(taken);

    // --data names a file.
    let file = dir.join("a-file");
    std::fs::write(&file, "").unwrap();
    let (code, text) = run(&[
        "--sip",
        &sip,
        "--http",
        &http,
        "--data",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{text}");
    once(&text, "is a file, not a directory");
    assert!(!text.contains("File exists"), "{text}");
}
