//! The announcer: one thread paces every outgoing RTP stream.
//!
//! Thousands of concurrent streams each need a 160-byte packet every 20 ms. A task and a
//! timer per stream would mean 100k timer wake-ups a second at 2,000 calls; instead one
//! thread ticks every 20 ms on a fixed grid and, for each stream, sends the frames due by
//! then, counted from the stream's start rounded up to that grid (so pacing never drifts and
//! a late wake-up never finds two frames due), using non-blocking `try_send_to` so one slow
//! socket cannot hold up the rest. That thread is `ticker`'s, not a tokio task, so its
//! wake-ups are as precise as the kernel's timers rather than tokio's 1 ms wheel on workers
//! shared with everything else. Receiving is left to a small tokio task per stream, because
//! epoll already does the waiting for free and key presses are rare.
//!
//! The sans-IO parts are [`Playout`] (what bytes come next) and [`Pacer`] (how many frames
//! are due at `now`); the thread only glues them to sockets and the command channel.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ports::RtpSocket;
use super::prompts::{Law, PromptSet};
use super::rtp::{DtmfDetector, FRAME_SAMPLES, Packetizer, parse_rtp};
use super::video::{HoldVideo, VideoOut, Vp8Packetizer};

mod ticker;

/// Bytes of G.711 in one 20 ms frame.
pub const FRAME_BYTES: usize = FRAME_SAMPLES;
/// Packet interval.
pub const FRAME: Duration = Duration::from_millis(20);

/// What a stream plays: queued clips, then a looping filler (music on hold).
///
/// Clips are joined byte by byte: a frame may hold the tail of one clip and the head of the
/// next, so a sentence built from many clips plays without gaps or clicks. The filler keeps
/// its position across interruptions, so music resumes where it stopped rather than
/// restarting the same few bars after every announcement.
#[derive(Debug, Clone)]
pub struct Playout {
    queue: VecDeque<Bytes>,
    filler: Bytes,
    filler_pos: usize,
    silence: u8,
}

impl Playout {
    /// `filler` may be empty: then silence (`silence_byte`) is played when nothing is queued.
    pub fn new(silence_byte: u8, filler: Bytes) -> Playout {
        Playout {
            queue: VecDeque::new(),
            filler,
            filler_pos: 0,
            silence: silence_byte,
        }
    }

    /// Appends clips after whatever is queued; they take over from the filler at the next
    /// frame. This is how the periodic position update interrupts the music.
    pub fn enqueue(&mut self, clips: Vec<Bytes>) {
        self.queue
            .extend(clips.into_iter().filter(|c| !c.is_empty()));
    }

    /// Drops everything queued and plays `clips` from the next frame (the `*` key).
    pub fn replace(&mut self, clips: Vec<Bytes>) {
        self.queue.clear();
        self.enqueue(clips);
    }

    /// Whether queued speech is still playing (as opposed to the filler or silence).
    pub fn is_speaking(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Fills one frame. Returns `true` when the queued speech ran out inside this frame, so
    /// the caller can report that the announcement finished.
    pub fn next_frame(&mut self, out: &mut [u8; FRAME_BYTES]) -> bool {
        let was_speaking = self.is_speaking();
        let mut filled = 0;
        while filled < FRAME_BYTES {
            let want = FRAME_BYTES - filled;
            if let Some(clip) = self.queue.front_mut() {
                let n = want.min(clip.len());
                out[filled..filled + n].copy_from_slice(&clip[..n]);
                clip.advance(n);
                filled += n;
                if clip.is_empty() {
                    self.queue.pop_front();
                }
            } else if !self.filler.is_empty() {
                // filler_pos < filler.len() always holds: it wraps to 0 below.
                let n = want.min(self.filler.len() - self.filler_pos);
                out[filled..filled + n]
                    .copy_from_slice(&self.filler[self.filler_pos..self.filler_pos + n]);
                self.filler_pos += n;
                if self.filler_pos == self.filler.len() {
                    self.filler_pos = 0;
                }
                filled += n;
            } else {
                out[filled..].fill(self.silence);
                filled = FRAME_BYTES;
            }
        }
        was_speaking && !self.is_speaking()
    }
}

/// How many frames to skip and to send at one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Due {
    /// Frames so late they are dropped (the RTP timestamp still advances over them).
    pub skip: u64,
    /// Frames to send now.
    pub send: u64,
}

/// Frame pacing of one stream: its frames fall due on the driver's tick grid, counted from
/// the stream's start, so pacing never drifts whatever the wake-up jitter is.
///
/// Why the grid: with frames due at the stream's own `start + k × 20 ms`, a stream whose due
/// time fell inside the tick's wake-up jitter was found due by a slightly late wake-up and
/// not by the next, slightly earlier one, which then found two frames due: two packets at
/// once and none for 40 ms (measured on 2–16 % of streams). On the grid, every wake-up
/// between a tick and the next finds the same count.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// The stream's start rounded up to the grid.
    start: Instant,
    frames: u64,
    max_catch_up: u64,
}

impl Pacer {
    /// `grid` is one instant of the driver's tick schedule (ticks at `grid + n × 20 ms`, for
    /// any integer `n`). Frame `k` (from 0) is due at `start' + (k + 1) × 20 ms`, where
    /// `start'` is the first tick at or after `start`: the first frame goes out one to two
    /// frames after the start, which gives the caller time to enqueue the first announcement
    /// so it is not preceded by a scrap of music.
    ///
    /// When more than `max_catch_up` frames are due at once (the process stalled), all but
    /// the newest are skipped: a burst would only overflow the far end's jitter buffer.
    pub fn new(start: Instant, grid: Instant, max_catch_up: u64) -> Pacer {
        Pacer {
            start: next_tick(start, grid),
            frames: 0,
            max_catch_up: max_catch_up.max(1),
        }
    }

    /// Frames to send and to skip at a tick that woke up at `now`. A wake-up less than a frame
    /// late still counts as its own tick; one later than that finds the stream behind.
    pub fn poll(&mut self, now: Instant) -> Due {
        let elapsed = now.saturating_duration_since(self.start);
        let due = u64::try_from(elapsed.as_micros() / FRAME.as_micros()).unwrap_or(u64::MAX);
        let behind = due.saturating_sub(self.frames);
        self.frames = self.frames.max(due);
        if behind > self.max_catch_up {
            Due {
                skip: behind - 1,
                send: 1,
            }
        } else {
            Due {
                skip: 0,
                send: behind,
            }
        }
    }

    /// Frames accounted for so far (sent or skipped).
    pub fn frames(&self) -> u64 {
        self.frames
    }
}

/// The first instant of `grid + n × FRAME` at or after `t`.
fn next_tick(t: Instant, grid: Instant) -> Instant {
    let frame = FRAME.as_nanos();
    if t >= grid {
        let into = (t - grid).as_nanos() % frame;
        if into == 0 {
            t
        } else {
            t + Duration::from_nanos(u64::try_from(frame - into).unwrap_or(0))
        }
    } else {
        let before = (grid - t).as_nanos() % frame;
        t + Duration::from_nanos(u64::try_from(before).unwrap_or(0))
    }
}

/// No address: nothing is sent.
const UNSPECIFIED_REMOTE: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// Something the stream's caller did or the announcer finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEvent {
    /// A key press (RFC 4733): `'0'..='9'`, `'*'`, `'#'`, `'A'..='D'`.
    Dtmf(char),
    /// Everything enqueued so far has been played; the filler is playing now.
    SpeechDone,
    /// No RTP has arrived for the stream's `silence_timeout` (a caller that vanished, or
    /// one on hold that sends nothing: the call layer probes the dialog to tell which).
    Silent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AnnouncerError {
    #[error("the announcer has shut down")]
    Closed,
}

/// What a new stream needs.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// The stream's own RTP socket (from [`super::ports::RtpPorts`]); also where key
    /// presses arrive.
    pub socket: Arc<RtpSocket>,
    /// Where to send. An unspecified IP (`c=0.0.0.0`, hold) sends nothing until
    /// [`StreamHandle::set_remote`] gives a real address.
    pub remote: SocketAddr,
    pub law: Law,
    pub pt: u8,
    pub telephone_event_pt: Option<u8>,
    /// Music on hold is taken from here.
    pub prompts: Arc<PromptSet>,
    /// Report [`MediaEvent::Silent`] after this long without an incoming RTP packet (and
    /// again after each further such period); `None`: never.
    pub silence_timeout: Option<Duration>,
}

/// The video side of a stream: the hold picture, looped on its own socket (see
/// [`super::video`]). We answer `sendonly`, so a conforming phone sends no RTP there; with
/// `rtcp_mux` its RTCP comes there and is read for key frame requests, otherwise nothing is
/// read and what a broken phone sends only fills that socket's bounded kernel buffer.
#[derive(Debug, Clone)]
pub struct VideoSpec {
    /// The video RTP socket, from the same [`super::ports::RtpPorts`].
    pub socket: Arc<RtpSocket>,
    /// VP8's payload type, as the caller offered it.
    pub pt: u8,
    pub card: Arc<HoldVideo>,
    /// RTCP shares the port (RFC 5761): read it and answer PLI/FIR with the key frame.
    pub rtcp_mux: bool,
}

/// Tuning of the announcer.
#[derive(Debug, Clone, Copy)]
pub struct AnnouncerConfig {
    /// Bounded command queue shared by all streams.
    pub command_capacity: usize,
    /// Bounded event queue per stream; events beyond it are dropped (a caller hammering
    /// keys does not need every press queued).
    pub event_capacity: usize,
    /// See [`Pacer::new`].
    pub max_catch_up_frames: u64,
}

impl Default for AnnouncerConfig {
    fn default() -> Self {
        AnnouncerConfig {
            command_capacity: 8192,
            event_capacity: 16,
            max_catch_up_frames: 3,
        }
    }
}

/// Counters since the announcer started, for logs, notes and load tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnnouncerStats {
    /// Streams currently playing.
    pub streams: u64,
    /// Packets handed to the kernel.
    pub sent: u64,
    /// Frames sent late: more than one frame of a stream at one tick (catch-up).
    pub late: u64,
    /// Frames dropped after a stall (timestamp advanced, nothing sent).
    pub skipped: u64,
    /// `try_send_to` failures (socket buffer full, ICMP unreachable, ...).
    pub send_errors: u64,
    pub ticks: u64,
    /// Ticks that ran more than 10 ms after they were scheduled.
    pub late_ticks: u64,
    pub max_tick_lag_us: u64,
    /// Time spent inside ticks, i.e. the announcer's own CPU for sending.
    pub busy_us: u64,
    /// Video packets handed to the kernel (not counted in `sent`).
    pub video_sent: u64,
}

#[derive(Debug, Default)]
struct Counters {
    streams: AtomicU64,
    sent: AtomicU64,
    late: AtomicU64,
    skipped: AtomicU64,
    send_errors: AtomicU64,
    ticks: AtomicU64,
    late_ticks: AtomicU64,
    max_tick_lag_us: AtomicU64,
    busy_us: AtomicU64,
    video_sent: AtomicU64,
}

enum Command {
    Start(Box<Stream>),
    Enqueue { id: u64, clips: Vec<Bytes> },
    Replace { id: u64, clips: Vec<Bytes> },
    Remote { id: u64, remote: SocketAddr },
    VideoRemote { id: u64, remote: SocketAddr },
    KeyFrame { id: u64 },
    Stop { id: u64, done: oneshot::Sender<()> },
}

/// One playing stream, owned by the announcer thread alone.
struct Stream {
    id: u64,
    socket: Arc<RtpSocket>,
    remote: SocketAddr,
    playout: Playout,
    packetizer: Packetizer,
    pacer: Pacer,
    /// Set until the first packet is sent: RFC 3550's marker for the start of a talkspurt.
    marker: bool,
    events: mpsc::Sender<MediaEvent>,
    token: CancellationToken,
    video: Option<VideoStream>,
}

/// The video side of a [`Stream`].
struct VideoStream {
    socket: Arc<RtpSocket>,
    /// Unspecified until the call is confirmed, and while held.
    remote: SocketAddr,
    out: VideoOut,
}

/// Starts the announcer.
pub struct Announcer;

impl Announcer {
    /// Starts the announcer's thread (`ticker`) and, on `tracker`, the task that joins
    /// it once `token` is cancelled; fails only if the OS refuses a thread.
    pub fn spawn(token: CancellationToken, tracker: &TaskTracker) -> io::Result<AnnouncerHandle> {
        Announcer::spawn_with(AnnouncerConfig::default(), token, tracker)
    }

    pub fn spawn_with(
        config: AnnouncerConfig,
        token: CancellationToken,
        tracker: &TaskTracker,
    ) -> io::Result<AnnouncerHandle> {
        let (tx, rx) = mpsc::channel(config.command_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let grid = ticker::Grid::now()?;
        let (exited_tx, exited) = oneshot::channel::<()>();
        let thread = ticker::spawn(rx, grid, token.clone(), Arc::clone(&counters), exited_tx)?;
        tracker.spawn(async move {
            // Resolves when the thread has dropped everything and is returning, so the join
            // below is immediate; on the blocking pool all the same, as it is a blocking call.
            let _ = exited.await;
            if let Ok(Err(_panic)) = tokio::task::spawn_blocking(move || thread.join()).await {
                tracing::error!("the announcer thread panicked");
            }
        });
        Ok(AnnouncerHandle {
            tx,
            grid: grid.instant,
            next_id: Arc::new(AtomicU64::new(1)),
            token,
            tracker: tracker.clone(),
            counters,
            config,
        })
    }
}

/// Starts streams; cheap to clone.
#[derive(Debug, Clone)]
pub struct AnnouncerHandle {
    tx: mpsc::Sender<Command>,
    /// The announcer's tick schedule, which every stream's [`Pacer`] is aligned to.
    grid: Instant,
    next_id: Arc<AtomicU64>,
    token: CancellationToken,
    tracker: TaskTracker,
    counters: Arc<Counters>,
    config: AnnouncerConfig,
}

impl AnnouncerHandle {
    /// Starts a stream playing music on hold (enqueue speech right away to start with it).
    /// Returns the handle that controls it and its events (key presses, speech done).
    pub async fn start(
        &self,
        spec: StreamSpec,
    ) -> Result<(StreamHandle, mpsc::Receiver<MediaEvent>), AnnouncerError> {
        self.start_with_video(spec, None).await
    }

    /// The same, with the hold picture on a video socket too; it is sent once
    /// [`StreamHandle::set_video_remote`] gives an address.
    pub async fn start_with_video(
        &self,
        spec: StreamSpec,
        video: Option<VideoSpec>,
    ) -> Result<(StreamHandle, mpsc::Receiver<MediaEvent>), AnnouncerError> {
        if self.token.is_cancelled() {
            return Err(AnnouncerError::Closed);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let token = self.token.child_token();
        let (events_tx, events_rx) = mpsc::channel(self.config.event_capacity.max(1));
        let now = Instant::now();
        // Frames fall due on the tick grid like the audio's, from the stream's first tick;
        // random SSRC (distinct from the audio's), sequence and timestamp, as for audio.
        let feedback = video
            .as_ref()
            .filter(|v| v.rtcp_mux)
            .map(|v| Arc::clone(&v.socket));
        let video = video.map(|v| VideoStream {
            socket: v.socket,
            remote: UNSPECIFIED_REMOTE,
            out: VideoOut::new(
                v.card,
                Vp8Packetizer::new(v.pt, rand::random(), rand::random()),
                next_tick(now, self.grid),
                rand::random(),
            ),
        });
        let stream = Stream {
            id,
            socket: Arc::clone(&spec.socket),
            remote: spec.remote,
            playout: Playout::new(spec.law.silence_byte(), spec.prompts.moh()),
            // Random SSRC, sequence and timestamp (RFC 3550 §5.1), so packets of a previous
            // call on the same port cannot be mistaken for this one's.
            packetizer: Packetizer::new(spec.pt, rand::random(), rand::random(), rand::random()),
            pacer: Pacer::new(now, self.grid, self.config.max_catch_up_frames),
            marker: true,
            events: events_tx.clone(),
            token: token.clone(),
            video,
        };
        self.tx
            .send(Command::Start(Box::new(stream)))
            .await
            .map_err(|_| AnnouncerError::Closed)?;
        if let Some(socket) = feedback {
            self.tracker
                .spawn(video_feedback(socket, self.tx.clone(), id, token.clone()));
        }
        // Always read: incoming audio is drained and dropped (not left to fill the kernel
        // buffer); key presses are recognised when telephone-event was negotiated.
        self.tracker.spawn(receive(
            spec.socket,
            spec.telephone_event_pt,
            spec.silence_timeout,
            events_tx,
            token.clone(),
        ));
        Ok((
            StreamHandle {
                id,
                tx: self.tx.clone(),
                token,
            },
            events_rx,
        ))
    }

    pub fn stats(&self) -> AnnouncerStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AnnouncerStats {
            streams: get(&c.streams),
            sent: get(&c.sent),
            late: get(&c.late),
            skipped: get(&c.skipped),
            send_errors: get(&c.send_errors),
            ticks: get(&c.ticks),
            late_ticks: get(&c.late_ticks),
            max_tick_lag_us: get(&c.max_tick_lag_us),
            busy_us: get(&c.busy_us),
            video_sent: get(&c.video_sent),
        }
    }
}

/// Controls one stream. Dropping it stops the stream.
#[derive(Debug)]
pub struct StreamHandle {
    id: u64,
    tx: mpsc::Sender<Command>,
    token: CancellationToken,
}

impl StreamHandle {
    /// Plays `clips` after what is queued (before the music resumes).
    pub fn enqueue(&self, clips: Vec<Bytes>) {
        self.command(Command::Enqueue { id: self.id, clips });
    }

    /// Drops what is queued and plays `clips` from the next frame.
    pub fn replace(&self, clips: Vec<Bytes>) {
        self.command(Command::Replace { id: self.id, clips });
    }

    /// Changes where RTP goes (a re-INVITE); an unspecified IP pauses sending (hold), and
    /// the announcement resumes where it paused.
    pub fn set_remote(&self, remote: SocketAddr) {
        self.command(Command::Remote {
            id: self.id,
            remote,
        });
    }

    /// Changes where the hold picture goes (the call is confirmed, or held or moved); an
    /// unspecified IP pauses it. The picture starts again from its key frame. Ignored by a
    /// stream without video.
    pub fn set_video_remote(&self, remote: SocketAddr) {
        self.command(Command::VideoRemote {
            id: self.id,
            remote,
        });
    }

    /// Stops the stream and waits until the announcer has let go of it (and so of its
    /// socket, unless the caller still holds the `Arc`).
    pub async fn stop(self) {
        self.token.cancel();
        let (done, wait) = oneshot::channel();
        if self
            .tx
            .send(Command::Stop { id: self.id, done })
            .await
            .is_ok()
        {
            let _ = wait.await;
        }
    }

    // These calls are synchronous so the SIP side can use them from anywhere; the command
    // queue is large and drained every tick, so a full queue means the announcer is wedged
    // and dropping (loudly) is better than blocking signalling.
    fn command(&self, cmd: Command) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(cmd) {
            tracing::warn!(
                stream = self.id,
                "announcer command queue full; command dropped"
            );
        }
    }
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        // The announcer drops cancelled streams at its next tick; no message needed, so this
        // works even when the command queue is full.
        self.token.cancel();
    }
}

/// Reads the video socket's RTCP (RFC 5761 multiplexing) and asks the announcer for the key
/// frame when the caller's decoder lost the picture; everything else is dropped.
async fn video_feedback(
    socket: Arc<RtpSocket>,
    commands: mpsc::Sender<Command>,
    id: u64,
    token: CancellationToken,
) {
    let mut buf = [0u8; 1500];
    loop {
        let n = tokio::select! {
            () = token.cancelled() => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, _)) => n,
                Err(e) if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
                ) => continue,
                Err(_) => break,
            },
        };
        if super::video::asks_for_key_frame(&buf[..n]) {
            // At most one frame slot later; a full queue drops the request (the loop brings
            // the key frame round anyway).
            let _ = commands.try_send(Command::KeyFrame { id });
        }
    }
}

/// Reads the stream's socket: audio is dropped, key presses become events, and a silence
/// of `silence_timeout` (no RTP at all) becomes [`MediaEvent::Silent`].
async fn receive(
    socket: Arc<RtpSocket>,
    telephone_event_pt: Option<u8>,
    silence_timeout: Option<Duration>,
    events: mpsc::Sender<MediaEvent>,
    token: CancellationToken,
) {
    let mut detector = telephone_event_pt.map(DtmfDetector::new);
    // Event packets are 16 bytes; longer audio packets are truncated, which is harmless
    // since audio is discarded.
    let mut buf = [0u8; 512];
    let mut heard = Instant::now();
    loop {
        let silent_until = async {
            match silence_timeout {
                Some(t) => tokio::time::sleep_until(heard + t).await,
                None => std::future::pending().await,
            }
        };
        let n = tokio::select! {
            () = token.cancelled() => break,
            () = silent_until => {
                // Counted again from now: one event per silent period, never a flood.
                heard = Instant::now();
                let _ = events.try_send(MediaEvent::Silent);
                continue;
            }
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, _from)) => n,
                // ICMP errors from earlier sends surface here on some systems; they say
                // nothing about incoming packets.
                Err(e) if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
                ) => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "RTP receive failed; no more key presses");
                    break;
                }
            },
        };
        let Some(packet) = buf.get(..n).and_then(|b| parse_rtp(b).ok()) else {
            continue;
        };
        heard = Instant::now();
        if let Some(key) = detector.as_mut().and_then(|d| d.feed(&packet)) {
            let _ = events.try_send(MediaEvent::Dtmf(key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::telephone_event_payload;
    use std::net::{IpAddr, Ipv4Addr};
    use tokio::net::UdpSocket;

    fn frames(p: &mut Playout, n: usize) -> (Vec<u8>, Vec<bool>) {
        let mut all = Vec::new();
        let mut done = Vec::new();
        for _ in 0..n {
            let mut f = [0u8; FRAME_BYTES];
            done.push(p.next_frame(&mut f));
            all.extend_from_slice(&f);
        }
        (all, done)
    }

    fn pattern(len: usize, seed: u8) -> Bytes {
        Bytes::from(
            (0..len)
                .map(|i| seed.wrapping_add(i as u8))
                .collect::<Vec<u8>>(),
        )
    }

    #[test]
    fn clips_join_across_frames_then_filler_loops() {
        let moh = pattern(250, 100);
        let mut p = Playout::new(0xFF, moh.clone());
        let a = pattern(333, 1);
        let b = pattern(7, 50);
        let c = pattern(1, 9);
        p.enqueue(vec![a.clone(), Bytes::new(), b.clone(), c.clone()]);
        assert!(p.is_speaking());
        let (out, done) = frames(&mut p, 6);
        let speech: Vec<u8> = [a, b, c].concat(); // 341 bytes: ends inside frame 3
        assert_eq!(&out[..341], &speech[..]);
        let filler: Vec<u8> = moh.iter().copied().cycle().take(960 - 341).collect();
        assert_eq!(&out[341..], &filler[..]);
        assert_eq!(done, [false, false, true, false, false, false]);
        assert!(!p.is_speaking());

        // An interruption, then the music resumes where it stopped (619 % 250 = 119).
        p.enqueue(vec![pattern(160, 7)]);
        let (out, done) = frames(&mut p, 2);
        assert_eq!(&out[..160], &pattern(160, 7)[..]);
        let resumed: Vec<u8> = moh.iter().copied().cycle().skip(119).take(160).collect();
        assert_eq!(&out[160..], &resumed[..]);
        assert_eq!(done, [true, false]);
    }

    #[test]
    fn silence_pads_only_when_nothing_is_left() {
        let mut p = Playout::new(0xD5, Bytes::new());
        p.enqueue(vec![pattern(100, 1), pattern(100, 2)]);
        let (out, done) = frames(&mut p, 2);
        assert_eq!(&out[..100], &pattern(100, 1)[..]);
        assert_eq!(&out[100..200], &pattern(100, 2)[..]);
        assert!(out[200..].iter().all(|&b| b == 0xD5));
        assert_eq!(done, [false, true]);
        let (out, done) = frames(&mut p, 1);
        assert!(out.iter().all(|&b| b == 0xD5));
        assert_eq!(done, [false]);
    }

    #[test]
    fn replace_drops_the_queue() {
        let mut p = Playout::new(0xFF, Bytes::new());
        p.enqueue(vec![pattern(500, 1)]);
        let _ = frames(&mut p, 1);
        p.replace(vec![pattern(10, 200)]);
        p.enqueue(vec![pattern(5, 3)]);
        let (out, _) = frames(&mut p, 1);
        assert_eq!(&out[..10], &pattern(10, 200)[..]);
        assert_eq!(&out[10..15], &pattern(5, 3)[..]);
        assert!(out[15..].iter().all(|&b| b == 0xFF));
        p.replace(Vec::new());
        assert!(!p.is_speaking());
    }

    #[test]
    fn pacer_counts_from_start_and_skips_after_a_stall() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut p = Pacer::new(t0, t0, 3);
        assert_eq!(p.poll(t0), Due::default());
        assert_eq!(p.poll(t0 + ms(19)), Due::default());
        assert_eq!(p.poll(t0 + ms(20)), Due { skip: 0, send: 1 });
        assert_eq!(p.poll(t0 + ms(21)), Due::default());
        // A late tick catches up without drift.
        assert_eq!(p.poll(t0 + ms(65)), Due { skip: 0, send: 2 });
        assert_eq!(p.poll(t0 + ms(80)), Due { skip: 0, send: 1 });
        // A long stall: skip all but one.
        assert_eq!(p.poll(t0 + ms(300)), Due { skip: 10, send: 1 });
        assert_eq!(p.frames(), 15);
        assert_eq!(p.poll(t0 + ms(320)), Due { skip: 0, send: 1 });
        // Time going backwards (cannot with Instant, but be safe) sends nothing.
        assert_eq!(p.poll(t0), Due::default());
    }

    /// Deterministic wake-up lags in `[0, max_us)`, as a busy runtime produces them.
    fn lags(n: usize, max_us: u64) -> Vec<Duration> {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                Duration::from_micros(x % max_us)
            })
            .collect()
    }

    #[test]
    fn late_wake_ups_never_send_two_frames_at_once() {
        let t0 = Instant::now();
        let us = Duration::from_micros;
        // Streams start at every phase of the tick, including on a tick and just after one.
        for phase in [0, 1, 500, 999, 1_000, 1_001, 7_000, 13_500, 19_999] {
            let start = t0 + us(phase);
            // Wake-ups up to 19 ms late in any order, then the one case that straddles this
            // stream's own due time tick after tick (0.1 ms before it, 0.1 ms after it).
            let mut wake = lags(400, 19_000);
            let straddle = phase.clamp(100, 19_800);
            for i in 0..100 {
                wake.push(us(if i % 2 == 0 {
                    straddle - 100
                } else {
                    straddle + 100
                }));
            }
            let mut p = Pacer::new(start, t0, 3);
            let mut sent = 0;
            for (n, lag) in wake.iter().enumerate() {
                let scheduled = t0 + FRAME * (n as u32 + 1);
                let due = p.poll(scheduled + *lag);
                assert_eq!(due.skip, 0, "phase {phase} us, tick {n}, lag {lag:?}");
                assert!(
                    due.send <= 1,
                    "phase {phase} us, tick {n}, lag {lag:?}: {due:?}"
                );
                // Once started, one frame every tick: never a gap either.
                if sent > 0 {
                    assert_eq!(due.send, 1, "phase {phase} us, tick {n}, lag {lag:?}");
                }
                sent += due.send;
            }
            // No drift: one frame per tick from the first, which is due at the first or
            // the second tick after the start.
            let ticks = wake.len() as u64;
            assert!(
                sent == ticks || sent == ticks - 1,
                "phase {phase}: {sent} of {ticks}"
            );
            assert_eq!(p.frames(), sent);
        }
    }

    #[test]
    fn a_stream_that_is_really_behind_skips_rather_than_bursts() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let start = t0 + Duration::from_micros(7_300);
        let mut p = Pacer::new(start, t0, 3);
        let mut sent = 0;
        for n in 1..=10u32 {
            sent += p.poll(t0 + FRAME * n + ms(3)).send;
        }
        assert_eq!(sent, 9);
        // The process stalls for 200 ms: one frame goes, the rest are skipped.
        let due = p.poll(t0 + FRAME * 20 + ms(3));
        assert_eq!(due, Due { skip: 9, send: 1 });
        // And the stream is back on its tick with no pair after it.
        assert_eq!(p.poll(t0 + FRAME * 21 + ms(1)), Due { skip: 0, send: 1 });
        assert_eq!(p.poll(t0 + FRAME * 22 + ms(12)), Due { skip: 0, send: 1 });
        assert_eq!(p.frames(), 21);
    }

    #[test]
    fn streams_start_on_the_next_tick_of_the_grid() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // (grid, start, first frame due), in ms after t0. The grid may lie before or after
        // the start: only its phase matters.
        for (grid, start, first) in [
            (0, 0, 20),
            (0, 1, 40),
            (0, 10, 40),
            (1_000, 0, 20),
            (1_000, 19, 40),
            (50, 0, 30),
            (50, 10, 30),
            (50, 11, 50),
            (3, 3, 23),
            (3, 4, 43),
        ] {
            let mut p = Pacer::new(t0 + ms(start), t0 + ms(grid), 3);
            let first = t0 + ms(first);
            let case = format!("grid {grid}, start {start}");
            assert_eq!(
                p.poll(first - Duration::from_nanos(1)),
                Due::default(),
                "{case}"
            );
            assert_eq!(p.poll(first), Due { skip: 0, send: 1 }, "{case}");
        }
    }

    struct Rig {
        token: CancellationToken,
        tracker: TaskTracker,
        announcer: AnnouncerHandle,
        sink: UdpSocket,
        socket: Arc<RtpSocket>,
    }

    /// `port_base` below the kernel's ephemeral range (32768+), whose ports other sockets on
    /// the machine take at any time; distinct per test so they run in parallel.
    async fn rig(port_base: u16) -> Rig {
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        let announcer = Announcer::spawn(token.clone(), &tracker).expect("announcer");
        let sink = UdpSocket::bind("127.0.0.1:0").await.expect("sink");
        let ports = crate::media::ports::RtpPorts::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            port_base,
            port_base + 200,
        );
        let socket = ports.bind().await.expect("rtp socket");
        Rig {
            token,
            tracker,
            announcer,
            sink,
            socket,
        }
    }

    impl Rig {
        fn spec(&self, te: Option<u8>) -> StreamSpec {
            StreamSpec {
                socket: Arc::clone(&self.socket),
                remote: self.sink.local_addr().expect("addr"),
                law: Law::Pcmu,
                pt: 0,
                telephone_event_pt: te,
                prompts: Arc::new(PromptSet::embedded(Law::Pcmu)),
                silence_timeout: None,
            }
        }

        async fn recv(&self) -> Option<Vec<u8>> {
            let mut buf = [0u8; 2048];
            let r = tokio::time::timeout(Duration::from_secs(2), self.sink.recv(&mut buf)).await;
            match r {
                Ok(Ok(n)) => Some(buf[..n].to_vec()),
                _ => None,
            }
        }

        /// Also checks the tracker's wait covers the announcer thread: once it returns, the
        /// thread has dropped its streams and so their sockets (and the receive tasks theirs).
        async fn shutdown(self) {
            self.token.cancel();
            self.tracker.close();
            self.tracker.wait().await;
            assert_eq!(Arc::strong_count(&self.socket), 1, "socket still held");
            assert_eq!(self.announcer.stats().streams, 0);
        }
    }

    #[tokio::test]
    async fn stream_sends_paced_packets_with_speech_then_music() {
        let rig = rig(23_000).await;
        let moh = PromptSet::embedded(Law::Pcmu).moh();
        let (stream, mut events) = rig.announcer.start(rig.spec(None)).await.expect("start");
        let a = pattern(333, 1);
        let b = pattern(77, 3);
        stream.enqueue(vec![a.clone(), b.clone()]);

        let started = std::time::Instant::now();
        let mut packets = Vec::new();
        for _ in 0..50 {
            packets.push(rig.recv().await.expect("packet"));
        }
        let elapsed = started.elapsed();
        // 50 frames take about a second; allow generous slack for a busy test machine.
        assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(2500), "{elapsed:?}");

        let parsed: Vec<_> = packets.iter().map(|p| parse_rtp(p).expect("rtp")).collect();
        let first = parsed[0];
        for (i, p) in parsed.iter().enumerate() {
            assert_eq!(p.pt, 0);
            assert_eq!(p.ssrc, first.ssrc);
            assert_eq!(p.marker, i == 0);
            assert_eq!(p.seq, first.seq.wrapping_add(i as u16));
            assert_eq!(p.ts, first.ts.wrapping_add(160 * i as u32));
            assert_eq!(p.payload.len(), 160);
        }
        let payload: Vec<u8> = parsed
            .iter()
            .flat_map(|p| p.payload.iter().copied())
            .collect();
        // The enqueue normally lands before the first frame; if the machine was slow it may
        // come a frame or two later, after some music. Either way the bytes are exactly:
        // music[..j] + a + b + music[j..].
        let speech: Vec<u8> = [a, b].concat();
        let j = (0..=10 * 160)
            .step_by(160)
            .find(|&j| payload[j..].starts_with(&speech))
            .expect("speech in stream");
        assert_eq!(&payload[..j], &moh[..j]);
        let rest = &payload[j + speech.len()..];
        assert_eq!(rest, &moh[j..j + rest.len()]);

        let ev = tokio::time::timeout(Duration::from_secs(1), events.recv()).await;
        assert_eq!(ev.expect("event"), Some(MediaEvent::SpeechDone));
        assert_eq!(rig.announcer.stats().streams, 1);

        // Dropping the handle stops the stream.
        drop(stream);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut buf = [0u8; 2048];
        while rig.sink.try_recv(&mut buf).is_ok() {}
        let more = tokio::time::timeout(Duration::from_millis(150), rig.sink.recv(&mut buf)).await;
        assert!(more.is_err(), "packets after the stream was dropped");
        assert_eq!(rig.announcer.stats().streams, 0);
        rig.shutdown().await;
    }

    #[tokio::test]
    async fn star_key_is_reported_once() {
        let rig = rig(23_400).await;
        let target = rig.socket.local_addr().expect("addr");
        let (stream, mut events) = rig
            .announcer
            .start(rig.spec(Some(101)))
            .await
            .expect("start");
        // A press of '*': start, two updates, end sent three times, as a phone does.
        let mut pk = Packetizer::new(101, 0x1234, 10, 80_000);
        for (i, (end, dur)) in [
            (false, 160u16),
            (false, 320),
            (false, 480),
            (true, 640),
            (true, 640),
            (true, 640),
        ]
        .into_iter()
        .enumerate()
        {
            let mut pkt = Vec::new();
            pk.write(&telephone_event_payload(10, end, 10, dur), i == 0, &mut pkt);
            // Same timestamp for every packet of one event (RFC 4733 §2.5.1.2): undo the
            // packetizer's advance.
            pk = Packetizer::new(101, 0x1234, pk.seq(), 80_000);
            rig.sink.send_to(&pkt, target).await.expect("send");
        }
        let mut keys = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, events.recv()).await {
            if let MediaEvent::Dtmf(k) = ev {
                keys.push(k);
            }
        }
        assert_eq!(keys, ['*']);
        stream.stop().await;
        assert_eq!(rig.announcer.stats().streams, 0);
        rig.shutdown().await;
    }

    #[tokio::test]
    async fn hold_address_sends_nothing_and_start_after_shutdown_fails() {
        let rig = rig(23_800).await;
        let mut spec = rig.spec(None);
        spec.remote = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 4000);
        let (stream, _events) = rig.announcer.start(spec).await.expect("start");
        let mut buf = [0u8; 64];
        let got = tokio::time::timeout(Duration::from_millis(200), rig.sink.recv(&mut buf)).await;
        assert!(got.is_err(), "sent while on hold");
        // Off hold: packets flow.
        stream.set_remote(rig.sink.local_addr().expect("addr"));
        let first = rig.recv().await.expect("packet after resume");
        assert!(parse_rtp(&first).expect("rtp").marker);
        rig.token.cancel();
        let again = rig.announcer.start(rig.spec(None)).await;
        assert_eq!(again.err(), Some(AnnouncerError::Closed));
        drop(stream);
        rig.shutdown().await;
    }

    /// A stream with the hold picture: nothing on the video socket until it has an address,
    /// then VP8 packets (their own SSRC) that reassemble into the card's key frame first,
    /// at 5 frames a second, next to the audio, which is unchanged.
    #[tokio::test]
    async fn video_side_sends_the_card_from_its_key_frame() {
        use crate::media::video::{HoldVideo, is_key_frame};
        let rig = rig(24_600).await;
        let video_socket = RtpSocket::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let video_sink = UdpSocket::bind("127.0.0.1:0").await.expect("sink");
        let card = HoldVideo::embedded().expect("card");
        let (stream, _events) = rig
            .announcer
            .start_with_video(
                rig.spec(None),
                Some(VideoSpec {
                    socket: Arc::new(video_socket),
                    pt: 100,
                    card: Arc::clone(&card),
                    rtcp_mux: false,
                }),
            )
            .await
            .expect("start");
        let audio = parse_rtp(&rig.recv().await.expect("audio"))
            .expect("rtp")
            .ssrc;
        let mut buf = [0u8; 2048];
        let early =
            tokio::time::timeout(Duration::from_millis(300), video_sink.recv(&mut buf)).await;
        assert!(early.is_err(), "video sent before it had an address");
        stream.set_video_remote(video_sink.local_addr().expect("addr"));
        let started = std::time::Instant::now();
        // Frames: the key frame (several packets), then inter frames, one packet each.
        let mut frames: Vec<(u32, Vec<u8>)> = Vec::new();
        let mut current = Vec::new();
        let mut ssrc = None;
        while frames.len() < 6 {
            let n = tokio::time::timeout(Duration::from_secs(2), video_sink.recv(&mut buf))
                .await
                .expect("video packet")
                .expect("recv");
            let p = parse_rtp(&buf[..n]).expect("rtp");
            assert_eq!(p.pt, 100);
            assert_ne!(p.ssrc, audio, "video has its own SSRC");
            assert_eq!(*ssrc.get_or_insert(p.ssrc), p.ssrc);
            assert!(n <= 1_200 + 12);
            assert_eq!(p.payload[0] & 0x10 != 0, current.is_empty(), "S bit");
            current.extend_from_slice(&p.payload[1..]);
            if p.marker {
                frames.push((p.ts, std::mem::take(&mut current)));
            }
        }
        let elapsed = started.elapsed();
        assert_eq!(
            frames[0].1, card.frames[0],
            "the key frame first, byte for byte"
        );
        assert!(is_key_frame(&frames[0].1));
        for (i, (_, f)) in frames.iter().enumerate().skip(1) {
            assert_eq!(f, &card.frames[i]);
        }
        // 5 frames a second: 200 ms, 18,000 ticks of the 90 kHz clock, apart (or a multiple,
        // should the machine stall the thread past a frame slot: `FrameClock` skips it).
        for w in frames.windows(2) {
            let d = w[1].0.wrapping_sub(w[0].0);
            assert!(d > 0 && d % 18_000 == 0, "{d}");
        }
        assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
        // The key frame's packets and four inter frames' at least: the last frame's tick may
        // not have added its count yet when its packet arrives here.
        let key_packets = card.frames[0]
            .len()
            .div_ceil(crate::media::video::MAX_PAYLOAD - 1);
        assert!(rig.announcer.stats().video_sent >= (key_packets + 4) as u64);
        // Held: the picture stops.
        stream.set_video_remote(UNSPECIFIED_REMOTE);
        tokio::time::sleep(Duration::from_millis(100)).await;
        while video_sink.try_recv(&mut buf).is_ok() {}
        let more =
            tokio::time::timeout(Duration::from_millis(500), video_sink.recv(&mut buf)).await;
        assert!(more.is_err(), "video sent while held");
        stream.stop().await;
        rig.shutdown().await;
    }

    /// The pacing does not depend on the tokio runtime being free: with this test's only
    /// runtime thread (`current_thread`) blocked in a synchronous receive, packets keep
    /// arriving. The tokio-task driver sent nothing until the runtime was free again, so this
    /// timed out; it is the property that keeps SIP, the web and the centre out of the pacing.
    #[tokio::test]
    async fn packets_flow_while_the_runtime_is_blocked() {
        let rig = rig(24_200).await;
        let sink = std::net::UdpSocket::bind("127.0.0.1:0").expect("sink");
        sink.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut spec = rig.spec(None);
        spec.remote = sink.local_addr().expect("addr");
        let (stream, _events) = rig.announcer.start(spec).await.expect("start");
        // From here nothing yields to the runtime until 25 packets (half a second) are in.
        let mut buf = [0u8; 2048];
        let mut seqs = Vec::new();
        for i in 0..25 {
            let n = sink
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("packet {i} while the runtime is blocked: {e}"));
            seqs.push(parse_rtp(&buf[..n]).expect("rtp").seq);
        }
        for w in seqs.windows(2) {
            assert_eq!(w[1], w[0].wrapping_add(1), "{seqs:?}");
        }
        stream.stop().await;
        rig.shutdown().await;
    }
}
