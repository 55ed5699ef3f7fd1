//! Helper for `sipp/bench.sh` (issue 8's "with 10,000 callers already waiting" targets).
//!
//! ```text
//! cargo run --release --example waiting_bench -- seed DATA_DIR N
//! cargo run --release --example waiting_bench -- commands HOST:PORT NUMBERS_FILE K PER_SEC
//! cargo run --release --example waiting_bench -- fanout HOST:PORT NUMBERS_FILE S
//! ```
//!
//! `seed` fills a fresh data directory with N waiting contacts, the way the gateway would
//! have stored them: admitted by the real centre core into `support` and `sales`
//! (alternately) and then replaced by an email each, so they keep their places across the
//! gateway's start without holding a call or an RTP stream (this machine cannot carry
//! 10,000 real calls' media next to the load). Their numbers go to `DATA_DIR/numbers.txt`.
//!
//! `commands` plays K callers using their page's JSON API on K of those numbers at PER_SEC a
//! second: GET the status (session cookie and CSRF token), then time the POST of a move to
//! the other queue, from the request's first byte to the end of the confirmed answer, on a
//! fresh loopback connection each (connect included). Prints p50, p99 and max in ms and
//! the number refused. A tiny HTTP/1.1 client is written here because the request shape is
//! fixed and a client crate would time itself.
//!
//! `fanout` opens S live pages (`GET /api/contacts/N/events`, server-sent events) on the
//! first S numbers, waits until each has its first event, then moves the most senior
//! contact of `support` (the first seeded number) to `sales`: every subscriber's place
//! changes (those in `sales` go back one, those in `support` move up). Prints the mover's
//! own confirmation time and, for every subscriber, the time from that command to its next
//! event: p50, p99, max, and how many got one within 10 s; also the CPU this client and
//! (when `WAITING_BENCH_PID_OF_SERVER` names it) the gateway spent from the command to the
//! last event, since both share the machine (`sipp/fanout-bench.sh` runs it that way).
#![allow(clippy::print_stdout, reason = "a benchmark tool reports on stdout")]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use holdline::centre::{
    Admit, CallbackRules, Centre, CentreConfig, Command, CommandId, CommandRequest, MediaType,
    NewContact, QueueId, QueueSpec, Store, Timestamp,
};
use holdline::store::SqliteStore;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("seed") if args.len() == 3 => seed(&args[1], args[2].parse()?),
        Some("commands") if args.len() == 5 => {
            commands(&args[1], &args[2], args[3].parse()?, args[4].parse()?)
        }
        Some("fanout") if args.len() == 4 => fanout(&args[1], &args[2], args[3].parse()?),
        _ => Err(
            "usage: seed DATA_DIR N | commands HOST:PORT NUMBERS_FILE K PER_SEC | \
             fanout HOST:PORT NUMBERS_FILE S"
                .into(),
        ),
    }
}

fn seed(dir: &str, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let queue = |id: &str| QueueSpec {
        id: QueueId(id.into()),
        name: id.into(),
        skillset: id.into(),
        default_handle_secs: 180,
        remote: None,
    };
    let config = CentreConfig {
        queues: vec![queue("support"), queue("sales")],
        keep_place_secs: 900,
        id_retention_secs: 30 * 86_400,
        max_live_contacts: n + 1,
        callback: CallbackRules::default(),
        agents: Vec::new(),
        wrap_up_secs: 30,
        offer_timeout_secs: 20,
        callback_attempts: 3,
        callback_retry_secs: 300,
        dial_callbacks: false,
        queue_log: None,
        exit_keys: Default::default(),
    };
    let mut store = SqliteStore::open(std::path::Path::new(dir))?;
    let mut centre = Centre::new(config, StdRng::from_os_rng());
    let start = Timestamp::now_wall();
    let mut numbers = String::new();
    let mut changes = Vec::new();
    for k in 0..n {
        // Seniority in the past, one millisecond apart, so new callers queue behind.
        let now = Timestamp(start.0 - (n - k) as u64);
        let id = centre
            .handle(
                now,
                Admit(NewContact {
                    queue: QueueId(if k % 2 == 0 { "support" } else { "sales" }.into()),
                    media: MediaType::Voice,
                    caller: format!("<sip:+4420794{k:06}@seed.test>"),
                    call_ref: format!("seed-{k}"),
                }),
            )?
            .id;
        centre
            .handle(
                now,
                CommandRequest {
                    id: CommandId(format!("seed-{k}")),
                    contact: id.clone(),
                    expected_version: None,
                    command: Command::Email {
                        subject: "Seeded".into(),
                        message: "A waiting contact for the benchmark.".into(),
                        reply_to: "seed@example.org".into(),
                    },
                },
            )
            .map_err(|e| format!("seed command: {e}"))?;
        changes.extend(std::iter::from_fn(|| centre.poll_change()));
        // Emails are not dialled (`dial_callbacks` off, no agents): no effects to carry out.
        while centre.poll_effect().is_some() {}
        numbers.push_str(id.as_str());
        numbers.push('\n');
        if changes.len() > 20_000 {
            store.apply(&changes)?;
            changes.clear();
        }
    }
    store.apply(&changes)?;
    std::fs::write(std::path::Path::new(dir).join("numbers.txt"), numbers)?;
    println!("seeded {n} waiting contacts in {dir}");
    Ok(())
}

/// The `q` quantile (nearest rank) of sorted durations, in ms; NaN for none.
fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

/// One HTTP/1.1 exchange on a fresh connection: (status, headers, body).
fn exchange(addr: &str, request: &str) -> std::io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, head.to_owned(), body.to_owned()))
}

fn commands(
    addr: &str,
    numbers: &str,
    k: usize,
    per_sec: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let numbers: Vec<String> = std::fs::read_to_string(numbers)?
        .lines()
        .map(str::to_owned)
        .collect();
    if numbers.is_empty() {
        return Err("no numbers".into());
    }
    let gap = Duration::from_millis(1000 / per_sec.max(1));
    let mut times = Vec::new();
    let mut refused = 0;
    let start = Instant::now();
    for i in 0..k {
        // Paced from the start, not from the last request, so a slow answer is not hidden.
        let due = start + gap * u32::try_from(i)?;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        // Spread over the line: every one of them has thousands of contacts around it.
        let number = &numbers[(i * 7919) % numbers.len()];
        let (status, took) = move_other(addr, number, &format!("bench-{i}"))?;
        times.push(took);
        if status != 200 {
            refused += 1;
            if refused <= 3 {
                eprintln!("refused {status} for {number}");
            }
        }
    }
    times.sort_unstable();
    let at = |q: f64| quantile_ms(&times, q);
    println!(
        "commands={} refused={refused} confirm_p50={:.1}ms confirm_p99={:.1}ms confirm_max={:.1}ms",
        times.len(),
        at(0.50),
        at(0.99),
        at(1.0)
    );
    Ok(())
}

/// A move of `number` to the other queue: (status, the POST's own time).
fn move_other(
    addr: &str,
    number: &str,
    id: &str,
) -> Result<(u16, Duration), Box<dyn std::error::Error>> {
    let get =
        format!("GET /api/contacts/{number} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let (_, head, body) = exchange(addr, &get)?;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let (Some(csrf), Some(queue)) = (json["csrf"].as_str(), json["queue"].as_str()) else {
        return Err(format!("no status for {number}: {body}").into());
    };
    let cookie = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .unwrap_or_default();
    let to = if queue == "support" {
        "sales"
    } else {
        "support"
    };
    let payload = format!(r#"{{"command_id":"{id}","action":"move_queue","to":"{to}"}}"#);
    let post = format!(
        "POST /api/contacts/{number}/actions HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Cookie: {cookie}\r\nX-CSRF-Token: {csrf}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{payload}",
        payload.len()
    );
    let t = Instant::now();
    let (status, _, _) = exchange(addr, &post)?;
    Ok((status, t.elapsed()))
}

/// utime + stime of a process (all threads) in clock ticks, from `/proc/PID/stat`.
fn cpu_ticks(pid: Option<u32>) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    // Fields after the command name (which may hold spaces) start at state, field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The unit of `/proc/PID/stat` times: USER_HZ, fixed at 100 in Linux's ABI.
fn clock_ticks_per_sec() -> u64 {
    100
}

fn fanout(addr: &str, numbers: &str, subscribers: usize) -> Result<(), Box<dyn std::error::Error>> {
    // The gateway's PID, when the script gives it, to report its CPU in the fan-out.
    let server: Option<u32> = std::env::var("WAITING_BENCH_PID_OF_SERVER")
        .ok()
        .and_then(|p| p.parse().ok());
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let numbers: Vec<String> = std::fs::read_to_string(numbers)?
        .lines()
        .map(str::to_owned)
        .collect();
    let head = numbers.first().ok_or("no numbers")?.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime
        .block_on(async move {
            let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(subscribers.max(1));
            let mut tasks = Vec::new();
            for number in numbers.into_iter().take(subscribers) {
                let addr = addr.to_owned();
                let ready = ready_tx.clone();
                tasks.push(tokio::spawn(async move {
                    let mut s = tokio::net::TcpStream::connect(&addr).await.ok()?;
                    let req = format!(
                        "GET /api/contacts/{number}/events HTTP/1.1\r\nHost: {addr}\r\n\
                     Accept: text/event-stream\r\n\r\n"
                    );
                    s.write_all(req.as_bytes()).await.ok()?;
                    let mut buf = vec![0u8; 16 * 1024];
                    let mut seen = 0usize;
                    let mut text = String::new();
                    loop {
                        let n = s.read(&mut buf).await.ok()?;
                        if n == 0 {
                            return None;
                        }
                        text.push_str(&String::from_utf8_lossy(&buf[..n]));
                        // Two status events are all it waits for (a few KiB): no trimming.
                        let events = text.matches("event: status").count();
                        if events >= 1 && seen == 0 {
                            let _ = ready.send(()).await;
                            seen = 1;
                        }
                        if events >= 2 {
                            // The connection goes back with the time: closing 10,000 of
                            // them while others still wait for their event would put the
                            // teardown (both sides' CPU) inside the measurement.
                            return Some((Instant::now(), s));
                        }
                    }
                }));
            }
            drop(ready_tx);
            let opened = tasks.len();
            let mut ready = 0;
            let wait = tokio::time::timeout(Duration::from_secs(60), async {
                while ready < opened && ready_rx.recv().await.is_some() {
                    ready += 1;
                }
            });
            let _ = wait.await;
            // Profiling hook: `perf record` on the gateway for the fan-out only (not the
            // thousands of page opens before it), stopped after the last event.
            let perf = match (std::env::var("WAITING_BENCH_PERF_OUT"), server) {
                (Ok(out), Some(pid)) => std::process::Command::new("perf")
                    .args([
                        "record",
                        "-F",
                        "1999",
                        "--call-graph",
                        "dwarf,16384",
                        "-o",
                        &out,
                    ])
                    .args(["-p", &pid.to_string()])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .ok(),
                _ => None,
            };
            tokio::time::sleep(Duration::from_millis(500)).await;
            let cpu0 = (cpu_ticks(server), cpu_ticks(Some(std::process::id())));
            let t0 = Instant::now();
            let (status, own) = {
                let (addr, head) = (addr.to_owned(), head.clone());
                tokio::task::spawn_blocking(move || {
                    let id = format!("fanout-{}", std::process::id());
                    move_other(&addr, &head, &id).map_err(|e| e.to_string())
                })
                .await??
            };
            // One deadline for all (a page that never hears is counted, not waited for).
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let mut lat = Vec::new();
            let mut open = Vec::new();
            for t in tasks {
                if let Ok(Ok(Some((at, s)))) = tokio::time::timeout_at(deadline, t).await {
                    lat.push(at.saturating_duration_since(t0));
                    open.push(s);
                }
            }
            let cpu1 = (cpu_ticks(server), cpu_ticks(Some(std::process::id())));
            if let Some(mut perf) = perf {
                let _ = std::process::Command::new("kill")
                    .args(["-INT", &perf.id().to_string()])
                    .status();
                let _ = perf.wait();
            }
            drop(open);
            lat.sort_unstable();
            let at = |q: f64| quantile_ms(&lat, q);
            // CPU from the command to the last event (or the deadline), in ms: the server's
            // (when its PID was given) and this client's own, which shares the machine.
            let spent = |a: Option<u64>, b: Option<u64>| match (a, b) {
                (Some(a), Some(b)) => format!("{}ms", (b - a) * 1000 / clock_ticks_per_sec()),
                _ => "?".to_owned(),
            };
            println!(
                "subscribers={opened} ready={ready} move_status={status} move_confirm={:.1}ms \
             events={} event_p50={:.1}ms event_p99={:.1}ms event_max={:.1}ms \
             server_cpu={} client_cpu={}",
                own.as_secs_f64() * 1000.0,
                lat.len(),
                at(0.5),
                at(0.99),
                at(1.0),
                spent(cpu0.0, cpu1.0),
                spent(cpu0.1, cpu1.1)
            );
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        })
        .map_err(|e| -> Box<dyn std::error::Error> { e.to_string().into() })
}
