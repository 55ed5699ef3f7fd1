//! The announcer's clock: one OS thread that wakes on the 20 ms grid and sends every stream's
//! due frames.
//!
//! Why a thread of its own rather than a tokio task: tokio's timer wheel has 1 ms
//! granularity and fires on worker threads shared with SIP, the web and the centre, so a
//! tick woke 0–1 ms late plus however long those threads were busy, a different amount each
//! tick, and every stream's inter-packet gap carried that jitter (per-stream p99 deviation
//! 7–11× that of a bare `clock_nanosleep` loop, see `examples/rtp_pacing.rs`). This thread
//! sleeps with `clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)` to each tick's absolute
//! deadline, so it wakes within the kernel's timer slack of the tick and never drifts,
//! whatever the runtime is doing.
//!
//! It owns the streams; the handles reach it over the bounded command channel, which it
//! drains at each tick before sending (so a stream started or an announcement enqueued
//! before a tick is in that tick). Sends are non-blocking (`try_send_to`): a full socket
//! buffer loses that one frame and holds up no other stream. It stops when the announcer's
//! token is cancelled (checked every tick) or every handle is gone, drops the streams (and
//! so their sockets) and exits; a task on the caller's `TaskTracker` joins it, so waiting
//! for the tracker still means the announcer has let go of everything.
//!
//! Scheduling priority: left at the default. `SCHED_FIFO`/`SCHED_RR` or a negative nice
//! value need `CAP_SYS_NICE` (or an `RLIMIT_RTPRIO` set by the administrator), which the
//! gateway does not otherwise need and should not run with; a real-time thread that spends
//! half a core sending at 2,000 streams could also starve SIP on a small machine. The
//! reference this is measured against (a bare loop) runs at the default priority too.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::time::TimeSpec;
use nix::time::{ClockId, ClockNanosleepFlags, clock_gettime, clock_nanosleep};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Command, Counters, FRAME, FRAME_BYTES, MediaEvent, Stream};
use crate::media::rtp::HEADER_LEN;

/// Commands applied at one tick at most. Calls arrive at a few thousand a second at the
/// very most, i.e. around a hundred set-ups per tick, so this takes any real burst in one
/// tick, while a flood of commands (each a hash-map operation, around a microsecond) delays
/// the sending by a few milliseconds, not indefinitely; the rest wait for the next tick.
const COMMANDS_PER_TICK: usize = 4_096;

/// The tick schedule in both clocks: `Instant` for the sans-IO [`super::Pacer`]s, the raw
/// `CLOCK_MONOTONIC` reading for `clock_nanosleep`. Both are the same clock on Linux (std's
/// `Instant` reads `CLOCK_MONOTONIC`); `instant` is read first, so the sleeping deadline of
/// every tick is at or a fraction of a microsecond after the tick the pacers count with, and
/// a thread woken at the deadline never sees the tick as not yet come.
#[derive(Debug, Clone, Copy)]
pub(super) struct Grid {
    pub(super) instant: Instant,
    monotonic: TimeSpec,
}

impl Grid {
    pub(super) fn now() -> io::Result<Grid> {
        let instant = Instant::now();
        let monotonic = clock_gettime(ClockId::CLOCK_MONOTONIC).map_err(io::Error::from)?;
        Ok(Grid { instant, monotonic })
    }

    fn instant(&self, tick: u64) -> Instant {
        self.instant + frames(tick)
    }

    fn deadline(&self, tick: u64) -> TimeSpec {
        self.monotonic + TimeSpec::from_duration(frames(tick))
    }

    /// The last tick at or before `now`.
    fn last_at_or_before(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.instant).as_nanos();
        u64::try_from(since / FRAME.as_nanos()).unwrap_or(u64::MAX - 1)
    }
}

fn frames(n: u64) -> Duration {
    // 2^64 ns is 584 years: no overflow for any tick this process reaches.
    Duration::from_nanos(n.saturating_mul(u64::try_from(FRAME.as_nanos()).unwrap_or(u64::MAX)))
}

/// Starts the thread. `exited` is dropped as the thread's very last act (also when it
/// panics), so whoever awaits it knows `join` will not block.
pub(super) fn spawn(
    rx: mpsc::Receiver<Command>,
    grid: Grid,
    token: CancellationToken,
    counters: Arc<Counters>,
    exited: oneshot::Sender<()>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("announcer".into())
        .spawn(move || {
            // Declared first so it is dropped last, after the streams and their sockets.
            let _exited = exited;
            // Linux lets a timer of an ordinary thread fire up to 50 µs after its deadline
            // (timer slack, to batch wake-ups); at 50 wake-ups a second there is nothing to
            // save, and every microsecond of it lands on every stream. Unprivileged, for this
            // thread only; on failure the default slack only costs those 50 µs.
            if let Err(e) = nix::sys::prctl::set_timerslack(1) {
                tracing::debug!(error = %e, "cannot lower the announcer thread's timer slack");
            }
            run(rx, grid, &token, &counters);
        })
}

fn run(
    mut rx: mpsc::Receiver<Command>,
    grid: Grid,
    token: &CancellationToken,
    counters: &Counters,
) {
    let mut streams: HashMap<u64, Stream> = HashMap::new();
    let mut packet = Vec::with_capacity(HEADER_LEN + FRAME_BYTES);
    let mut tick_no = grid.last_at_or_before(Instant::now()) + 1;
    loop {
        sleep_until(grid.deadline(tick_no));
        if token.is_cancelled() {
            break;
        }
        // Commands first, so what arrived since the last tick plays in this one; at most a
        // bounded batch, so senders that keep the queue full cannot hold the tick back (the
        // rest wait for the next one).
        let mut open = true;
        let mut stopped = Vec::new();
        for _ in 0..COMMANDS_PER_TICK {
            match rx.try_recv() {
                Ok(cmd) => apply(&mut streams, cmd, &mut stopped),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        if !open {
            break;
        }
        counters
            .streams
            .store(streams.len() as u64, Ordering::Relaxed);
        // A stopped stream's owner hears of it once the counters say so too.
        for done in stopped {
            let _ = done.send(());
        }
        tick(&mut streams, grid.instant(tick_no), &mut packet, counters);
        // The next tick, or if this one overran past it, the latest that has come: that one
        // runs at once (its deadline has passed, so the sleep returns), since frames are due
        // now and waiting for the grid would only make them later. Ticks in between are not
        // run one by one: the per-stream Pacer catches up from real time.
        tick_no = grid.last_at_or_before(Instant::now()).max(tick_no + 1);
    }
    streams.clear();
    counters.streams.store(0, Ordering::Relaxed);
}

/// Sleeps until `deadline` on `CLOCK_MONOTONIC`. An absolute deadline makes a signal
/// harmless (sleep again to the same instant) and keeps the schedule from drifting by the
/// time each tick takes.
fn sleep_until(deadline: TimeSpec) {
    loop {
        match clock_nanosleep(
            ClockId::CLOCK_MONOTONIC,
            ClockNanosleepFlags::TIMER_ABSTIME,
            &deadline,
        ) {
            Err(Errno::EINTR) => continue,
            Ok(_) => return,
            Err(e) => {
                // Only EINVAL is documented besides EINTR, for a deadline this code never
                // builds; fall back to a relative sleep rather than spin.
                tracing::error!(error = %e, "clock_nanosleep failed");
                std::thread::sleep(FRAME);
                return;
            }
        }
    }
}

fn apply(streams: &mut HashMap<u64, Stream>, cmd: Command, stopped: &mut Vec<oneshot::Sender<()>>) {
    match cmd {
        Command::Start(stream) => {
            streams.insert(stream.id, *stream);
        }
        Command::Enqueue { id, clips } => {
            if let Some(s) = streams.get_mut(&id) {
                s.playout.enqueue(clips);
            }
        }
        Command::Replace { id, clips } => {
            if let Some(s) = streams.get_mut(&id) {
                s.playout.replace(clips);
            }
        }
        Command::Remote { id, remote } => {
            if let Some(s) = streams.get_mut(&id) {
                s.remote = remote;
            }
        }
        Command::VideoRemote { id, remote } => {
            if let Some(v) = streams.get_mut(&id).and_then(|s| s.video.as_mut()) {
                v.remote = remote;
                v.out.restart_from_key_frame();
            }
        }
        Command::KeyFrame { id } => {
            if let Some(v) = streams.get_mut(&id).and_then(|s| s.video.as_mut()) {
                v.out.restart_from_key_frame();
            }
        }
        Command::Stop { id, done } => {
            streams.remove(&id);
            stopped.push(done);
        }
    }
}

fn tick(
    streams: &mut HashMap<u64, Stream>,
    scheduled: Instant,
    packet: &mut Vec<u8>,
    counters: &Counters,
) {
    let now = Instant::now();
    let lag = u64::try_from(now.saturating_duration_since(scheduled).as_micros()).unwrap_or(0);
    // The deadline slept to is never before `scheduled` (see Grid); should the clocks ever
    // disagree, frames due at `scheduled` still go at this tick rather than doubling up at
    // the next.
    let at = now.max(scheduled);
    let (mut sent, mut late, mut skipped, mut errors) = (0u64, 0u64, 0u64, 0u64);
    let mut video_sent = 0u64;
    let before = streams.len();
    streams.retain(|_, s| !s.token.is_cancelled());
    let mut frame = [0u8; FRAME_BYTES];
    for s in streams.values_mut() {
        if let Some(v) = s.video.as_mut() {
            // The hold picture: a frame every few ticks, on its own socket and SSRC.
            let sending = !v.remote.ip().is_unspecified();
            let (socket, remote) = (&v.socket, v.remote);
            v.out.tick(at, sending, packet, |p| {
                match socket.try_send_to(p, remote) {
                    Ok(_) => video_sent += 1,
                    Err(_) => errors += 1,
                }
            });
        }
        let due = s.pacer.poll(at);
        if due.send == 0 {
            continue;
        }
        if s.remote.ip().is_unspecified() {
            // On hold: time passes but nothing is played, so the announcement resumes
            // where it stopped when the caller comes back.
            s.packetizer
                .skip(u32::try_from(due.skip + due.send).unwrap_or(u32::MAX));
            continue;
        }
        if due.skip > 0 {
            s.packetizer
                .skip(u32::try_from(due.skip).unwrap_or(u32::MAX));
            skipped += due.skip;
        }
        late += due.send - 1;
        for _ in 0..due.send {
            let speech_done = s.playout.next_frame(&mut frame);
            packet.clear();
            s.packetizer.write(&frame, s.marker, packet);
            s.marker = false;
            match s.socket.try_send_to(packet, s.remote) {
                Ok(_) => sent += 1,
                Err(_) => errors += 1,
            }
            if speech_done {
                let _ = s.events.try_send(MediaEvent::SpeechDone);
            }
        }
    }
    let busy = u64::try_from(now.elapsed().as_micros()).unwrap_or(0);
    let c = counters;
    c.sent.fetch_add(sent, Ordering::Relaxed);
    c.late.fetch_add(late, Ordering::Relaxed);
    c.skipped.fetch_add(skipped, Ordering::Relaxed);
    c.send_errors.fetch_add(errors, Ordering::Relaxed);
    c.ticks.fetch_add(1, Ordering::Relaxed);
    c.busy_us.fetch_add(busy, Ordering::Relaxed);
    c.video_sent.fetch_add(video_sent, Ordering::Relaxed);
    c.max_tick_lag_us.fetch_max(lag, Ordering::Relaxed);
    if lag > 10_000 {
        c.late_ticks.fetch_add(1, Ordering::Relaxed);
    }
    if streams.len() != before {
        c.streams.store(streams.len() as u64, Ordering::Relaxed);
    }
}
