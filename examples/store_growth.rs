//! How the embedded store's commit time grows with its history (issue 8: INVITE→200 drifted
//! as the database grew in the 30-minute soak at 3,200 calls/s).
//!
//! ```text
//! cargo run --release --example store_growth -- [CONTACTS=3000000] [BATCH=32] [IDS=random|sequential] [DIR]
//! ```
//!
//! Writes what short calls write, as fast as the store takes it: each batch admits BATCH
//! contacts (the row, a "created" and a "queued" event, after the number check the actor
//! makes) and ends the BATCH admitted 100 batches earlier (the row again, an "ended" event),
//! in one transaction, fsynced (`synchronous = FULL`, the default). Every 5 % of the run it
//! prints the contacts so far, the mean and p99 commit time of that window, and the
//! database and WAL sizes. `IDS=sequential` numbers contacts in admission order (not
//! something the product may do: numbers must not be guessable) to show what the
//! random-keyed indexes cost as they outgrow the page cache.
#![allow(clippy::print_stdout, reason = "a load-test tool reports on stdout")]

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Instant;

use holdline::centre::{
    Change, ContactEvent, ContactId, ContactState, EndReason, Store, StoredContact, Timestamp,
};
use holdline::store::SqliteStore;
use rand::SeedableRng;
use rand::rngs::StdRng;

const END_LAG_BATCHES: usize = 100;

fn sequential_id(n: u64) -> ContactId {
    let body = format!("{:011}", n);
    (0..10)
        .find_map(|d| format!("{body}{d}").parse::<ContactId>().ok())
        .expect("one check digit fits")
}

fn row(id: ContactId, seq: u64, at: Timestamp) -> StoredContact {
    let value = serde_json::json!({
        "id": id.as_str(),
        "queue": "sales",
        "media": "voice",
        "state": {"state": "queued"},
        "seniority": at.0,
        "seq": seq,
        "created": at.0,
        "caller": "sip:caller@127.0.0.1:5070",
        "call_ref": format!("{seq}-3311@127.0.0.1"),
        "version": 1,
        "substitute": null,
        "position_rise": null,
        "first_call_ref": format!("{seq}-3311@127.0.0.1"),
        "orig_position": 1,
    });
    serde_json::from_value(value).expect("a valid row")
}

fn event(contact: &ContactId, at: Timestamp, kind: &str) -> ContactEvent {
    ContactEvent {
        contact: contact.clone(),
        at,
        kind: kind.to_owned(),
        detail: String::new(),
    }
}

fn file_size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let total: u64 = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(3_000_000);
    let batch: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(32);
    let sequential = args.get(2).is_some_and(|a| a == "sequential");
    let dir = args.get(3).map(PathBuf::from).unwrap_or_else(|| {
        std::env::temp_dir().join(format!("holdline-store-growth-{}", std::process::id()))
    });
    let _ = std::fs::remove_dir_all(&dir);
    let mut store = SqliteStore::open(&dir).expect("open the store");
    let db = store.path().to_path_buf();
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    let mut rng = StdRng::seed_from_u64(7);
    let mut pending: VecDeque<Vec<StoredContact>> = VecDeque::new();
    let mut window: Vec<f64> = Vec::new();
    let report_every = (total / 20).max(batch);
    let mut next_report = report_every;
    let mut seq = 0u64;
    let mut checks = 0.0f64;
    let started = Instant::now();
    println!(
        "ids={} batch={batch} contacts={total} dir={}",
        if sequential { "sequential" } else { "random" },
        dir.display()
    );
    println!("  contacts   commit_mean_ms  commit_p99_ms  check_us  db_MB  wal_MB  elapsed_s");
    while seq < total {
        let at = Timestamp(1_700_000_000_000 + seq);
        let mut changes = Vec::with_capacity(batch as usize * 5);
        let mut admitted = Vec::with_capacity(batch as usize);
        let t_check = Instant::now();
        for _ in 0..batch {
            seq += 1;
            let id = if sequential {
                sequential_id(seq)
            } else {
                loop {
                    let id = ContactId::random(&mut rng);
                    if !store.number_taken(&id).expect("number check") {
                        break id;
                    }
                }
            };
            let r = row(id.clone(), seq, at);
            changes.push(Change::Contact(r.clone()));
            changes.push(Change::Event(event(&id, at, "created")));
            changes.push(Change::Event(event(&id, at, "queued")));
            admitted.push(r);
        }
        checks += t_check.elapsed().as_secs_f64();
        pending.push_back(admitted);
        if pending.len() > END_LAG_BATCHES
            && let Some(old) = pending.pop_front()
        {
            for mut r in old {
                r.state = ContactState::Ended {
                    at,
                    reason: EndReason::Abandoned,
                };
                r.version += 1;
                changes.push(Change::Event(event(&r.id, at, "ended:abandoned")));
                changes.push(Change::Contact(r));
            }
        }
        let t = Instant::now();
        store.apply(&changes).expect("commit");
        window.push(t.elapsed().as_secs_f64() * 1000.0);
        if seq >= next_report {
            next_report += report_every;
            window.sort_by(f64::total_cmp);
            let mean = window.iter().sum::<f64>() / window.len() as f64;
            let p99 = window[((window.len() as f64 * 0.99) as usize).min(window.len() - 1)];
            println!(
                "{seq:>10}   {mean:>14.3}  {p99:>13.3}  {:>8.2}  {:>5}  {:>6}  {:>9.1}",
                checks * 1e6 / report_every as f64,
                file_size(&db) / 1_000_000,
                file_size(&wal) / 1_000_000,
                started.elapsed().as_secs_f64()
            );
            window.clear();
            checks = 0.0;
        }
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
