//! `docs/openapi.yaml` against the real gateway, by schemathesis (PyPI, the version pinned
//! in `scripts/test`, which installs it in a venv in the target directory): it generates
//! requests from the document, valid and invalid, and checks every answer against it
//! (status codes, content types, headers, bodies; invalid requests refused, valid ones
//! accepted). The demo agent's credentials go in as Basic auth so the agent routes are
//! reached; contact routes mostly meet 404 and 429 (random numbers, the guessing budget),
//! which the document describes too.
//!
//! Needs the venv: `HOLDLINE_SCHEMATHESIS` (the `st` executable), or
//! `<target dir>/schemathesis-venv/bin/st` as `scripts/test` makes it.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Gateway;

fn st() -> PathBuf {
    if let Ok(p) = std::env::var("HOLDLINE_SCHEMATHESIS") {
        return PathBuf::from(p);
    }
    // .../<target dir>/debug/holdline -> .../<target dir>/schemathesis-venv/bin/st
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_holdline"));
    let target = bin.parent().and_then(|p| p.parent()).expect("target dir");
    let st = target.join("schemathesis-venv/bin/st");
    assert!(
        st.exists(),
        "{} is missing: ./scripts/test installs schemathesis (pinned) in that venv",
        st.display()
    );
    st
}

#[test]
fn the_openapi_document_matches_the_server_by_schemathesis() {
    let g = Gateway::start("schemathesis");
    // One caller parked, so some generated numbers' neighbours exist and the figures move.
    let _caller = common::Caller::call(&g, "support", 0);
    let schema = common::repo().join("docs/openapi.yaml");
    let dir = common::scratch_dir("schemathesis");
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("ada:demo-ada-change-me");
    let child = Command::new(st())
        .arg("run")
        .arg(&schema)
        .args(["--url", &format!("http://{}", g.http)])
        // Every check that needs no resource created by another operation (the contact
        // routes need a contact made by a SIP call, not by the API).
        .args(["--checks", "all"])
        .args([
            "--exclude-checks",
            "ensure_resource_availability,use_after_free",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "30"])
        // Reproducible: the same requests every run.
        .args(["--seed", "20261202"])
        .args(["--workers", "1"])
        .args(["-H", &format!("Authorization: Basic {basic}")])
        .arg("--no-color")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start schemathesis");
    let (ok, output) = common::wait_output(child, Duration::from_secs(240));
    assert!(
        ok,
        "schemathesis found the server and docs/openapi.yaml apart:\n{output}\n--- gateway log:\n{}",
        g.log_text()
    );
    assert!(output.contains("passed"), "{output}");
}
