//! Load check for agent routing in the pure contact-centre core, on a virtual clock.
//!
//! ```text
//! cargo run --release --example routing_load -- [CONTACTS=10000] [AGENTS=200] [QUEUES=4]
//! cargo run --release --example routing_load -- 1000,10000,100000 1000 8
//! ```
//!
//! With several sizes (comma-separated) it runs each and then prints one table of the
//! per-operation p99 side by side, to show whether a change costs more with more contacts.
//!
//! Admits CONTACTS voice contacts spread round-robin over QUEUES queues, logs every agent
//! in (agent `i` has skills for queues `i` and `i + 1`, modulo QUEUES), then runs rounds
//! until every contact is handled. In a round, the agents that click "ready" (all of them
//! in the first round, the even ones afterwards, ending their wrap-up early) are offered
//! contacts by the routing inside `agent_ready` and answer at once; then the clock moves
//! past `wrap_up_secs` and `tick` ends the odd agents' wrap-up and routes to them; they
//! answer; after a talk time every busy agent calls `contact_handled`.
//!
//! Prints the wall time of each phase and of the whole run, mean and p99 of one call of
//! `admit` (over the whole fill, and over its last tenth: the queue at full size),
//! `agent_ready` (which includes routing), `offer_answered`, `contact_handled`, `tick`, and
//! of `board(now)` (what the actor publishes after every batch), `status(id)` of a random
//! queued contact (what every page and announcement reads), a caller's command (move to
//! another queue and back, keeping seniority) and a caller hanging up mid-line, all with
//! every contact queued, and of the whole `snapshot(now)` (tests and tools only), contacts
//! handled per second and the peak RSS (VmHWM). `Instant` is used only for measuring; the
//! centre sees the virtual clock.
#![allow(clippy::print_stdout, reason = "a load-test tool reports on stdout")]

use std::hint::black_box;
use std::time::Instant;

use holdline::centre::{
    Admit, AgentId, AgentInput, AgentOp, AgentSpec, CallbackRules, Centre, CentreConfig, Command,
    CommandId, CommandRequest, ContactId, Effect, End, EndReason, Input, MediaType, NewContact,
    QueueId, QueueSpec, Reach, Tick, Timestamp,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A plausible unix-millis start (2023-11-14).
const T0: Timestamp = Timestamp(1_700_000_000_000);
const WRAP_UP_SECS: u32 = 30;
/// Within the 20 s offer timeout, so no offer fails.
const RING_SECS: u64 = 3;
const TALK_SECS: u64 = 120;
/// Snapshots timed with every contact queued.
const SNAPSHOTS: usize = 10;

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// Peak resident set size in KiB, from /proc/self/status.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Nanosecond samples of one operation.
#[derive(Default)]
struct Samples(Vec<u64>);

impl Samples {
    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        self.0
            .push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        out
    }

    /// The 99th percentile (nearest rank) in microseconds.
    fn p99_us(&self) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let rank = (sorted.len() * 99).div_ceil(100).max(1) - 1;
        sorted.get(rank).map_or(0.0, |&n| n as f64 / 1e3)
    }

    /// "mean .. us  p99 .. us  (n calls)".
    fn line(&self) -> String {
        if self.0.is_empty() {
            return "no calls".to_owned();
        }
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let mean = sorted.iter().sum::<u64>() as f64 / sorted.len() as f64;
        // Nearest rank.
        let rank = (sorted.len() * 99).div_ceil(100).max(1) - 1;
        format!(
            "mean {:>10.2} us   p99 {:>10.2} us   max {:>10.2} us   ({} calls)",
            mean / 1e3,
            sorted[rank] as f64 / 1e3,
            sorted[sorted.len() - 1] as f64 / 1e3,
            sorted.len()
        )
    }
}

/// The agents of the `Offer` effects.
/// One input through the centre's contract, as the actor drives it: handle, then take what
/// it stored (dropped here: no store) and what the front-end must do.
fn step<I: Input>(
    c: &mut Centre,
    now: Timestamp,
    input: I,
) -> Result<(I::Reply, Vec<Effect>), I::Error> {
    let reply = c.handle(now, input)?;
    while let Some(change) = c.poll_change() {
        black_box(change);
    }
    Ok((reply, std::iter::from_fn(|| c.poll_effect()).collect()))
}

fn agent(id: &AgentId, op: AgentOp) -> AgentInput {
    AgentInput {
        agent: id.clone(),
        op,
    }
}

fn offered(effects: Vec<Effect>, into: &mut Vec<usize>, index: &dyn Fn(&AgentId) -> usize) {
    for effect in effects {
        if let Effect::Offer { agent, .. } = effect {
            into.push(index(&agent));
        }
    }
}

/// p99 in microseconds of each operation, for the side-by-side table.
type Row = Vec<(&'static str, f64)>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sizes: Vec<usize> = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "10000".to_owned())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let agents = arg(2, 200).max(1);
    let queues = arg(3, 4).max(1);
    let mut rows = Vec::new();
    for &contacts in &sizes {
        rows.push((contacts, run(contacts, agents, queues)?));
        println!();
    }
    if rows.len() > 1 {
        println!("p99 per operation (us), {agents} agents, {queues} queues:");
        print!("{:<18}", "contacts");
        for (n, _) in &rows {
            print!("{n:>12}");
        }
        println!();
        for (k, (name, _)) in rows[0].1.iter().enumerate() {
            print!("{name:<18}");
            for (_, row) in &rows {
                print!("{:>12.2}", row[k].1);
            }
            println!();
        }
    }
    Ok(())
}

fn run(contacts: usize, agents: usize, queues: usize) -> Result<Row, Box<dyn std::error::Error>> {
    let queue_ids: Vec<QueueId> = (0..queues).map(|q| QueueId(format!("q{q}"))).collect();
    let agent_ids: Vec<AgentId> = (0..agents).map(|i| AgentId(format!("a{i:04}"))).collect();
    let config = CentreConfig {
        queues: queue_ids
            .iter()
            .map(|id| QueueSpec {
                id: id.clone(),
                name: id.0.to_uppercase(),
                skillset: id.0.clone(),
                default_handle_secs: 300,
                remote: None,
            })
            .collect(),
        keep_place_secs: 600,
        id_retention_secs: 86_400,
        max_live_contacts: contacts.max(1) + 1000,
        callback: CallbackRules::default(),
        agents: agent_ids
            .iter()
            .enumerate()
            .map(|(i, id)| AgentSpec {
                id: id.clone(),
                name: format!("Agent {i}"),
                skills: [i % queues, (i + 1) % queues]
                    .into_iter()
                    .map(|q| (queue_ids[q].clone(), 5))
                    .collect(),
                reach: Reach::Uri(format!("sip:{id}@agents.test")),
            })
            .collect(),
        wrap_up_secs: WRAP_UP_SECS,
        offer_timeout_secs: 20,
        callback_attempts: 3,
        callback_retry_secs: 300,
        dial_callbacks: true,
        queue_log: None,
        exit_keys: Default::default(),
    };
    let index = |id: &AgentId| {
        id.0[1..]
            .parse::<usize>()
            .expect("agent ids are a0000, a0001, ...")
    };
    let mut centre = Centre::new(config, StdRng::seed_from_u64(7));
    let mut now = T0;
    let start = Instant::now();

    // Fill: one contact per millisecond, round-robin over the queues.
    let mut admit = Samples::default();
    for n in 0..contacts {
        now = Timestamp(now.0 + 1);
        let new = NewContact {
            queue: queue_ids[n % queues].clone(),
            media: MediaType::Voice,
            caller: format!("\"Caller\" <sip:+44207946{n:05}@example.test>;tag=x"),
            call_ref: format!("call-{n}"),
        };
        black_box(admit.time(|| step(&mut centre, now, Admit(new)))?);
    }
    let fill_secs = start.elapsed().as_secs_f64();
    let tail = (contacts / 10).max(1).min(admit.0.len());
    let admit_full = Samples(admit.0[admit.0.len() - tail..].to_vec());

    let mut snapshot = Samples::default();
    let mut snapshot_len = 0;
    for _ in 0..SNAPSHOTS {
        snapshot_len = black_box(snapshot.time(|| centre.snapshot(now)))
            .contacts
            .len();
    }
    // With every contact queued: what readers and callers do, on random contacts.
    let ids: Vec<ContactId> = centre.snapshot(now).contacts.into_keys().collect();
    let mut rng = StdRng::seed_from_u64(11);
    let (mut board, mut status, mut command, mut hang_up) = (
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
    );
    for _ in 0..1000 {
        black_box(board.time(|| centre.board(now)));
    }
    for _ in 0..10_000 {
        let id = &ids[rng.random_range(0..ids.len())];
        black_box(status.time(|| centre.status(id)));
    }
    for k in 0..1000 {
        let id = &ids[rng.random_range(0..ids.len())];
        let Some(from) = centre.status(id).map(|s| s.queue) else {
            continue;
        };
        let to = queue_ids
            .iter()
            .find(|q| **q != from)
            .unwrap_or(&from)
            .clone();
        for (leg, queue) in [("a", to), ("b", from)] {
            now = Timestamp(now.0 + 1);
            let request = CommandRequest {
                id: CommandId(format!("move-{k}-{leg}")),
                contact: id.clone(),
                expected_version: None,
                command: Command::MoveQueue { to: queue },
            };
            black_box(command.time(|| step(&mut centre, now, request)))?;
        }
    }
    // Callers hanging up from the middle of the line (then admitted again, untimed, so
    // the rounds below still handle `contacts` contacts).
    for k in 0..1000.min(contacts) {
        let id = &ids[rng.random_range(0..ids.len())];
        now = Timestamp(now.0 + 1);
        if hang_up
            .time(|| {
                let id = id.clone();
                let reason = EndReason::Abandoned;
                step(&mut centre, now, End { id, reason })
            })
            .is_ok()
        {
            let new = NewContact {
                queue: queue_ids[k % queues].clone(),
                media: MediaType::Voice,
                caller: format!("\"Caller\" <sip:+44207947{k:05}@example.test>;tag=x"),
                call_ref: format!("again-{k}"),
            };
            step(&mut centre, now, Admit(new))?;
        }
    }
    let contacts_handled_target = contacts;

    // Login, then rounds until everyone is handled.
    let rounds_start = Instant::now();
    for id in &agent_ids {
        black_box(step(&mut centre, now, agent(id, AgentOp::Login))?);
    }
    let (mut ready, mut answered, mut handled_t, mut tick) = (
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
    );
    // Agents that are not ready or wrapping up (the rest are ready with nothing to do).
    let mut waiting = vec![true; agents];
    let mut handled = 0usize;
    let mut round = 0usize;
    while handled < contacts_handled_target {
        round += 1;
        let mut busy = Vec::new();
        now = now.plus_secs(1);
        let mut offers = Vec::new();
        for (i, id) in agent_ids.iter().enumerate() {
            if waiting[i] && (round == 1 || i % 2 == 0) {
                waiting[i] = false;
                let (_, effects) =
                    ready.time(|| step(&mut centre, now, agent(id, AgentOp::Ready)))?;
                offered(effects, &mut offers, &index);
            }
        }
        now = now.plus_secs(RING_SECS);
        for &i in &offers {
            black_box(
                answered
                    .time(|| step(&mut centre, now, agent(&agent_ids[i], AgentOp::Answered)))?,
            );
        }
        busy.append(&mut offers);
        if round > 1 {
            now = now.plus_secs(u64::from(WRAP_UP_SECS));
            let (_, effects) = tick.time(|| step(&mut centre, now, Tick))?;
            offered(effects, &mut offers, &index);
            for w in waiting.iter_mut() {
                *w = false;
            }
            now = now.plus_secs(RING_SECS);
            for &i in &offers {
                black_box(
                    answered
                        .time(|| step(&mut centre, now, agent(&agent_ids[i], AgentOp::Answered)))?,
                );
            }
            busy.append(&mut offers);
        }
        if busy.is_empty() {
            return Err(format!("round {round}: nothing offered, {handled} handled").into());
        }
        now = now.plus_secs(TALK_SECS);
        for &i in &busy {
            black_box(
                handled_t
                    .time(|| step(&mut centre, now, agent(&agent_ids[i], AgentOp::Handled)))?,
            );
            waiting[i] = true;
            handled += 1;
        }
    }
    let rounds_secs = rounds_start.elapsed().as_secs_f64();
    let wall = start.elapsed().as_secs_f64();
    if centre.live_count() != 0 {
        return Err(format!("{} contacts still live", centre.live_count()).into());
    }

    println!("contacts {contacts}   agents {agents}   queues {queues}   rounds {round}");
    println!(
        "wall               {wall:.3} s   (fill {fill_secs:.3} s, {SNAPSHOTS} snapshots, rounds {rounds_secs:.3} s)"
    );
    println!(
        "handled            {handled} in {rounds_secs:.3} s = {:.0} contacts/s (rounds); {:.0}/s overall",
        handled as f64 / rounds_secs,
        handled as f64 / wall
    );
    println!("admit (fill)       {}", admit.line());
    println!("admit (last 10%)   {}", admit_full.line());
    println!(
        "snapshot ({snapshot_len} contacts) {}",
        snapshot.line().trim_start()
    );
    println!("board              {}", board.line());
    println!("status             {}", status.line());
    println!("command (move)     {}", command.line());
    println!("end (hang-up)      {}", hang_up.line());
    println!("agent_ready        {}", ready.line());
    println!("offer_answered     {}", answered.line());
    println!("contact_handled    {}", handled_t.line());
    println!("tick               {}", tick.line());
    println!("peak RSS           {} MiB", peak_rss_kib() / 1024);
    Ok(vec![
        ("admit (last 10%)", admit_full.p99_us()),
        ("status", status.p99_us()),
        ("board", board.p99_us()),
        ("command (move)", command.p99_us()),
        ("end (hang-up)", hang_up.p99_us()),
        ("agent_ready", ready.p99_us()),
        ("offer_answered", answered.p99_us()),
        ("contact_handled", handled_t.p99_us()),
        ("tick", tick.p99_us()),
        ("snapshot (O(n))", snapshot.p99_us()),
    ])
}
