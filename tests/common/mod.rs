//! Shared harness for the integration tests: the real `holdline` binary on 127.0.0.1 with
//! its own ports and data directory, SIPp runs against it, and a minimal raw SIP client.
//!
//! Every wait here is for an event with a deadline, never a bare sleep for a condition.
#![allow(dead_code)]

pub mod baresip;
pub mod browser;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const HOST: &str = "127.0.0.1";

/// A UDP+TCP port free right now (the OS picks it; we check TCP too).
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind((HOST, 0)).expect("bind udp");
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind((HOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

/// An even port with the next three free too (SIPp's audio and video media ports).
pub fn free_media_port() -> u16 {
    for _ in 0..100 {
        let p = free_port();
        let base = p & !1;
        if base > 1024 && (0..4).all(|i| UdpSocket::bind((HOST, base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no free media port block");
}

pub fn scratch_dir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "holdline-test-{}-{}-{}",
        name,
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The real gateway process.
pub struct Gateway {
    pub child: Option<Child>,
    pub sip: SocketAddr,
    pub http: SocketAddr,
    pub data: PathBuf,
    pub config: Option<PathBuf>,
    pub log: PathBuf,
}

impl Gateway {
    pub fn start(name: &str) -> Self {
        Self::start_with(name, None)
    }

    /// Starts with the embedded default, or with `config_toml` written to a file.
    pub fn start_with(name: &str, config_toml: Option<&str>) -> Self {
        let data = scratch_dir(name);
        let config = config_toml.map(|text| {
            let p = data.join("holdline.toml");
            std::fs::write(&p, text).unwrap();
            p
        });
        let mut g = Gateway {
            child: None,
            sip: SocketAddr::new(HOST.parse().unwrap(), free_port()),
            http: SocketAddr::new(HOST.parse().unwrap(), free_port()),
            data: data.join("data"),
            config,
            log: data.join("holdline.log"),
        };
        g.spawn();
        g
    }

    /// Starts with the repository's default configuration plus `agents_toml` appended
    /// (`[[agent]]` tables; the default's demo agents stay configured, logged out).
    pub fn start_with_agents(name: &str, agents_toml: &str) -> Self {
        Self::start_with(name, Some(&default_config_with(agents_toml)))
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_holdline"));
        cmd.arg("--sip")
            .arg(self.sip.to_string())
            .arg("--http")
            .arg(self.http.to_string())
            .arg("--data")
            .arg(&self.data)
            .env("RUST_LOG", "info,holdline=debug")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .stdin(Stdio::null());
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        self.child = Some(cmd.spawn().expect("start holdline"));
        self.wait_ready(Duration::from_secs(30));
    }

    /// Ready = answers an OPTIONS over UDP with 200.
    pub fn wait_ready(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        let sock = UdpSocket::bind((HOST, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut n = 0;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "holdline exited early ({status}); log:\n{}",
                    self.log_text()
                );
            }
            n += 1;
            let msg = options(&sock.local_addr().unwrap(), self.sip, &format!("ready-{n}"));
            let _ = sock.send_to(msg.as_bytes(), self.sip);
            let mut buf = [0u8; 4096];
            if let Ok((len, _)) = sock.recv_from(&mut buf)
                && buf[..len].starts_with(b"SIP/2.0 200")
            {
                return;
            }
        }
        panic!(
            "holdline not ready in {within:?}; log:\n{}",
            self.log_text()
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no clean shutdown, nothing flushed that was not already committed.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait (bounded) for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.terminate_watching(|| {})
    }

    /// SIGTERM, then call `during` again and again until the process has exited (bounded).
    pub fn terminate_watching(&mut self, mut during: impl FnMut()) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(c.id()).expect("pid fits i32")),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                c.kill().unwrap();
                panic!(
                    "holdline did not stop on SIGTERM; log:\n{}",
                    self.log_text()
                );
            }
            during();
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.data.join("holdline.sqlite3"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the gateway's database")
    }

    /// GET a path of the web server; returns (status, body). Plain HTTP/1.1 over TCP.
    pub fn http_get(&self, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.http
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        (status, body)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The repository's `holdline.toml` (the embedded default) with `extra` appended, e.g.
/// `[[agent]]` or remote `[[queue]]` tables.
pub fn default_config_with(extra: &str) -> String {
    let text = std::fs::read_to_string(repo().join("holdline.toml")).expect("holdline.toml");
    format!("{text}\n\n{extra}\n")
}

/// One `[[agent]]` table (reached by REGISTER) with the given skills, e.g. `support = 5`.
pub fn agent_toml(id: &str, name: &str, password: &str, skills: &str) -> String {
    format!(
        "[[agent]]\nid = \"{id}\"\nname = \"{name}\"\npassword = \"{password}\"\nskills = {{ {skills} }}\n"
    )
}

/// An `Authorization: Basic` value for `user:password`.
pub fn basic_auth(user_password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_password)
    )
}

pub fn options(local: &SocketAddr, to: SocketAddr, call_id: &str) -> String {
    format!(
        "OPTIONS sip:support@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{call_id}\r\nFrom: <sip:probe@{local}>;tag=p1\r\nTo: <sip:support@{to}>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Path of the SIPp binary, or a loud failure: these tests need a real SIPp.
pub fn sipp_bin() -> PathBuf {
    for p in ["/usr/bin/sipp", "/usr/local/bin/sipp"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("SIPp is not installed: install Debian's sip-tester (the README's test command does)");
}

pub struct SippRun {
    pub ok: bool,
    pub output: String,
    pub dir: PathBuf,
}

/// Runs one SIPp scenario from `sip-scenarios/` against the gateway and waits (bounded).
pub fn sipp(
    g: &Gateway,
    scenario: &str,
    service: &str,
    extra: &[&str],
    timeout: Duration,
) -> SippRun {
    sipp_spawn(g, scenario, service, extra, timeout).wait()
}

/// A SIPp run going on in the background (for tests that act while the call is up).
pub struct SippChild {
    child: Option<Child>,
    output: Option<mpsc::Receiver<String>>,
    pub dir: PathBuf,
    pub timeout: Duration,
}

/// Starts one SIPp scenario in the background; SIPp itself gives up after `timeout`
/// (`-timeout … -timeout_error`), and [`SippChild::wait`] kills it a little after that.
pub fn sipp_spawn(
    g: &Gateway,
    scenario: &str,
    service: &str,
    extra: &[&str],
    timeout: Duration,
) -> SippChild {
    sipp_spawn_with_files(g, scenario, service, extra, timeout, &[])
}

/// [`sipp_spawn`] with `files` (name, bytes) written into SIPp's working directory first,
/// e.g. a pcap for `play_pcap_audio` made for this run.
pub fn sipp_spawn_with_files(
    g: &Gateway,
    scenario: &str,
    service: &str,
    extra: &[&str],
    timeout: Duration,
    files: &[(&str, Vec<u8>)],
) -> SippChild {
    let mut args = vec!["-s", service, "-l", "1", "-max_recv_loops", "1000"];
    args.extend_from_slice(extra);
    sipp_start_with(Some(g.sip), scenario, free_port(), 1, timeout, &args, files)
}

/// A pcap (Ethernet, IPv4, UDP) of `keys` as RFC 4733 telephone-events (payload type 101),
/// for SIPp's `play_pcap_audio`: per key three updates and the end packet three times, 20
/// ms apart, one RTP timestamp per key, 200 ms between keys. SIPp rewrites the addresses
/// and ports; the RTP is sent as recorded.
pub fn rfc4733_pcap(keys: &str) -> Vec<u8> {
    // The global header: magic, version 2.4, zone, accuracy, snap length, Ethernet.
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    for v in [0u32, 0, 65_535, 1] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let mut at_us: u64 = 1_000_000;
    for key in rfc4733_keys(keys, 4000, 80_000, 0x5150_4733) {
        for rtp in key {
            let udp_len = 8 + rtp.len() as u16;
            let ip_len = 20 + udp_len;
            let mut frame = vec![0u8; 12];
            frame.extend_from_slice(&[0x08, 0x00]);
            let mut ip = vec![
                0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
            ];
            ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
            let sum = ip
                .chunks(2)
                .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
                .sum::<u32>();
            let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            frame.extend_from_slice(&ip);
            frame.extend_from_slice(&6000u16.to_be_bytes());
            frame.extend_from_slice(&6002u16.to_be_bytes());
            frame.extend_from_slice(&udp_len.to_be_bytes());
            frame.extend_from_slice(&[0, 0]);
            frame.extend_from_slice(&rtp);
            let len = frame.len() as u32;
            out.extend_from_slice(&((at_us / 1_000_000) as u32).to_le_bytes());
            out.extend_from_slice(&((at_us % 1_000_000) as u32).to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&frame);
            at_us += 20_000;
        }
        at_us += 200_000;
    }
    out
}

/// `keys` as RFC 4733 telephone-event RTP packets (payload type 101), per key: three
/// updates then the end packet three times (RFC 4733 §2.5.1.4), one RTP timestamp per key
/// (1,600 apart), sequence numbers from `seq`. The caller paces them (20 ms apart).
pub fn rfc4733_keys(keys: &str, mut seq: u16, mut ts: u32, ssrc: u32) -> Vec<Vec<Vec<u8>>> {
    keys.chars()
        .map(|k| {
            let event = match k {
                '0'..='9' => k as u8 - b'0',
                '*' => 10,
                '#' => 11,
                _ => panic!("key {k}"),
            };
            let packets = (0..6u16)
                .map(|i| {
                    let end = i >= 3;
                    let duration = 160 * (i.min(3) + 1);
                    let mut rtp = vec![0x80, 101 | if i == 0 { 0x80 } else { 0 }];
                    rtp.extend_from_slice(&seq.to_be_bytes());
                    rtp.extend_from_slice(&ts.to_be_bytes());
                    rtp.extend_from_slice(&ssrc.to_be_bytes());
                    rtp.extend_from_slice(&[
                        event,
                        if end { 0x80 } else { 0 } | 10,
                        (duration >> 8) as u8,
                        duration as u8,
                    ]);
                    seq = seq.wrapping_add(1);
                    rtp
                })
                .collect();
            ts = ts.wrapping_add(1600);
            packets
        })
        .collect()
}

/// Starts one SIPp scenario as a UAS (an agent's phone, another site, the outbound trunk)
/// listening on `port` for `calls` calls, in the background; bounded like [`sipp_spawn`].
pub fn sipp_uas(scenario: &str, port: u16, calls: u32, timeout: Duration) -> SippChild {
    sipp_start(None, scenario, port, calls, timeout, &[])
}

/// SIPp on `port` running `scenario` for `calls` calls, towards `remote` (a UAC) or none
/// (a UAS); it gives up after `timeout` (`-timeout … -timeout_error`) and keeps its error
/// and message traces in a scratch directory.
fn sipp_start(
    remote: Option<SocketAddr>,
    scenario: &str,
    port: u16,
    calls: u32,
    timeout: Duration,
    args: &[&str],
) -> SippChild {
    sipp_start_with(remote, scenario, port, calls, timeout, args, &[])
}

fn sipp_start_with(
    remote: Option<SocketAddr>,
    scenario: &str,
    port: u16,
    calls: u32,
    timeout: Duration,
    args: &[&str],
    files: &[(&str, Vec<u8>)],
) -> SippChild {
    let dir = scratch_dir(&format!("sipp-{scenario}"));
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let path = repo().join("sip-scenarios").join(format!("{scenario}.xml"));
    assert!(path.exists(), "no scenario {}", path.display());
    let mut cmd = Command::new(sipp_bin());
    cmd.current_dir(&dir);
    if let Some(remote) = remote {
        cmd.arg(remote.to_string());
    }
    cmd.arg("-sf")
        .arg(&path)
        .arg("-i")
        .arg(HOST)
        .arg("-p")
        .arg(port.to_string())
        .arg("-mp")
        .arg(free_media_port().to_string())
        .arg("-m")
        .arg(calls.to_string())
        .arg("-nostdin")
        .arg("-timeout")
        .arg(format!("{}s", timeout.as_secs()))
        .arg("-timeout_error")
        .arg("-trace_err")
        .arg("-trace_msg")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start sipp");
    let output = drain(&mut child);
    SippChild {
        child: Some(child),
        output: Some(output),
        dir,
        timeout,
    }
}

impl SippChild {
    /// Waits for SIPp to end by itself (bounded: killed past its own timeout + 15 s).
    pub fn wait(mut self) -> SippRun {
        let child = self.child.take().expect("not waited yet");
        let rx = self.output.take().expect("not waited yet");
        let out = wait_drained(child, rx, self.timeout + Duration::from_secs(15));
        let mut output = out.1;
        for entry in std::fs::read_dir(&self.dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.ends_with("_errors.log") || name.ends_with("_messages.log") {
                output.push_str(&format!("\n--- {name}\n"));
                output.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        SippRun {
            ok: out.0,
            output,
            dir: self.dir.clone(),
        }
    }
}

impl Drop for SippChild {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits for a child with a deadline; kills it past the deadline. (success, stdout+stderr)
pub fn wait_output(mut child: Child, within: Duration) -> (bool, String) {
    let rx = drain(&mut child);
    wait_drained(child, rx, within)
}

/// Reads the child's stdout and stderr on threads from now on (so a chatty child never
/// blocks on a full pipe); the receiver yields each stream's text when it closes.
pub fn drain(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (tx, rx) = mpsc::channel();
    for pipe in [
        stdout.map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        stderr.map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                text.push_str(&line);
                text.push('\n');
            }
            let _ = tx.send(text);
        });
    }
    rx
}

/// Waits for a drained child with a deadline; kills it past the deadline.
pub fn wait_drained(
    mut child: Child,
    rx: mpsc::Receiver<String>,
    within: Duration,
) -> (bool, String) {
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text: String = rx.iter().collect::<Vec<_>>().join("\n");
    match status {
        Some(s) => (s.success(), text),
        None => (false, format!("TIMED OUT after {within:?}\n{text}")),
    }
}

/// A minimal SIP caller on raw UDP sockets, for tests that need to look at what SIPp
/// cannot check (RTP payload bytes) or to hold many calls open cheaply.
pub struct Caller {
    pub sip: UdpSocket,
    pub rtp: UdpSocket,
    pub gateway: SocketAddr,
    pub call_id: String,
    /// Our tag (From), the same on every request of the dialog.
    pub from_tag: String,
    pub to_tag: String,
    /// The 12-digit contact number from the 200 OK's Call-Info.
    pub number: String,
    pub call_info: String,
    /// Where the gateway sends RTP from (the SDP answer's c= and m= port).
    pub server_rtp: SocketAddr,
    pub answer_sdp: String,
    cseq: u32,
}

static CALLS: AtomicU32 = AtomicU32::new(0);

pub fn header_value(msg: &str, name: &str) -> Option<String> {
    msg.lines()
        .find(|l| {
            l.len() > name.len()
                && l[..name.len()].eq_ignore_ascii_case(name)
                && l.as_bytes()[name.len()] == b':'
        })
        .map(|l| l[name.len() + 1..].trim().to_owned())
}

impl Caller {
    /// INVITE `service`, wait for the 200 OK (bounded), ACK it.
    pub fn call(g: &Gateway, service: &str, codec_pt: u8) -> Caller {
        let n = CALLS.load(Ordering::Relaxed);
        Self::call_as(g, service, codec_pt, &format!("+15550100{n}"))
    }

    /// The same, calling from the phone number `from_user` (the From user part). A 200 OK
    /// without Call-Info leaves `number` and `call_info` empty.
    pub fn call_as(g: &Gateway, service: &str, codec_pt: u8, from_user: &str) -> Caller {
        Self::call_offering(g, service, codec_pt, from_user, "")
    }

    /// The same, with `more_media` (whole `m=` sections, CRLF-terminated, e.g. a video
    /// stream) after the audio stream in the offer.
    pub fn call_offering(
        g: &Gateway,
        service: &str,
        codec_pt: u8,
        from_user: &str,
        more_media: &str,
    ) -> Caller {
        let sip = UdpSocket::bind((HOST, 0)).unwrap();
        let rtp = UdpSocket::bind((HOST, 0)).unwrap();
        sip.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let local = sip.local_addr().unwrap();
        let n = CALLS.fetch_add(1, Ordering::Relaxed);
        let call_id = format!("test-{}-{n}@{HOST}", std::process::id());
        let codec = if codec_pt == 8 { "PCMA" } else { "PCMU" };
        let sdp = format!(
            "v=0\r\no=t 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\nm=audio {} RTP/AVP {codec_pt} 101\r\na=rtpmap:{codec_pt} {codec}/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n{more_media}",
            rtp.local_addr().unwrap().port()
        );
        let invite = format!(
            "INVITE sip:{service}@{gw} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{n}inv\r\nFrom: \"Test\" <sip:{from_user}@{HOST}>;tag=t{n}\r\nTo: <sip:{service}@{gw}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:test@{local}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len(),
            gw = g.sip,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        sip.send_to(invite.as_bytes(), g.sip).unwrap();
        let ok = loop {
            assert!(
                Instant::now() < deadline,
                "no 200 OK; log:\n{}",
                g.log_text()
            );
            let mut buf = [0u8; 8192];
            let Ok((len, _)) = sip.recv_from(&mut buf) else {
                sip.send_to(invite.as_bytes(), g.sip).unwrap();
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..len]).to_string();
            if text.starts_with("SIP/2.0 200") {
                break text;
            }
            assert!(text.starts_with("SIP/2.0 1"), "unexpected answer: {text}");
        };
        let to = header_value(&ok, "To").unwrap();
        let to_tag = to.split(";tag=").nth(1).unwrap().to_owned();
        let call_info = header_value(&ok, "Call-Info").unwrap_or_default();
        let url = call_info
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap_or("");
        // `…/c/NUMBER?k=TOKEN`: the token lets the link skip the guessing budget.
        let number = url
            .rsplit('/')
            .next()
            .unwrap_or("")
            .split('?')
            .next()
            .unwrap_or("")
            .to_owned();
        let answer_sdp = ok.split("\r\n\r\n").nth(1).unwrap().to_owned();
        let port: u16 = answer_sdp
            .lines()
            .find(|l| l.starts_with("m=audio "))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .expect("m=audio in the answer");
        let mut c = Caller {
            sip,
            rtp,
            gateway: g.sip,
            call_id,
            from_tag: format!("t{n}"),
            to_tag,
            number,
            call_info,
            server_rtp: SocketAddr::new(HOST.parse().unwrap(), port),
            answer_sdp,
            cseq: 1,
        };
        c.send_in_dialog("ACK", 1, "ack");
        c
    }

    fn send_in_dialog(&mut self, method: &str, cseq: u32, branch: &str) {
        let local = self.sip.local_addr().unwrap();
        let msg = format!(
            "{method} sip:support@{gw} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{branch}{cseq}{id}\r\nFrom: \"Test\" <sip:test@{HOST}>;tag={from_tag}\r\nTo: <sip:support@{gw}>;tag={tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            gw = self.gateway,
            tag = self.to_tag,
            from_tag = self.from_tag,
            call_id = self.call_id,
            id = self.call_id.len(),
        );
        self.sip.send_to(msg.as_bytes(), self.gateway).unwrap();
    }

    /// Sends an in-dialog `method` with `headers` and returns the final status (bounded).
    pub fn request(&mut self, method: &str, headers: &[(&str, &str)]) -> u16 {
        self.cseq += 1;
        let cseq = self.cseq;
        let local = self.sip.local_addr().unwrap();
        let extra: String = headers
            .iter()
            .map(|(n, v)| format!("{n}: {v}\r\n"))
            .collect();
        let msg = format!(
            "{method} sip:support@{gw} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKreq{cseq}{id}\r\nFrom: \"Test\" <sip:test@{HOST}>;tag={from_tag}\r\nTo: <sip:support@{gw}>;tag={tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContact: <sip:test@{local}>\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n",
            gw = self.gateway,
            tag = self.to_tag,
            from_tag = self.from_tag,
            call_id = self.call_id,
            id = self.call_id.len(),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        self.sip.send_to(msg.as_bytes(), self.gateway).unwrap();
        while Instant::now() < deadline {
            let mut buf = [0u8; 8192];
            match self.sip.recv_from(&mut buf) {
                Ok((len, _)) => {
                    let text = String::from_utf8_lossy(&buf[..len]).to_string();
                    let status: u16 = text
                        .strip_prefix("SIP/2.0 ")
                        .and_then(|r| r.get(..3))
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(0);
                    let same = header_value(&text, "CSeq")
                        .is_some_and(|c| c == format!("{cseq} {method}"));
                    if status >= 200 && same {
                        return status;
                    }
                }
                Err(_) => {
                    self.sip.send_to(msg.as_bytes(), self.gateway).unwrap();
                }
            }
        }
        panic!("{method} not answered");
    }

    /// BYE and wait for its 200 (bounded).
    pub fn hang_up(&mut self) {
        self.cseq += 1;
        let cseq = self.cseq;
        self.send_in_dialog("BYE", cseq, "bye");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let mut buf = [0u8; 8192];
            if let Ok((len, _)) = self.sip.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..len]);
                if text.starts_with("SIP/2.0 200") && text.contains("BYE") {
                    return;
                }
            } else {
                self.send_in_dialog("BYE", cseq, "bye");
            }
        }
        panic!("BYE not answered");
    }

    /// Receives RTP for `frames` packets (bounded by time), returning (header, payload).
    pub fn receive_rtp(&self, frames: usize, within: Duration) -> Vec<([u8; 12], Vec<u8>)> {
        self.rtp
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let deadline = Instant::now() + within;
        let mut out = Vec::with_capacity(frames);
        while out.len() < frames && Instant::now() < deadline {
            let mut buf = [0u8; 2048];
            if let Ok((len, from)) = self.rtp.recv_from(&mut buf) {
                assert_eq!(
                    from, self.server_rtp,
                    "RTP comes from the port in the SDP answer"
                );
                let mut h = [0u8; 12];
                h.copy_from_slice(&buf[..12]);
                out.push((h, buf[12..len].to_vec()));
            }
        }
        out
    }
}

impl Caller {
    /// Sends `keys` as RFC 4733 events (payload type 101, as the caller offered) from the
    /// caller's RTP socket to the gateway's (the SDP answer's port): per key three updates then the end packet three
    /// times, one RTP timestamp per key, 20 ms apart.
    pub fn key_rtp(&self, keys: &str) {
        for key in rfc4733_keys(keys, 1000, 160_000, 0x4733_0016) {
            for p in key {
                self.rtp.send_to(&p, self.server_rtp).unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(60));
        }
    }

    /// Waits (bounded) for a request of `method` from the gateway and answers it 200 OK.
    pub fn expect_request(&self, method: &str, within: Duration) -> String {
        self.sip
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let mut buf = [0u8; 8192];
            let Ok((len, from)) = self.sip.recv_from(&mut buf) else {
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..len]).to_string();
            if !text.starts_with(&format!("{method} ")) {
                continue;
            }
            let mut ok = String::from("SIP/2.0 200 OK\r\n");
            for h in ["Via", "From", "To", "Call-ID", "CSeq"] {
                if let Some(v) = header_value(&text, h) {
                    ok.push_str(&format!("{h}: {v}\r\n"));
                }
            }
            ok.push_str("Content-Length: 0\r\n\r\n");
            self.sip.send_to(ok.as_bytes(), from).unwrap();
            return text;
        }
        panic!("no {method} from the gateway within {within:?}");
    }
}

/// A tiny HTTP/1.1 client with one cookie (the web session), for API tests against the
/// real binary over loopback.
pub struct Http {
    pub addr: SocketAddr,
    pub cookie: Option<String>,
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl Http {
    pub fn new(g: &Gateway) -> Http {
        Http {
            addr: g.http,
            cookie: None,
        }
    }

    pub fn get(&mut self, path: &str) -> HttpResponse {
        self.send("GET", path, &[], None)
    }

    pub fn post_json(&mut self, path: &str, csrf: &str, body: &serde_json::Value) -> HttpResponse {
        let text = body.to_string();
        self.send(
            "POST",
            path,
            &[("Content-Type", "application/json"), ("X-CSRF-Token", csrf)],
            Some(&text),
        )
    }

    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> HttpResponse {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if let Some(c) = &self.cookie {
            req.push_str(&format!("Cookie: {c}\r\n"));
        }
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        let body = body.unwrap_or("");
        req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw).to_string();
        let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let chunked = headers.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
        });
        let body = if chunked {
            dechunk(rest)
        } else {
            rest.to_owned()
        };
        for (n, v) in &headers {
            if n.eq_ignore_ascii_case("set-cookie")
                && let Some(pair) = v.split(';').next()
            {
                self.cookie = Some(pair.trim().to_owned());
            }
        }
        HttpResponse {
            status,
            headers,
            body,
        }
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

// ---------------------------------------------------------------------------------------
// Agents and contacts over the JSON API (shared by the agent and call-fault tests).
// ---------------------------------------------------------------------------------------

/// One agent's API calls, authenticated with HTTP Basic (no cookie, no CSRF).
pub struct AgentApi {
    pub http: Http,
    auth: String,
}

impl AgentApi {
    pub fn new(g: &Gateway, id: &str, password: &str) -> AgentApi {
        AgentApi {
            http: Http::new(g),
            auth: basic_auth(&format!("{id}:{password}")),
        }
    }

    pub fn me(&mut self) -> serde_json::Value {
        let r = self.http.send(
            "GET",
            "/api/agent/me",
            &[("Authorization", &self.auth)],
            None,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    }

    pub fn post(&mut self, path: &str, body: serde_json::Value) -> HttpResponse {
        let text = body.to_string();
        let auth = self.auth.clone();
        self.http.send(
            "POST",
            path,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            Some(&text),
        )
    }

    pub fn state(&mut self, state: &str) {
        let r = self.post("/api/agent/state", serde_json::json!({ "state": state }));
        assert!(
            r.status == 200 || r.status == 204,
            "{state}: {} {}",
            r.status,
            r.body
        );
    }

    /// Logs in and goes ready.
    pub fn ready(&mut self) {
        self.state("logged_in");
        self.state("ready");
    }

    /// Polls `/api/agent/me` until `pred` holds (bounded).
    pub fn wait_for(
        &mut self,
        what: &str,
        within: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            let me = self.me();
            if pred(&me) {
                return me;
            }
            assert!(Instant::now() < deadline, "agent never {what}: {me}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The agent state's name in `/api/agent/me`.
pub fn state_name(me: &serde_json::Value) -> &str {
    me["state"]["state"]
        .as_str()
        .or(me["state"].as_str())
        .unwrap_or("")
}

/// Contact numbers in admission order, once `n` are committed (bounded wait).
pub fn contacts(g: &Gateway, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ids: Vec<String> = {
            let db = g.db();
            let mut st = db.prepare("SELECT id FROM contacts ORDER BY seq").unwrap();
            st.query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        if ids.len() >= n {
            return ids;
        }
        assert!(Instant::now() < deadline, "only {} contacts", ids.len());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A contact's JSON (the session's first read also gets its CSRF token).
pub fn contact(http: &mut Http, number: &str) -> serde_json::Value {
    let r = http.get(&format!("/api/contacts/{number}"));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// Polls the contact's JSON until `pred` holds (bounded).
pub fn wait_contact(
    http: &mut Http,
    number: &str,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = contact(http, number);
        if pred(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "contact never {what}: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How the contact ended, from the store (`None` while live).
pub fn end_reason(g: &Gateway, number: &str) -> Option<String> {
    g.db()
        .query_row(
            "SELECT end_reason FROM contacts WHERE id = ?1",
            [number],
            |r| r.get::<_, Option<String>>(0),
        )
        .unwrap()
}

/// Polls the store until the contact has ended (bounded).
pub fn wait_end_reason(g: &Gateway, number: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(r) = end_reason(g, number) {
            return r;
        }
        assert!(Instant::now() < deadline, "contact never ended");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One agent API request as `user:password` (HTTP Basic) on `http`: must answer 200 or 204;
/// the JSON, or `Null` for an empty body.
pub fn agent_call(
    http: &mut Http,
    credentials: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let auth = basic_auth(credentials);
    let text = body.map(|b| b.to_string());
    let mut headers = vec![("Authorization", auth.as_str())];
    if text.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let r = http.send(method, path, &headers, text.as_deref());
    assert!(
        r.status == 200 || r.status == 204,
        "{path}: {} {}",
        r.status,
        r.body
    );
    if r.body.is_empty() {
        serde_json::Value::Null
    } else {
        r.json()
    }
}
