//! Durability: contacts survive a `kill -9` of the gateway and keep their places.

mod common;

use common::{Caller, Gateway};

fn rows(g: &Gateway) -> Vec<(String, String, i64)> {
    let db = g.db();
    let mut s = db
        .prepare("SELECT id, state, seniority FROM contacts ORDER BY seniority, seq")
        .unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn contacts_survive_kill_9_and_keep_their_place() {
    let mut g = Gateway::start("restart");
    let callers: Vec<Caller> = (0..3).map(|_| Caller::call(&g, "support", 0)).collect();
    let numbers: Vec<String> = callers.iter().map(|c| c.number.clone()).collect();
    // Confirmed to the caller (the number was in the 200 OK) = already committed.
    g.kill9();
    let before = rows(&g);
    assert_eq!(
        before.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        numbers,
        "every number a caller was given is in the store, in arrival order"
    );
    assert!(before.iter().all(|r| r.1 == "queued"), "{before:?}");

    g.spawn();
    let after = rows(&g);
    assert_eq!(after.len(), 3);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a.0, b.0, "same number");
        assert_eq!(a.2, b.2, "same seniority");
        assert!(
            a.1.starts_with("disconnected"),
            "lost calls are marked: {after:?}"
        );
    }
    let (code, body) = g.http_get("/healthz");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let support = v["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["id"] == "support")
        .unwrap();
    assert_eq!(
        support["waiting"], 3,
        "they still hold their places: {body}"
    );

    // A new caller queues behind them.
    let late = Caller::call(&g, "support", 0);
    assert!(!numbers.contains(&late.number));
    let last = rows(&g).pop().unwrap();
    assert_eq!(last.0, late.number);
    assert_eq!(last.1, "queued");
}
