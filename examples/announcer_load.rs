//! Load check for the announcer: N concurrent streams to local sink sockets for T seconds.
//!
//! ```text
//! cargo run --release --example announcer_load -- [STREAMS=2000] [SECONDS=10]
//! VIDEO=1 cargo run --release --example announcer_load -- [STREAMS] [SECONDS]
//! ```
//!
//! `VIDEO=1`: every stream is a video caller's, with the hold card (5 frames/s of VP8 on a
//! second socket, `media::video`) next to the audio, to compare the cost per parked video
//! call with an audio-only one.
//!
//! Each stream gets its own RTP socket (with a receive task listening for key presses, as in
//! production), speaks a contact number and a position, then plays music on hold with the
//! position repeated every 5 s. Sinks are 16 local UDP sockets, drained by a polling thread
//! that counts what arrives.
//! Prints packets sent/received, late and skipped frames, tick lag, and CPU time (the
//! announcer's time inside ticks, and the whole process's from /proc/self/stat, which also
//! includes the sinks reading every packet back).
//!
//! Sends only to 127.0.0.1 and stops by itself.
#![allow(clippy::print_stdout, reason = "a load-test tool reports on stdout")]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use holdline::media::{
    Announcer, Law, PromptSet, RtpPorts, StreamSpec, VideoSpec, WaitPhrase,
    announcer::AnnouncerStats, video::HoldVideo,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const SINKS: usize = 16;

/// (user, system) CPU seconds of this process. USER_HZ is 100 on Linux.
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 100.0
    };
    (tick(11), tick(12))
}

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
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

    // The sinks stand in for remote phones, whose receiving costs nothing here. Read with
    // epoll, every loopback packet would wake a reader on the other core (an IPI per packet,
    // costly in a VM) and the test would mostly measure itself. So a plain thread drains them
    // every 2 ms without blocking, which still proves delivery. SINK_READ=0 leaves them
    // unread (the kernel drops what overflows) to isolate the sending cost.
    let read_sinks = std::env::var("SINK_READ").map_or(true, |v| v != "0");
    let video = std::env::var("VIDEO").is_ok_and(|v| v == "1");
    let card = HoldVideo::embedded().ok_or_else(|| std::io::Error::other("no hold card"))?;
    let received = Arc::new(AtomicU64::new(0));
    let mut sinks = Vec::new();
    let mut sockets = Vec::new();
    for _ in 0..SINKS {
        let sink = std::net::UdpSocket::bind((localhost, 0))?;
        sink.set_nonblocking(true)?;
        sinks.push(sink.local_addr()?);
        sockets.push(sink);
    }
    let stop_reader = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let received = Arc::clone(&received);
        let stop = Arc::clone(&stop_reader);
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while !stop.load(Ordering::Relaxed) {
                if read_sinks {
                    for sink in &sockets {
                        while sink.recv(&mut buf).is_ok() {
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };

    let ports = RtpPorts::new(
        localhost,
        20_000,
        20_000 + 4 * u16::try_from(streams).unwrap_or(u16::MAX / 8) + 200,
    );
    let setup = Instant::now();
    let mut handles = Vec::new();
    for i in 0..streams {
        let socket = ports.bind().await?;
        let remote: SocketAddr = sinks[i as usize % SINKS];
        let video_spec = if video {
            Some(VideoSpec {
                socket: ports.bind_secondary(0).await?,
                pt: 96,
                card: Arc::clone(&card),
                rtcp_mux: false,
            })
        } else {
            None
        };
        let (stream, events) = announcer
            .start_with_video(
                StreamSpec {
                    socket,
                    remote,
                    law: Law::Pcmu,
                    pt: 0,
                    telephone_event_pt: Some(101),
                    prompts: Arc::clone(&prompts),
                    silence_timeout: None,
                },
                video_spec,
            )
            .await
            .map_err(std::io::Error::other)?;
        if video {
            stream.set_video_remote(sinks[(i as usize + 1) % SINKS]);
        }
        let mut speech = prompts.contact_number(&format!("{:06}", 100_000 + i));
        speech.extend(prompts.position(
            u32::try_from(i % 40 + 1).unwrap_or(1),
            &WaitPhrase::Minutes {
                low: 4,
                high: 6,
                learning: false,
            },
        ));
        speech.extend(prompts.web_info());
        stream.enqueue(speech);
        handles.push((stream, events));
    }
    println!(
        "started {streams} streams in {:.2} s",
        setup.elapsed().as_secs_f64()
    );

    let before_stats = announcer.stats();
    let received0 = received.load(Ordering::Relaxed);
    let (u0, s0) = cpu_seconds();
    let t0 = Instant::now();
    let run = Duration::from_secs(seconds);
    let mut next_update = Duration::from_secs(5);
    while t0.elapsed() < run {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if t0.elapsed() >= next_update {
            // The periodic position update interrupting the music, for every caller.
            for (i, (stream, _)) in handles.iter().enumerate() {
                stream.enqueue(prompts.position(
                    u32::try_from(i % 40 + 1).unwrap_or(1),
                    &WaitPhrase::NoAgents,
                ));
            }
            next_update += Duration::from_secs(5);
        }
        // Drain events so their queues never matter.
        for (_, events) in handles.iter_mut() {
            while events.try_recv().is_ok() {}
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let (u1, s1) = cpu_seconds();
    let after = announcer.stats();
    let received1 = received.load(Ordering::Relaxed);
    let d = |f: fn(&AnnouncerStats) -> u64| f(&after) - f(&before_stats);

    for (stream, _) in handles {
        stream.stop().await;
    }
    // Let the sinks read what is still in flight before counting.
    tokio::time::sleep(Duration::from_millis(100)).await;
    token.cancel();
    tracker.close();
    tracker.wait().await;
    stop_reader.store(true, Ordering::Relaxed);
    let _ = reader.join();

    let expected = streams as f64 * wall * 50.0;
    let cpu = (u1 - u0) + (s1 - s0);
    let busy = d(|s| s.busy_us) as f64 / 1e6;
    println!("streams            {streams}");
    println!("measured for       {wall:.2} s (wall)");
    println!(
        "packets sent       {} (expected ~{expected:.0}, {:.0} pkt/s)",
        d(|s| s.sent),
        d(|s| s.sent) as f64 / wall
    );
    println!(
        "packets received   {} (all sinks, same window; 0 with SINK_READ=0)",
        received1 - received0
    );
    println!(
        "frames late        {} (sent as catch-up after a late tick)",
        d(|s| s.late)
    );
    println!(
        "frames skipped     {} (dropped after a stall)",
        d(|s| s.skipped)
    );
    println!(
        "video packets      {} ({:.0} pkt/s; VIDEO=1 sends the hold card)",
        d(|s| s.video_sent),
        d(|s| s.video_sent) as f64 / wall
    );
    println!("send errors        {}", d(|s| s.send_errors));
    println!(
        "ticks              {} ({} more than 10 ms late, max lag {:.1} ms)",
        d(|s| s.ticks),
        d(|s| s.late_ticks),
        after.max_tick_lag_us as f64 / 1000.0
    );
    println!(
        "announcer busy     {busy:.2} s ({:.1}% of one core, {:.2} us/packet)",
        100.0 * busy / wall,
        1e6 * busy / d(|s| s.sent).max(1) as f64
    );
    println!(
        "process CPU        user {:.2} s + sys {:.2} s = {cpu:.2} s ({:.1}% of one core; includes sinks)",
        u1 - u0,
        s1 - s0,
        100.0 * cpu / wall
    );
    println!(
        "per stream         announcer {:.1} us/s, process {:.1} us/s ({})",
        1e6 * busy / wall / streams.max(1) as f64,
        1e6 * cpu / wall / streams.max(1) as f64,
        if video { "audio + video" } else { "audio only" }
    );
    Ok(())
}
