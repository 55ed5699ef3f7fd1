//! Pacing check for the announcer: how evenly each RTP stream's packets arrive, against a
//! bare reference loop measured in the same run.
//!
//! ```text
//! cargo run --release --example rtp_pacing -- [STREAMS=2000] [SECONDS=10]
//! ```
//!
//! N streams play music on hold through the real announcer to sink sockets on 127.0.0.1.
//! Beside them one plain thread sends one packet every 20 ms, sleeping to absolute deadlines
//! with `clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)`, to its own sink: the best pacing
//! this machine can do at that moment, so the announcer's figures are read as a ratio to it.
//!
//! Arrival times are the kernel's receive timestamps (`SO_TIMESTAMPNS`), taken when loopback
//! hands the packet over, i.e. in the sender's `sendto`. So the sinks can be drained lazily
//! (every 4 ms, without epoll, see `announcer_load`) without their own scheduling delays
//! entering the figures. Streams are told apart by SSRC.
//!
//! For each stream it prints, over packets whose sequence numbers follow on (a packet lost
//! in the sink would otherwise read as a 40 ms gap):
//! - paired packets: inter-arrival under 5 ms, i.e. two frames at once;
//! - deviation of the inter-arrival from 20 ms, all streams pooled: p50, p99, max.
//!
//! Sends only to 127.0.0.1 and stops by itself.
#![allow(clippy::print_stdout, reason = "a benchmark tool reports on stdout")]

use std::collections::HashMap;
use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use holdline::media::{Announcer, AnnouncerStats, Law, PromptSet, RtpPorts, StreamSpec};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use nix::sys::time::TimeSpec;
use nix::time::{ClockId, ClockNanosleepFlags, clock_gettime, clock_nanosleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Sink sockets shared by the announcer's streams (round-robin), so no sink's buffer
/// overflows between two drains.
const SINKS: usize = 64;
const FRAME_NS: i64 = 20_000_000;
const PAIR_NS: i64 = 5_000_000;
/// SSRC of the reference loop's packets (it has a sink of its own anyway).
const REFERENCE_SSRC: u32 = 0x5EF0_5EF0;

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// The 1-minute load average, to show how shared the machine was.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}

fn sink() -> std::io::Result<UdpSocket> {
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    s.set_nonblocking(true)?;
    setsockopt(&s, sockopt::ReceiveTimestampns, &true).map_err(std::io::Error::from)?;
    // Room for bursts between drains; needs CAP_NET_ADMIN, and SINKS is sized to do
    // without it.
    let _ = setsockopt(&s, sockopt::RcvBufForce, &(4 << 20));
    Ok(s)
}

/// One stream's arrivals as seen by the sinks.
#[derive(Default)]
struct Track {
    last: Option<(i64, u16)>,
    packets: u64,
    lost: u64,
    pairs: u64,
}

#[derive(Default)]
struct Tally {
    tracks: HashMap<u32, Track>,
    /// |inter-arrival - 20 ms| in ns, all streams pooled.
    deviations: Vec<u32>,
}

impl Tally {
    fn arrival(&mut self, ssrc: u32, seq: u16, at_ns: i64, measuring: bool) {
        let t = self.tracks.entry(ssrc).or_default();
        if measuring && let Some((last_at, last_seq)) = t.last {
            t.packets += 1;
            if seq == last_seq.wrapping_add(1) {
                let gap = at_ns - last_at;
                if gap < PAIR_NS {
                    t.pairs += 1;
                }
                let dev = (gap - FRAME_NS).unsigned_abs();
                self.deviations.push(u32::try_from(dev).unwrap_or(u32::MAX));
            } else {
                t.lost += 1;
            }
        }
        t.last = Some((at_ns, seq));
    }

    fn report(&mut self, name: &str) {
        self.deviations.sort_unstable();
        let pct = |p: f64| {
            let n = self.deviations.len();
            if n == 0 {
                return f64::NAN;
            }
            let i = ((n as f64 * p).ceil() as usize).clamp(1, n) - 1;
            f64::from(self.deviations[i]) / 1e6
        };
        let packets: u64 = self.tracks.values().map(|t| t.packets).sum();
        let lost: u64 = self.tracks.values().map(|t| t.lost).sum();
        let pairs: u64 = self.tracks.values().map(|t| t.pairs).sum();
        let paired_streams = self.tracks.values().filter(|t| t.pairs > 0).count();
        println!(
            "{name:<10} {:>7} {packets:>9} {lost:>6} {pairs:>7} {paired_streams:>8} {:>8.3} {:>8.3} {:>8.3}",
            self.tracks.len(),
            pct(0.5),
            pct(0.99),
            pct(1.0),
        );
    }
}

fn ns(t: TimeSpec) -> i64 {
    t.tv_sec() * 1_000_000_000 + t.tv_nsec()
}

/// Drains every sink without blocking; returns packets read.
fn drain(sinks: &[UdpSocket], tally: &mut Tally, measuring: bool) -> usize {
    let mut buf = [0u8; 256];
    let mut cmsg = nix::cmsg_space!(TimeSpec);
    let mut read = 0;
    for s in sinks {
        loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let Ok(msg) = recvmsg::<()>(
                s.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_DONTWAIT,
            ) else {
                break;
            };
            let n = msg.bytes;
            let at = msg.cmsgs().ok().and_then(|mut c| {
                c.find_map(|m| match m {
                    ControlMessageOwned::ScmTimestampns(t) => Some(ns(t)),
                    _ => None,
                })
            });
            read += 1;
            if n < 12 {
                continue;
            }
            let Some(at) = at else { continue };
            let seq = u16::from_be_bytes([buf[2], buf[3]]);
            let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
            tally.arrival(ssrc, seq, at, measuring);
        }
    }
    read
}

/// One thread, one packet per 20 ms to absolute deadlines: the reference.
fn reference_loop(target: SocketAddr, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    let mut packet = [0u8; 172];
    packet[0] = 0x80;
    packet[8..12].copy_from_slice(&REFERENCE_SSRC.to_be_bytes());
    let mut deadline = clock_gettime(ClockId::CLOCK_MONOTONIC).map_err(std::io::Error::from)?;
    let mut seq: u16 = 0;
    while !stop.load(Ordering::Relaxed) {
        deadline = deadline + TimeSpec::from_duration(Duration::from_millis(20));
        // EINTR would only make this one interval short; nothing here sends signals.
        let _ = clock_nanosleep(
            ClockId::CLOCK_MONOTONIC,
            ClockNanosleepFlags::TIMER_ABSTIME,
            &deadline,
        );
        packet[2..4].copy_from_slice(&seq.to_be_bytes());
        seq = seq.wrapping_add(1);
        let _ = sock.send_to(&packet, target);
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::io::Result<()> {
    let streams = arg(1, 2000);
    let seconds = arg(2, 10);
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);

    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    let announcer = Announcer::spawn(token.clone(), &tracker)?;
    let prompts = Arc::new(PromptSet::embedded(Law::Pcmu));

    let mut sinks = Vec::new();
    for _ in 0..SINKS {
        sinks.push(sink()?);
    }
    let sink_addrs: Vec<SocketAddr> = sinks
        .iter()
        .map(UdpSocket::local_addr)
        .collect::<Result<_, _>>()?;
    let reference_sink = sink()?;
    let reference_addr = reference_sink.local_addr()?;

    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = Arc::clone(&stop);
        let measuring = Arc::clone(&measuring);
        std::thread::spawn(move || {
            let mut streams = Tally::default();
            let mut reference = Tally::default();
            let refs = [reference_sink];
            while !stop.load(Ordering::Relaxed) {
                let m = measuring.load(Ordering::Relaxed);
                drain(&sinks, &mut streams, m);
                drain(&refs, &mut reference, m);
                std::thread::sleep(Duration::from_millis(4));
            }
            (streams, reference)
        })
    };
    let reference = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || reference_loop(reference_addr, stop))
    };

    // Above the gateway's default RTP range (20000-39999), so a gateway running on the same
    // machine does not starve this of ports.
    let ports = RtpPorts::new(
        localhost,
        40_000,
        40_000 + 2 * u16::try_from(streams).unwrap_or(10_000).min(10_000) + 200,
    );
    let mut handles = Vec::new();
    for i in 0..streams {
        let socket = ports.bind().await?;
        let (stream, events) = announcer
            .start(StreamSpec {
                socket,
                remote: sink_addrs[i as usize % SINKS],
                law: Law::Pcmu,
                pt: 0,
                telephone_event_pt: Some(101),
                prompts: Arc::clone(&prompts),
                silence_timeout: None,
            })
            .await
            .map_err(std::io::Error::other)?;
        stream.enqueue(prompts.contact_number(&format!("{:06}", 100_000 + i)));
        handles.push((stream, events));
    }
    // Let every stream settle into its rhythm before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let before = announcer.stats();
    let load_before = load();
    measuring.store(true, Ordering::Relaxed);
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        for (_, events) in handles.iter_mut() {
            while events.try_recv().is_ok() {}
        }
    }
    measuring.store(false, Ordering::Relaxed);
    let wall = t0.elapsed().as_secs_f64();
    let after = announcer.stats();
    for (stream, _) in handles {
        stream.stop().await;
    }
    token.cancel();
    tracker.close();
    tracker.wait().await;
    stop.store(true, Ordering::Relaxed);
    let (mut stream_tally, mut reference_tally) = reader.join().expect("reader thread");
    reference
        .join()
        .expect("reference thread")
        .map_err(std::io::Error::other)?;

    let d = |f: fn(&AnnouncerStats) -> u64| f(&after) - f(&before);
    println!(
        "streams {streams}, measured {wall:.2} s (load average {load_before} -> {}); reference: one thread, clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME) to 20 ms deadlines",
        load()
    );
    println!(
        "{:<10} {:>7} {:>9} {:>6} {:>7} {:>8} {:>8} {:>8} {:>8}",
        "", "streams", "intervals", "lost", "paired", "str.pair", "p50 ms", "p99 ms", "max ms"
    );
    stream_tally.report("announcer");
    reference_tally.report("bare loop");
    let p99 = |t: &Tally| {
        let n = t.deviations.len();
        if n == 0 {
            return f64::NAN;
        }
        f64::from(t.deviations[((n as f64 * 0.99).ceil() as usize).clamp(1, n) - 1])
    };
    println!(
        "p99 ratio announcer / bare loop: {:.2}",
        p99(&stream_tally) / p99(&reference_tally)
    );
    // A second frame sent at one tick goes out right after the first: a pair. Since the
    // pacing fix that happens only after a tick more than a frame late (catch-up); before
    // it, also whenever wake-up jitter straddled a stream's due time. The rest are ticks
    // that were late by nearly a frame, followed by one on time.
    let paired: u64 = stream_tally.tracks.values().map(|t| t.pairs).sum();
    println!(
        "paired: {paired} = {} sent as 2nd+ frame at one tick (announcer `late`) + {} others",
        d(|s| s.late),
        i128::from(paired) - i128::from(d(|s| s.late))
    );
    println!(
        "announcer: {} sent, {} late (catch-up), {} skipped, {} send errors, {} ticks ({} > 10 ms late, max lag {:.1} ms), busy {:.1}% of a core",
        d(|s| s.sent),
        d(|s| s.late),
        d(|s| s.skipped),
        d(|s| s.send_errors),
        d(|s| s.ticks),
        d(|s| s.late_ticks),
        after.max_tick_lag_us as f64 / 1000.0,
        100.0 * d(|s| s.busy_us) as f64 / 1e6 / wall,
    );
    Ok(())
}
