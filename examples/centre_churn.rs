//! Does the centre's memory follow the live load, or the history? (issue 10: RSS grew from
//! 684 to 980 MB over the 30-minute soak at 3,200 calls/s, not attributed.)
//!
//! ```text
//! cargo run --release --example centre_churn -- [SECS=180] [TASKS=64] [RATE=0]
//! ```
//!
//! Runs the real centre thread (`centre::spawn`: actor, group commit, read view, timelines,
//! effects) on a store that keeps nothing, and has TASKS tasks admit a call and hang it up
//! (abandoned, no kept place), RATE contacts a second in all (0: as fast as the centre
//! takes them), for SECS seconds of wall time. Ended contacts stay in memory `ENDED_VISIBLE_SECS` (60 s), so from the second
//! minute on the resident set should be flat if nothing else grows with the history.
//! Every 10 s it prints the contacts so far, the rate of the last 10 s and VmRSS.
#![allow(clippy::print_stdout, reason = "a load-test tool reports on stdout")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use holdline::centre::{
    CallbackRules, CentreConfig, Change, ChatMessage, ContactEvent, ContactId, EndReason,
    MediaType, NewContact, QueueId, QueueSpec, Store, StoreError, Stored, StoredContact, Timestamp,
};
use tokio_util::sync::CancellationToken;

/// Keeps nothing: the figure is the centre's own memory, not a store's.
struct Nothing;

impl Store for Nothing {
    fn load_since(&mut self, _: Timestamp) -> Result<Stored, StoreError> {
        Ok(Stored::default())
    }
    fn apply(&mut self, _: &[Change]) -> Result<(), StoreError> {
        Ok(())
    }
    fn contact(&mut self, _: &ContactId) -> Result<Option<StoredContact>, StoreError> {
        Ok(None)
    }
    fn events(&mut self, _: &ContactId) -> Result<Vec<ContactEvent>, StoreError> {
        Ok(Vec::new())
    }
    fn number_taken(&mut self, _: &ContactId) -> Result<bool, StoreError> {
        Ok(false)
    }
    fn messages(&mut self, _: &ContactId) -> Result<Vec<ChatMessage>, StoreError> {
        Ok(Vec::new())
    }
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let secs: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(180);
    let tasks: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(64);
    let rate: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(0);
    let queue = QueueId("sales".into());
    let config = CentreConfig {
        queues: vec![QueueSpec {
            id: queue.clone(),
            name: "Sales".into(),
            skillset: "sales".into(),
            default_handle_secs: 300,
            remote: None,
        }],
        keep_place_secs: 0,
        id_retention_secs: 30 * 86_400,
        max_live_contacts: 100_000,
        callback: CallbackRules::default(),
        agents: Vec::new(),
        wrap_up_secs: 10,
        offer_timeout_secs: 20,
        callback_attempts: 3,
        callback_retry_secs: 300,
        dial_callbacks: true,
        queue_log: None,
        exit_keys: Default::default(),
    };
    let token = CancellationToken::new();
    let (centre, thread) =
        holdline::centre::spawn(config, Box::new(Nothing), token.clone()).expect("centre starts");
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut workers = Vec::new();
    for t in 0..tasks {
        let centre = centre.clone();
        let done = done.clone();
        let queue = queue.clone();
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            // Each task's share of RATE, on its own schedule.
            let every = (rate > 0).then(|| Duration::from_secs_f64(tasks as f64 / rate as f64));
            let first = Instant::now();
            while Instant::now() < deadline {
                n += 1;
                if let Some(every) = every {
                    let due = first + every.mul_f64(n as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let admitted = centre
                    .admit_call(NewContact {
                        queue: queue.clone(),
                        media: MediaType::Voice,
                        caller: format!("sip:+4420{t:04}{n:06}@127.0.0.1"),
                        call_ref: format!("{t}-{n}@churn"),
                    })
                    .await
                    .expect("admitted");
                centre
                    .end(admitted.status.id, EndReason::Abandoned)
                    .await
                    .expect("ended");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    println!("    secs   contacts   per_sec   rss_MB");
    let started = Instant::now();
    let mut last = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let now = done.load(Ordering::Relaxed);
        println!(
            "{:>8.0} {:>10} {:>9} {:>8}",
            started.elapsed().as_secs_f64(),
            now,
            (now - last) / 10,
            rss_kb() / 1024
        );
        last = now;
    }
    for w in workers {
        w.await.expect("worker");
    }
    token.cancel();
    drop(centre);
    thread.join().expect("centre thread");
}
