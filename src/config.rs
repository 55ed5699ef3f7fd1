//! Typed configuration: the command line, the TOML file and the embedded default.
//!
//! `holdline` with no arguments runs on `DEFAULT_TOML` (compiled in), so a fresh checkout
//! needs no file. A `--config FILE` is merged over the default: it holds only what it
//! changes (a file with only `[sip]` is a whole configuration); tables merge key by key,
//! and a list (`codecs`, `[[queue]]`, `[[agent]]`) replaces the default's whole (so
//! `agent = []` at the top of a file means "no agents"). `--sip`, `--http` and `--data`
//! then override single fields.
//!
//! One file of ~1,080 production lines on purpose: it is the one place that says what every
//! configuration key means, its default and how it is checked, section by section in the
//! order of `holdline.toml`; most of it is doc comments and `serde` defaults. Splitting it
//! by section would put the cross-section checks (`validate`) away from the keys they read.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The embedded default configuration; also the documented example (README links it).
pub const DEFAULT_TOML: &str = include_str!("../holdline.toml");

/// Command line of the `holdline` binary.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(
    name = "holdline",
    version,
    about = "SIP contact-centre gateway: answers calls, announces a contact number and parks the caller in a skill queue",
    long_about = None
)]
pub struct Cli {
    /// TOML configuration file (default: the embedded configuration, see holdline.toml)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// SIP listen address, UDP and TCP on the same port (default 0.0.0.0:5060)
    #[arg(long, value_name = "ADDR:PORT")]
    pub sip: Option<SocketAddr>,
    /// HTTP listen address of the web server (default 0.0.0.0:8080)
    #[arg(long, value_name = "ADDR:PORT")]
    pub http: Option<SocketAddr>,
    /// Data directory holding the SQLite database (default ./holdline-data)
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The cause is in the message and not a `#[source]`: printed with its chain it would
    // appear twice.
    #[error("cannot read configuration file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("configuration is not valid for holdline: {0}")]
    Syntax(toml::de::Error),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub sip: SipConfig,
    pub http: HttpConfig,
    pub data: DataConfig,
    pub media: MediaConfig,
    pub limits: LimitsConfig,
    pub callback: CallbackConfig,
    #[serde(rename = "queue")]
    pub queues: Vec<QueueConfig>,
    /// `[agents]`: settings shared by every agent.
    #[serde(rename = "agents", default)]
    pub agent_settings: AgentsConfig,
    /// `[[agent]]`: the people who take contacts (none: contacts only wait).
    #[serde(rename = "agent", default)]
    pub agents: Vec<AgentConfig>,
    /// `[supervisors]`: settings of the supervisor's view (the wallboard and reports).
    #[serde(rename = "supervisors", default)]
    pub supervisor_settings: SupervisorsConfig,
    /// `[[supervisor]]`: who may open the wallboard, reports and supervisor actions.
    #[serde(rename = "supervisor", default)]
    pub supervisors: Vec<SupervisorConfig>,
    #[serde(default)]
    pub log: LogConfig,
    /// `[email]`: relay of emails and web forms to an SMTP server (optional; off when absent).
    #[serde(default)]
    pub email: EmailConfig,
    /// `[calls]`: how dead calls are noticed (optional; defaults when absent).
    #[serde(default)]
    pub calls: CallsConfig,
}

/// `[calls]`: telling a live call from a dead one (issue 9).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallsConfig {
    /// After this long without RTP from a caller, an in-dialog OPTIONS asks whether the
    /// call is still there; no answer (or 408/481) ends our side and the contact becomes
    /// disconnected. 0: never.
    pub rtp_timeout_secs: u32,
    /// RFC 4028 session timers: a caller asking for a shorter Session-Expires is answered
    /// 422 with this Min-SE (the RFC's floor is 90; lower only for tests).
    pub min_se_secs: u32,
    /// The interval offered to a caller that supports session timers but asked for none.
    pub session_expires_secs: u32,
}

impl Default for CallsConfig {
    fn default() -> Self {
        CallsConfig {
            rtp_timeout_secs: 40,
            min_se_secs: 90,
            session_expires_secs: 1800,
        }
    }
}

/// `[email]`: when an email or web form left by a caller reaches an agent, a copy goes to
/// `to` through the SMTP server `smtp` (see `crate::mail`). Empty `smtp`: no relay.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// `smtp://host[:port]` (plain, port 25 by default), `smtp://host:587?tls=required`
    /// (STARTTLS) or `smtps://host[:465]` (TLS from the start). Empty: relay off.
    pub smtp: String,
    /// From of relayed messages: `addr@example.com` or `Name <addr@example.com>`.
    pub from: String,
    /// The mailbox that receives relayed contacts (e.g. the centre's shared inbox).
    pub to: String,
    /// SMTP AUTH login; empty: no authentication. Needs TLS (`smtps://` or `tls=required`).
    pub username: String,
    pub password: String,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            smtp: String::new(),
            from: "holdline@localhost".to_owned(),
            to: String::new(),
            username: String::new(),
            password: String::new(),
        }
    }
}

impl EmailConfig {
    /// The relay is configured.
    pub fn enabled(&self) -> bool {
        !self.smtp.is_empty()
    }
}

// Hand-written so a logged config never shows the SMTP password.
impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfig")
            .field("smtp", &self.smtp)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// `[agents]`: what every agent shares.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsConfig {
    /// After-contact work time; the agent is ready again when it is over.
    pub wrap_up_secs: u32,
    /// An offer not answered within this is "no answer" and the agent goes not ready.
    pub ring_secs: u32,
    /// Digest realm of REGISTER challenges.
    pub realm: String,
    /// Digest algorithms offered to registering phones, most preferred first: "SHA-256",
    /// "MD5". Default "MD5" alone: baresip 1.0 refuses a 401 with any challenge it does not
    /// know, and SIPp 3.6 answers the first challenge and knows only MD5.
    pub digest_algorithms: Vec<String>,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        AgentsConfig {
            wrap_up_secs: 30,
            ring_secs: 20,
            realm: "holdline".to_owned(),
            // What the embedded default says (see holdline.toml: common phones need MD5 alone).
            digest_algorithms: vec!["MD5".to_owned()],
        }
    }
}

/// `[[agent]]`: one person who takes contacts.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// `[a-z0-9_.-]{1,32}`: the console login and the REGISTER / digest username.
    pub id: String,
    /// Shown to the agent and to callers ("Connected to Ada Lovelace").
    pub name: String,
    /// Console login password, and the REGISTER digest password unless `sip_password` is
    /// set (at least 8 characters).
    pub password: String,
    /// A separate password for the phone's REGISTER (at least 8 characters, not the
    /// console's): a phone's configuration is often readable by others (provisioning
    /// files, the phone's own web page), and a digest password guessed over SIP then does
    /// not open the console.
    #[serde(default)]
    pub sip_password: Option<String>,
    /// Queue id -> skill level 1..=10 (levels are recorded; routing is longest-idle first).
    pub skills: BTreeMap<String, u8>,
    /// Fixed SIP address of the agent's phone; `None`: wherever the agent REGISTERs.
    #[serde(default)]
    pub uri: Option<String>,
}

// Hand-written so a logged config never shows a password.
impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field(
                "sip_password",
                &self.sip_password.as_ref().map(|_| "<redacted>"),
            )
            .field("skills", &self.skills)
            .field("uri", &self.uri)
            .finish()
    }
}

/// `[supervisors]`: what the supervisor's view shares (`[[supervisor]]` is the accounts;
/// TOML cannot have a table and an array of tables under one name, as with `[agents]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisorsConfig {
    /// Service level threshold: a contact answered (or abandoned) within this many
    /// seconds of arriving counts as within the service level.
    pub service_level_secs: u32,
}

impl Default for SupervisorsConfig {
    fn default() -> Self {
        SupervisorsConfig {
            service_level_secs: 20,
        }
    }
}

/// `[[supervisor]]`: one person who watches the centre at `/supervisor`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorConfig {
    /// `[a-z0-9_.-]{1,32}`: the login.
    pub id: String,
    pub name: String,
    /// At least 8 characters.
    pub password: String,
    /// Queue ids this supervisor sees and acts on; empty or absent: every queue.
    #[serde(default)]
    pub queues: Vec<String>,
}

// Hand-written so a logged config never shows a password.
impl std::fmt::Debug for SupervisorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorConfig")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("queues", &self.queues)
            .finish()
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// File name in the data directory for the Asterisk-format queue_log; "" = off.
    pub queue_log: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            queue_log: "queue_log".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    /// UDP and TCP are both bound on this address.
    pub listen: SocketAddr,
    /// Host (name or IP) written in Contact headers and used in SDP when the listen address
    /// is a wildcard. Empty: use the local address the kernel routes to the caller from.
    #[serde(default)]
    pub public_host: String,
    /// Wait this long after 100 Trying before answering (0 = answer at once). Some sites
    /// want a moment of ringing; a caller who gives up meanwhile never becomes a contact.
    #[serde(default)]
    pub answer_delay_ms: u64,
    /// Receive buffer asked for the SIP UDP socket, in bytes: bursts of datagrams wait here
    /// instead of being dropped by the kernel (its default, ~208 KiB, dropped requests at
    /// 2,000 calls/s). The kernel caps it at `net.core.rmem_max`; a warning says so.
    #[serde(default = "default_udp_recv_buffer")]
    pub udp_recv_buffer_bytes: usize,
}

fn default_udp_recv_buffer() -> usize {
    4 * 1024 * 1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Base URL of the caller pages as the caller's browser reaches them; the 200 OK's
    /// Call-Info points at `{public_url}/c/{contact number}?k={token}`. Empty: derived from
    /// the listen address (with 127.0.0.1 in place of a wildcard).
    #[serde(default)]
    pub public_url: String,
    /// Open connections in all; past it a new one is closed at once.
    #[serde(default = "default_http_max_connections")]
    pub max_connections: usize,
    /// Open connections from one IP address (raise it behind a reverse proxy, whose
    /// address every client shares).
    #[serde(default = "default_http_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// A connection with no byte read or written for this long is closed (live pages
    /// send a keep-alive every 15 s).
    #[serde(default = "default_http_idle_secs")]
    pub idle_secs: u64,
    /// The centre's time zone (IANA name, from the system's tz database): call-back
    /// windows are shown and typed in it when the caller's browser does not tell its own
    /// (without JavaScript), and the agent console shows times in it.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// A web chat visitor with no page of theirs open (no event stream, no page load, no
    /// message) for this long is away: their contact keeps its place for
    /// `keep_place_secs`, is not offered meanwhile, and comes back when they do.
    #[serde(default = "default_chat_idle_secs")]
    pub chat_idle_secs: u64,
}

fn default_chat_idle_secs() -> u64 {
    60
}

fn default_time_zone() -> String {
    "UTC".to_owned()
}

fn default_http_max_connections() -> usize {
    16_384
}

fn default_http_max_connections_per_ip() -> usize {
    256
}

fn default_http_idle_secs() -> u64 {
    60
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub dir: PathBuf,
    /// How long a contact whose live call was lost (crash, restart) keeps its place.
    pub keep_place_secs: u64,
    /// The page of an ended contact is shown for this long after it ended; its number is
    /// never handed out again either way (new numbers are checked against the store).
    pub id_retention_secs: u64,
    /// How hard each commit holds on to the disk: "full" (the default) fsyncs the WAL at
    /// every group commit, so nothing a caller was told is lost even to a power cut or a
    /// kernel panic. "normal" skips that fsync (the WAL is fsynced at checkpoints only):
    /// it still survives holdline crashing or being killed (-9), since each commit is
    /// already written to the OS, but a power loss or kernel crash can take back the last
    /// commits, contact numbers that callers have already heard included.
    #[serde(default)]
    pub synchronous: Synchronous,
}

/// [`DataConfig::synchronous`]: SQLite's `PRAGMA synchronous` for the WAL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync at every commit: survives power loss.
    #[default]
    Full,
    /// fsync at checkpoints only: survives a process crash, not a power loss.
    Normal,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    /// Directory of G.711 clips (`pcmu/*.ul`, `pcma/*.al`); empty: the clips compiled in.
    #[serde(default)]
    pub prompt_dir: String,
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    /// Codec preference when the offer allows both: "PCMU" or "PCMA" first.
    pub codecs: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Concurrent calls; beyond this new INVITEs get 503 with Retry-After.
    pub max_calls: usize,
    /// Incoming calls not yet answered (being admitted); beyond this new INVITEs get 503
    /// with Retry-After at once, so overload sheds the excess early instead of letting every
    /// call wait behind the centre and time out.
    #[serde(default = "default_max_pending_calls")]
    pub max_pending_calls: usize,
    /// Contacts waiting in all queues (live or disconnected).
    pub max_contacts: usize,
    /// Seconds sent in Retry-After with 503.
    pub retry_after_secs: u32,
    /// How long to let calls finish on shutdown before ending them with BYE.
    pub drain_secs: u64,
    /// Instant messages (SIP MESSAGE) one sender (From URI) may send a minute, after a
    /// burst of ten; beyond, 503 + Retry-After.
    #[serde(default = "default_im_per_sender_per_minute")]
    pub im_per_sender_per_minute: u32,
    /// Instant messages one source address (a phone, or a proxy carrying many senders)
    /// may send a second, after a burst of four seconds' worth.
    #[serde(default = "default_im_per_source_per_second")]
    pub im_per_source_per_second: u32,
}

fn default_max_pending_calls() -> usize {
    1024
}

fn default_im_per_sender_per_minute() -> u32 {
    30
}

fn default_im_per_source_per_second() -> u32 {
    50
}

/// Which numbers a caller may ask to be called back on (checked by the centre), and how
/// call-backs are dialled.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackConfig {
    /// A number must start with one of these after normalising; empty allows any.
    pub allowed_prefixes: Vec<String>,
    /// Refused prefixes: premium-rate and other numbers the centre must never dial.
    pub blocked_prefixes: Vec<String>,
    pub min_digits: usize,
    pub max_digits: usize,
    /// Outbound SIP target for call-backs ("sip:127.0.0.1:5070"); the number becomes the
    /// user part. Empty: call-backs are shown to agents in the console to dial by hand.
    #[serde(default)]
    pub trunk: String,
    /// Dial attempts before the call-back ends as failed.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Wait between attempts.
    #[serde(default = "default_retry_secs")]
    pub retry_secs: u64,
    /// How long the customer's phone rings per attempt.
    #[serde(default = "default_callback_ring_secs")]
    pub ring_secs: u32,
    /// User part of From on call-backs; "" = "holdline".
    #[serde(default)]
    pub caller_id: String,
}

fn default_attempts() -> u32 {
    3
}

fn default_retry_secs() -> u64 {
    300
}

fn default_callback_ring_secs() -> u32 {
    30
}

impl CallbackConfig {
    /// Whether the gateway dials call-backs itself (a trunk is configured).
    pub fn dials(&self) -> bool {
        !self.trunk.is_empty()
    }

    /// The From user part of call-backs.
    pub fn caller_id(&self) -> &str {
        if self.caller_id.is_empty() {
            "holdline"
        } else {
            &self.caller_id
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub id: String,
    pub name: String,
    pub skillset: String,
    /// SIP user parts (service numbers) that reach this queue (none for a remote queue).
    #[serde(default)]
    pub numbers: Vec<String>,
    /// Talk time assumed per contact until the queue has learnt its own (the wait
    /// estimate adds ring and wrap-up, and shrinks this toward what it observes).
    #[serde(default = "default_handle_secs")]
    pub default_handle_secs: u32,
    /// Music on hold is interrupted by the current position and wait every this many seconds.
    #[serde(default = "default_announce_every_secs")]
    pub announce_every_secs: u64,
    /// Set: a remote queue (another site's contact centre); moving there REFERs the caller
    /// to this SIP URI. It holds no contacts, has no numbers and no agents.
    #[serde(default)]
    pub uri: Option<String>,
    /// Clip played after the position: how to reach the web page. A clip name.
    #[serde(default = "default_web_clip")]
    pub web_clip: String,
}

fn default_web_clip() -> String {
    "web_info".to_owned()
}

fn default_handle_secs() -> u32 {
    300
}

fn default_announce_every_secs() -> u64 {
    30
}

impl QueueConfig {
    /// Another site's queue, reached by REFER to its `uri`.
    pub fn is_remote(&self) -> bool {
        self.uri.is_some()
    }
}

impl Config {
    /// The embedded default, unmodified.
    pub fn embedded() -> Self {
        Self::from_toml(DEFAULT_TOML).expect("the embedded default configuration is valid")
    }

    /// `text` merged over the embedded default (see the module's doc), checked.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let mut merged: toml::Table =
            toml::from_str(DEFAULT_TOML).expect("the embedded default is valid TOML");
        merge(&mut merged, toml::from_str(text)?);
        let config: Config = toml::Value::Table(merged).try_into()?;
        config.validate()?;
        Ok(config)
    }

    /// The file (or the embedded default) with the command-line overrides applied.
    pub fn load(cli: &Cli) -> Result<Self, ConfigError> {
        let mut config = match &cli.config {
            Some(path) => Self::from_toml(&read(path)?)?,
            None => Self::embedded(),
        };
        if let Some(sip) = cli.sip {
            config.sip.listen = sip;
        }
        if let Some(http) = cli.http {
            config.http.listen = http;
        }
        if let Some(dir) = &cli.data {
            config.data.dir = dir.clone();
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.calls.min_se_secs == 0 || self.calls.session_expires_secs < self.calls.min_se_secs {
            return invalid(
                "[calls] min_se_secs must be at least 1 and session_expires_secs at least min_se_secs"
                    .into(),
            );
        }
        if crate::web::zone::Zone::centre(&self.http.time_zone).is_none() {
            return invalid(format!(
                "http.time_zone {:?} is not a time zone this system knows: use an IANA name \
                 such as \"Europe/London\" or \"UTC\" (see /usr/share/zoneinfo)",
                self.http.time_zone
            ));
        }
        if self.queues.iter().all(QueueConfig::is_remote) {
            return invalid(
                "at least one [[queue]] without a uri (a local queue) is needed".into(),
            );
        }
        let mut ids = HashSet::new();
        let mut numbers = HashSet::new();
        for q in &self.queues {
            if q.id.is_empty() || !ids.insert(q.id.as_str()) {
                return invalid(format!("queue id {:?} is empty or repeated", q.id));
            }
            if let Some(uri) = &q.uri {
                if let Err(e) = check_sip_uri(uri) {
                    return invalid(format!("queue {:?}: uri {uri:?} {e}", q.id));
                }
                if !q.numbers.is_empty() {
                    return invalid(format!(
                        "queue {:?}: numbers are not allowed on a remote queue (one with a uri): calls to another site are moved there, never taken here",
                        q.id
                    ));
                }
                continue;
            }
            if q.numbers.is_empty() {
                return invalid(format!("queue {:?} has no numbers to reach it", q.id));
            }
            for n in &q.numbers {
                if n.is_empty() || !numbers.insert(n.as_str()) {
                    return invalid(format!("service number {n:?} is empty or used twice"));
                }
            }
            if q.announce_every_secs < 5 {
                return invalid(format!(
                    "queue {:?}: announce_every_secs must be at least 5",
                    q.id
                ));
            }
        }
        let m = &self.media;
        if m.rtp_port_min == 0 || m.rtp_port_min >= m.rtp_port_max {
            return invalid("media.rtp_port_min must be below rtp_port_max and not 0".into());
        }
        if m.codecs.is_empty()
            || m.codecs
                .iter()
                .any(|c| !c.eq_ignore_ascii_case("PCMU") && !c.eq_ignore_ascii_case("PCMA"))
        {
            return invalid("media.codecs lists PCMU and/or PCMA".into());
        }
        self.validate_callback()?;
        if self.limits.max_pending_calls == 0 {
            return invalid("limits.max_pending_calls must be at least 1".into());
        }
        if self.limits.im_per_sender_per_minute == 0 || self.limits.im_per_source_per_second == 0 {
            return invalid(
                "limits.im_per_sender_per_minute and limits.im_per_source_per_second must be at least 1"
                    .into(),
            );
        }
        if self.limits.max_calls == 0 {
            return invalid("limits.max_calls must be at least 1".into());
        }
        self.validate_agents()?;
        self.validate_supervisors()?;
        self.validate_email()?;
        let log = &self.log.queue_log;
        if !log.is_empty()
            && (log == "."
                || log == ".."
                || log.contains(['/', '\\'])
                || log.chars().any(char::is_control))
        {
            return invalid(format!(
                "log.queue_log {log:?} must be a plain file name (it is created in the data directory) or \"\" for none"
            ));
        }
        Ok(())
    }

    fn validate_callback(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let cb = &self.callback;
        if cb.min_digits == 0 || cb.min_digits > cb.max_digits || cb.max_digits > 15 {
            return invalid("callback: 1 <= min_digits <= max_digits <= 15".into());
        }
        if !cb.trunk.is_empty()
            && let Err(e) = check_sip_uri(&cb.trunk)
        {
            return invalid(format!("callback.trunk {:?} {e}", cb.trunk));
        }
        if !(1..=10).contains(&cb.attempts) {
            return invalid("callback.attempts must be 1 to 10".into());
        }
        if !(10..=86_400).contains(&cb.retry_secs) {
            return invalid("callback.retry_secs must be 10 to 86400".into());
        }
        if !(5..=300).contains(&cb.ring_secs) {
            return invalid("callback.ring_secs must be 5 to 300".into());
        }
        if cb.caller_id.len() > 32
            || !cb
                .caller_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-_.".contains(&b))
        {
            return invalid(format!(
                "callback.caller_id {:?} must be up to 32 letters, digits or + - _ . (it is the From user part)",
                cb.caller_id
            ));
        }
        Ok(())
    }

    fn validate_agents(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let s = &self.agent_settings;
        if !(5..=300).contains(&s.ring_secs) {
            return invalid("agents.ring_secs must be 5 to 300".into());
        }
        if s.wrap_up_secs > 3600 {
            return invalid("agents.wrap_up_secs must be at most 3600".into());
        }
        if s.realm.is_empty()
            || s.realm.len() > 64
            || !s
                .realm
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        {
            return invalid(format!(
                "agents.realm {:?} must be 1 to 64 visible characters without quotes or backslashes",
                s.realm
            ));
        }
        if s.digest_algorithms.is_empty()
            || s.digest_algorithms.len() > 2
            || !s
                .digest_algorithms
                .iter()
                .all(|a| a == "SHA-256" || a == "MD5")
        {
            return invalid(format!(
                "agents.digest_algorithms {:?} must list \"SHA-256\" and/or \"MD5\"",
                s.digest_algorithms
            ));
        }
        let mut ids = HashSet::new();
        for a in &self.agents {
            let valid_id = (1..=32).contains(&a.id.len())
                && a.id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
            if !valid_id {
                return invalid(format!(
                    "agent id {:?} must be 1 to 32 of a-z 0-9 _ . - (it is also the SIP username)",
                    a.id
                ));
            }
            if !ids.insert(a.id.as_str()) {
                return invalid(format!("agent id {:?} is used twice", a.id));
            }
            let who = format!("agent {:?}", a.id);
            if a.name.trim().is_empty() || a.name.chars().count() > 100 {
                return invalid(format!("{who}: name must be 1 to 100 characters"));
            }
            if a.password.chars().count() < 8 {
                return invalid(format!("{who}: password must be at least 8 characters"));
            }
            if a.password.len() > 128 || a.password.chars().any(char::is_control) {
                return invalid(format!(
                    "{who}: password must be at most 128 bytes without control characters"
                ));
            }
            if let Some(sip) = &a.sip_password {
                if sip.chars().count() < 8 || sip.len() > 128 || sip.chars().any(char::is_control) {
                    return invalid(format!(
                        "{who}: sip_password must be 8 to 128 bytes without control characters"
                    ));
                }
                if sip == &a.password {
                    return invalid(format!(
                        "{who}: sip_password is the console password; leave it out to use that one, or choose another"
                    ));
                }
            }
            if a.skills.is_empty() {
                return invalid(format!(
                    "{who} has no skills: give at least one queue id with a level, e.g. skills = {{ support = 5 }}"
                ));
            }
            for (queue, level) in &a.skills {
                match self.queues.iter().find(|q| &q.id == queue) {
                    None => {
                        return invalid(format!("{who}: skill for unknown queue {queue:?}"));
                    }
                    Some(q) if q.is_remote() => {
                        return invalid(format!(
                            "{who}: skill for remote queue {queue:?} (another site's agents take its contacts)"
                        ));
                    }
                    Some(_) => {}
                }
                if !(1..=10).contains(level) {
                    return invalid(format!(
                        "{who}: skill level {level} for {queue:?} must be 1 to 10"
                    ));
                }
            }
            if let Some(uri) = &a.uri
                && let Err(e) = check_sip_uri(uri)
            {
                return invalid(format!("{who}: uri {uri:?} {e}"));
            }
        }
        Ok(())
    }

    fn validate_supervisors(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if !(1..=3600).contains(&self.supervisor_settings.service_level_secs) {
            return invalid("supervisors.service_level_secs must be 1 to 3600".into());
        }
        let mut ids = HashSet::new();
        for s in &self.supervisors {
            let valid_id = (1..=32).contains(&s.id.len())
                && s.id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
            if !valid_id {
                return invalid(format!(
                    "supervisor id {:?} must be 1 to 32 of a-z 0-9 _ . -",
                    s.id
                ));
            }
            if !ids.insert(s.id.as_str()) {
                return invalid(format!("supervisor id {:?} is used twice", s.id));
            }
            let who = format!("supervisor {:?}", s.id);
            if s.name.trim().is_empty() || s.name.chars().count() > 100 {
                return invalid(format!("{who}: name must be 1 to 100 characters"));
            }
            if s.password.chars().count() < 8
                || s.password.len() > 128
                || s.password.chars().any(char::is_control)
            {
                return invalid(format!(
                    "{who}: password must be 8 to 128 bytes without control characters"
                ));
            }
            for queue in &s.queues {
                if !self.queues.iter().any(|q| &q.id == queue) {
                    return invalid(format!("{who}: unknown queue {queue:?}"));
                }
            }
        }
        Ok(())
    }

    fn validate_email(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let e = &self.email;
        if !e.enabled() {
            return Ok(());
        }
        let url = e.smtp.as_str();
        let Some((scheme, rest)) = url.split_once("://") else {
            return invalid(format!(
                "email.smtp {url:?} must be smtp://host[:port], smtp://host:587?tls=required or smtps://host[:port] (or \"\" for no relay)"
            ));
        };
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        if scheme != "smtp" && scheme != "smtps" {
            return invalid(format!(
                "email.smtp {url:?} must start with smtp:// or smtps://"
            ));
        }
        if authority.contains('@') {
            return invalid(format!(
                "email.smtp {url:?} must not carry a user or password: use email.username and email.password"
            ));
        }
        let authority = authority.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return invalid(format!(
                "email.smtp {url:?} must name a host (and optionally a port) and nothing else"
            ));
        }
        let tls = match query {
            "" => scheme == "smtps",
            "tls=required" if scheme == "smtp" => true,
            "tls=opportunistic" if scheme == "smtp" => false,
            _ => {
                return invalid(format!(
                    "email.smtp {url:?}: the only query allowed is ?tls=required or ?tls=opportunistic on smtp://"
                ));
            }
        };
        if let Err(err) = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url) {
            return invalid(format!("email.smtp {url:?}: {err}"));
        }
        for (field, value) in [("from", &e.from), ("to", &e.to)] {
            if value.trim().is_empty() {
                return invalid(format!(
                    "email.{field} is needed when email.smtp is set (an address such as centre@example.com)"
                ));
            }
            if let Err(err) = value.parse::<lettre::message::Mailbox>() {
                return invalid(format!(
                    "email.{field} {value:?} is not an email address ({err}): use addr@example.com or Name <addr@example.com>"
                ));
            }
        }
        if e.username.is_empty() != e.password.is_empty() {
            return invalid(
                "email.username and email.password go together: set both or neither".into(),
            );
        }
        if !e.username.is_empty() && !tls {
            return invalid(format!(
                "email.username: SMTP AUTH needs TLS so the password is not sent in clear; use smtps:// or ?tls=required in email.smtp (now {url:?})"
            ));
        }
        if e.username
            .chars()
            .chain(e.password.chars())
            .any(char::is_control)
        {
            return invalid(
                "email.username and email.password must not contain control characters".into(),
            );
        }
        Ok(())
    }

    /// The base URL of the caller pages.
    pub fn public_url(&self) -> String {
        if !self.http.public_url.is_empty() {
            return self.http.public_url.trim_end_matches('/').to_owned();
        }
        let addr = self.http.listen;
        let ip = if addr.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else if addr.is_ipv6() {
            format!("[{}]", addr.ip())
        } else {
            addr.ip().to_string()
        };
        format!("http://{ip}:{}", addr.port())
    }

    /// Ids of the agents whose password is one the embedded default publishes (the demo
    /// agents, or anyone given a demo password): whoever read holdline.toml can log in as
    /// them and register their phone.
    pub fn demo_agents(&self) -> Vec<&str> {
        let published = published_passwords("agent");
        self.agents
            .iter()
            .filter(|a| published.contains(&a.password))
            .map(|a| a.id.as_str())
            .collect()
    }

    /// Ids of the supervisors whose password is one the embedded default publishes.
    pub fn demo_supervisors(&self) -> Vec<&str> {
        let published = published_passwords("supervisor");
        self.supervisors
            .iter()
            .filter(|s| published.contains(&s.password))
            .map(|s| s.id.as_str())
            .collect()
    }

    pub fn queue_for_number(&self, user: &str) -> Option<&QueueConfig> {
        self.queues
            .iter()
            .find(|q| q.numbers.iter().any(|n| n == user))
    }
}

/// The passwords of the `[[list]]` entries in the embedded default (published to anyone
/// who read holdline.toml).
fn published_passwords(list: &str) -> Vec<String> {
    toml::from_str::<toml::Table>(DEFAULT_TOML)
        .ok()
        .and_then(|t| t.get(list).and_then(|a| a.as_array()).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|a| {
            a.get("password")
                .and_then(|p| p.as_str())
                .map(str::to_owned)
        })
        .collect()
}

/// Checks a configured SIP URI: `sip:` or `sips:`, an optional `user@`, a host (name,
/// IPv4 or `[IPv6]`), an optional port and `;parameters`. The error completes the
/// sentence "uri \"...\" ...".
pub fn check_sip_uri(uri: &str) -> Result<(), String> {
    if uri
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b"<>\"".contains(&b))
    {
        return Err("must not contain spaces, control characters, quotes or angle brackets".into());
    }
    let lower = uri.to_ascii_lowercase();
    let rest = if lower.starts_with("sip:") {
        &uri[4..]
    } else if lower.starts_with("sips:") {
        &uri[5..]
    } else {
        return Err("must start with sip: or sips:".into());
    };
    // Headers (`?`) would let a config smuggle header fields into our requests.
    if rest.contains('?') {
        return Err("must not carry ?headers".into());
    }
    let before_params = rest.split(';').next().unwrap_or("");
    let hostport = match before_params.rsplit_once('@') {
        Some((user, hostport)) if !user.is_empty() => hostport,
        Some(_) => return Err("has an empty user part before @".into()),
        None => before_params,
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or_else(|| "has an IPv6 host without its closing ]".to_owned())?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("has {addr:?}, which is not an IPv6 address"));
        }
        match after {
            "" => (addr, None),
            p if p.starts_with(':') => (addr, Some(&p[1..])),
            _ => return Err("has text after the IPv6 host".into()),
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    let host_ok = hostport.starts_with('[')
        || (host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            }));
    if !host_ok {
        return Err(format!(
            "has {host:?}, which is not a host name or IP address"
        ));
    }
    if let Some(p) = port
        && !matches!(p.parse::<u16>(), Ok(1..))
    {
        return Err(format!("has port {p:?}, which is not 1 to 65535"));
    }
    Ok(())
}

/// `over` into `base`: a table merges key by key, anything else (a value, a list, a list of
/// tables such as `[[queue]]`) replaces what `base` had.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

impl From<toml::de::Error> for ConfigError {
    fn from(e: toml::de::Error) -> Self {
        ConfigError::Syntax(e)
    }
}

impl ConfigError {
    /// What to do about it, in a sentence, for the message `holdline` prints.
    pub fn hint(&self) -> &'static str {
        match self {
            ConfigError::Read { error, .. } if error.kind() == std::io::ErrorKind::NotFound => {
                "check the path given to --config (without --config the embedded default runs)"
            }
            ConfigError::Read { .. } => "check that the file is readable by this user",
            ConfigError::Syntax(_) => {
                "a file holds only the settings it changes; holdline.toml in the source lists \
                 every setting with its default"
            }
            ConfigError::Invalid(_) => "holdline.toml in the source says what each setting accepts",
        }
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_owned(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_has_support_and_sales() {
        let c = Config::embedded();
        assert_eq!(c.sip.listen.port(), 5060);
        assert_eq!(c.http.listen.port(), 8080);
        assert_eq!(c.data.dir, PathBuf::from("./holdline-data"));
        assert_eq!(c.queue_for_number("support").unwrap().id, "support");
        assert_eq!(c.queue_for_number("sales").unwrap().id, "sales");
        assert!(c.queue_for_number("nobody").is_none());
    }

    #[test]
    fn cli_overrides_fields() {
        let cli = Cli {
            sip: Some("127.0.0.1:5999".parse().unwrap()),
            http: Some("127.0.0.1:8999".parse().unwrap()),
            data: Some("/tmp/x".into()),
            ..Cli::default()
        };
        let c = Config::load(&cli).unwrap();
        assert_eq!(c.sip.listen.port(), 5999);
        assert_eq!(c.public_url(), "http://127.0.0.1:8999");
        assert_eq!(c.data.dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn rejects_duplicate_numbers_and_unknown_keys() {
        let dup = DEFAULT_TOML.replace("numbers = [\"sales\"", "numbers = [\"support\"");
        assert!(matches!(
            Config::from_toml(&dup),
            Err(ConfigError::Invalid(_))
        ));
        let unknown = format!("{DEFAULT_TOML}\n[bogus]\nx = 1\n");
        assert!(matches!(
            Config::from_toml(&unknown),
            Err(ConfigError::Syntax(_))
        ));
    }

    /// The message of a configuration the validation refuses.
    fn refused(text: &str) -> String {
        match Config::from_toml(text) {
            Err(ConfigError::Invalid(m)) => m,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    /// The default with its demo agents replaced by `agents` (TOML for `[[agent]]`s).
    fn with_agents(agents: &str) -> String {
        let base = DEFAULT_TOML.split("[[agent]]").next().unwrap();
        format!("{base}\n{agents}")
    }

    const ADA: &str = "[[agent]]\nid = \"ada\"\nname = \"Ada\"\npassword = \"12345678\"\nskills = { support = 5 }\n";

    #[test]
    fn a_sip_password_is_checked_like_the_console_password_and_differs_from_it() {
        let with = |sip: &str| {
            with_agents(&ADA.replace("skills", &format!("sip_password = \"{sip}\"\nskills")))
        };
        let ok = Config::from_toml(&with("phone-1234")).expect("valid");
        assert_eq!(ok.agents[0].sip_password.as_deref(), Some("phone-1234"));
        assert!(!format!("{:?}", ok.agents[0]).contains("phone-1234"));
        assert!(refused(&with("short")).contains("sip_password must be 8 to 128 bytes"));
        assert!(refused(&with("12345678")).contains("sip_password is the console password"));
    }

    #[test]
    fn embedded_default_has_demo_agents_and_new_sections() {
        let c = Config::embedded();
        let ids: Vec<_> = c.agents.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["ada", "grace"]);
        let ada = &c.agents[0];
        assert_eq!(ada.name, "Ada Lovelace");
        assert_eq!(ada.skills.get("support"), Some(&5));
        assert_eq!(ada.skills.get("sales"), Some(&3));
        assert!(ada.uri.is_none(), "demo agents are reached by REGISTER");
        assert!(
            !format!("{ada:?}").contains(&ada.password),
            "Debug hides passwords"
        );
        assert_eq!(c.agent_settings.wrap_up_secs, 30);
        assert_eq!(c.agent_settings.ring_secs, 20);
        assert_eq!(c.agent_settings.realm, "holdline");
        // baresip 1.0 and SIPp 3.6 register only when MD5 is the one challenge offered.
        assert_eq!(c.agent_settings.digest_algorithms, ["MD5"]);
        assert_eq!(c.callback.attempts, 3);
        assert_eq!(c.callback.retry_secs, 300);
        assert_eq!(c.callback.ring_secs, 30);
        assert!(!c.callback.dials());
        assert_eq!(c.callback.caller_id(), "holdline");
        assert_eq!(c.log.queue_log, "queue_log");
        assert!(c.queues.iter().all(|q| !q.is_remote()));
    }

    #[test]
    fn a_file_with_only_sip_is_merged_over_the_default() {
        let c = Config::from_toml("[sip]\nlisten = \"127.0.0.1:5070\"\n").unwrap();
        let d = Config::embedded();
        assert_eq!(c.sip.listen, "127.0.0.1:5070".parse().unwrap());
        // The rest of [sip] and every other section are the default's.
        assert_eq!(c.sip.udp_recv_buffer_bytes, d.sip.udp_recv_buffer_bytes);
        assert_eq!(c.http.listen, d.http.listen);
        assert_eq!(c.data.dir, d.data.dir);
        assert_eq!(c.media.codecs, d.media.codecs);
        let ids = |c: &Config| c.queues.iter().map(|q| q.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&c), ["support", "sales"]);
        assert_eq!(c.agents.len(), 2);
        // A list replaces the default's whole: one queue, no agents.
        let c = Config::from_toml(
            "agent = []\n[media]\ncodecs = [\"PCMA\"]\n[[queue]]\nid = \"help\"\nname = \"Help\"\nskillset = \"Help\"\nnumbers = [\"help\"]\n",
        )
        .unwrap();
        assert_eq!(ids(&c), ["help"]);
        assert!(c.agents.is_empty() && c.demo_agents().is_empty());
        assert_eq!(c.media.codecs, ["PCMA"]);
        assert_eq!(c.media.rtp_port_min, d.media.rtp_port_min);
        // A wrong key still fails, naming where.
        let e = Config::from_toml("[sip]\nlisten = 5\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sip.listen"), "{e}");
        let e = Config::from_toml("[sip]\nlistn = \"1.2.3.4:5\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `listn`"), "{e}");
    }

    #[test]
    fn demo_agents_are_the_ones_with_a_published_password() {
        assert_eq!(Config::embedded().demo_agents(), ["ada", "grace"]);
        let c = Config::from_toml(&with_agents(ADA)).unwrap();
        assert!(c.demo_agents().is_empty());
        let reused = ADA.replace("12345678", "demo-grace-change-me");
        let c = Config::from_toml(&with_agents(&reused)).unwrap();
        assert_eq!(c.demo_agents(), ["ada"]);
    }

    #[test]
    fn older_files_without_the_new_sections_still_load() {
        let old: String = DEFAULT_TOML
            .split("[[agent]]")
            .next()
            .unwrap()
            .lines()
            .filter(|l| {
                ![
                    "trunk",
                    "attempts",
                    "retry_secs",
                    "ring_secs",
                    "caller_id",
                    "queue_log",
                    "wrap_up_secs",
                    "realm",
                    "digest_algorithms",
                    "[log]",
                    "[agents]",
                ]
                .iter()
                .any(|k| l.starts_with(k))
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = Config::from_toml(&old).unwrap();
        // What a file leaves out is the default's, the demo agents too (the start-up
        // warns loudly about them).
        assert_eq!(c.demo_agents(), ["ada", "grace"]);
        assert_eq!(c.agent_settings.ring_secs, 20);
        assert_eq!(c.callback.attempts, 3);
        assert_eq!(c.log.queue_log, "queue_log");
    }

    #[test]
    fn a_remote_queue_and_agents_with_uris_load() {
        let text = with_agents(&format!(
            "[[queue]]\nid = \"paris\"\nname = \"Paris office\"\nskillset = \"Support — French\"\nuri = \"sip:support@paris.example.com:5060\"\n\n{ADA}uri = \"sip:ada@192.0.2.10:5060\"\n\n[[agent]]\nid = \"b.o-b_2\"\nname = \"Bob\"\npassword = \"abcdefgh\"\nskills = {{ sales = 10 }}\nuri = \"sips:[2001:db8::1]:5061;transport=tcp\"\n"
        ));
        let c = Config::from_toml(&text).unwrap();
        let paris = c.queues.iter().find(|q| q.id == "paris").unwrap();
        assert!(paris.is_remote());
        assert!(paris.numbers.is_empty());
        assert_eq!(c.agents[0].uri.as_deref(), Some("sip:ada@192.0.2.10:5060"));
        assert_eq!(c.agents.len(), 2);
    }

    #[test]
    fn agent_mistakes_are_refused_naming_the_field() {
        let cases: &[(&str, &str)] = &[
            (
                &ADA.replace("support = 5", "billing = 5"),
                "agent \"ada\": skill for unknown queue \"billing\"",
            ),
            (
                &ADA.replace("support = 5", "support = 11"),
                "skill level 11",
            ),
            (&ADA.replace("support = 5", "support = 0"), "skill level 0"),
            (
                &ADA.replace("skills = { support = 5 }", "skills = {}"),
                "agent \"ada\" has no skills",
            ),
            (
                &ADA.replace("12345678", "1234567"),
                "agent \"ada\": password must be at least 8",
            ),
            (
                &ADA.replace("id = \"ada\"", "id = \"Ada\""),
                "agent id \"Ada\"",
            ),
            (&ADA.replace("id = \"ada\"", "id = \"\""), "agent id \"\""),
            (
                &ADA.replace("id = \"ada\"", "id = \"a@b\""),
                "agent id \"a@b\"",
            ),
            (
                &ADA.replace("id = \"ada\"", &format!("id = \"{}\"", "a".repeat(33))),
                "must be 1 to 32",
            ),
            (
                &ADA.replace("name = \"Ada\"", "name = \" \""),
                "name must be",
            ),
            (&format!("{ADA}\n{ADA}"), "agent id \"ada\" is used twice"),
            (
                &format!("{ADA}uri = \"http://x\"\n"),
                "uri \"http://x\" must start with sip:",
            ),
            (&format!("{ADA}uri = \"sip:ada@\"\n"), "has no host"),
            (&format!("{ADA}uri = \"sip:\"\n"), "has no host"),
            (&format!("{ADA}uri = \"sip:ada@host:0\"\n"), "port \"0\""),
            (
                &format!("{ADA}uri = \"sip:ada@host:99999\"\n"),
                "port \"99999\"",
            ),
            (
                &format!("{ADA}uri = \"sip:ada@ho st\"\n"),
                "must not contain spaces",
            ),
            (
                &format!("{ADA}uri = \"sip:ada@host?Subject=x\"\n"),
                "?headers",
            ),
            (&format!("{ADA}uri = \"sip:ada@[::zz]\"\n"), "not an IPv6"),
            (
                &format!("{ADA}uri = \"sip:ada@-bad-.com\"\n"),
                "not a host name",
            ),
        ];
        for (agents, want) in cases {
            let m = refused(&with_agents(agents));
            assert!(m.contains(want), "{agents}: {m:?} does not say {want:?}");
        }
        let unknown_key = with_agents(&format!("{ADA}phone = \"x\"\n"));
        assert!(matches!(
            Config::from_toml(&unknown_key),
            Err(ConfigError::Syntax(_))
        ));
    }

    #[test]
    fn remote_queue_mistakes_are_refused() {
        let paris = "[[queue]]\nid = \"paris\"\nname = \"Paris\"\nskillset = \"FR\"\nuri = \"sip:support@paris.example.com\"\n";
        let m = refused(&with_agents(
            &paris.replace("uri =", "numbers = [\"300\"]\nuri ="),
        ));
        assert!(
            m.contains("numbers are not allowed on a remote queue"),
            "{m}"
        );
        let m = refused(&with_agents(&paris.replace("sip:support@", "tel:")));
        assert!(m.contains("queue \"paris\": uri"), "{m}");
        let skilled = format!("{paris}\n{}", ADA.replace("support = 5", "paris = 5"));
        let m = refused(&with_agents(&skilled));
        assert!(m.contains("skill for remote queue \"paris\""), "{m}");
        // Only remote queues: nothing could ever be answered here.
        let base = DEFAULT_TOML.split("[[queue]]").next().unwrap();
        let m = refused(&format!("{base}\n{paris}"));
        assert!(m.contains("local queue"), "{m}");
    }

    #[test]
    fn callback_log_and_agent_settings_are_checked() {
        let cases = [
            (
                "trunk = \"\"",
                "trunk = \"127.0.0.1:5070\"",
                "callback.trunk",
            ),
            ("attempts = 3", "attempts = 0", "callback.attempts"),
            ("retry_secs = 300", "retry_secs = 1", "callback.retry_secs"),
            ("ring_secs = 30", "ring_secs = 1", "callback.ring_secs"),
            (
                "caller_id = \"\"",
                "caller_id = \"a b\"",
                "callback.caller_id",
            ),
            (
                "caller_id = \"\"",
                "caller_id = \"x\\r\\nVia: y\"",
                "callback.caller_id",
            ),
            (
                "queue_log = \"queue_log\"",
                "queue_log = \"../x\"",
                "log.queue_log",
            ),
            ("ring_secs = 20", "ring_secs = 0", "agents.ring_secs"),
            ("realm = \"holdline\"", "realm = \"\"", "agents.realm"),
            ("realm = \"holdline\"", "realm = \"a\\\"b\"", "agents.realm"),
        ];
        for (from, to, want) in cases {
            let text = DEFAULT_TOML.replacen(from, to, 1);
            assert_ne!(text, DEFAULT_TOML, "{from} not in the default");
            let m = refused(&text);
            assert!(m.contains(want), "{to}: {m:?} does not name {want}");
        }
        let dialling = DEFAULT_TOML.replacen(
            "trunk = \"\"",
            "trunk = \"sip:127.0.0.1:5070;transport=tcp\"",
            1,
        );
        assert!(Config::from_toml(&dialling).unwrap().callback.dials());
        let off = DEFAULT_TOML.replacen("queue_log = \"queue_log\"", "queue_log = \"\"", 1);
        assert_eq!(Config::from_toml(&off).unwrap().log.queue_log, "");
    }

    #[test]
    fn email_section_is_optional_and_off_by_default() {
        let c = Config::embedded();
        assert!(!c.email.enabled());
        assert_eq!(c.email.from, "holdline@localhost");
        // A file from before the section existed still loads, relay off.
        let start = DEFAULT_TOML.find("[email]").unwrap();
        let end = start + DEFAULT_TOML[start..].find("\n[[").unwrap();
        let old = format!("{}{}", &DEFAULT_TOML[..start], &DEFAULT_TOML[end..]);
        assert!(!old.contains("[email]"));
        assert!(!Config::from_toml(&old).unwrap().email.enabled());
    }

    /// The default with its `[email]` section replaced by `email` (TOML keys).
    fn with_email(email: &str) -> String {
        let start = DEFAULT_TOML.find("[email]").unwrap();
        let end = start + DEFAULT_TOML[start..].find("\n[[").unwrap();
        format!(
            "{}[email]\n{email}\n{}",
            &DEFAULT_TOML[..start],
            &DEFAULT_TOML[end..]
        )
    }

    #[test]
    fn email_relay_settings() {
        for ok in [
            "smtp = \"smtp://127.0.0.1:2525\"\nto = \"inbox@example.test\"",
            "smtp = \"smtp://mail.example.test\"\nfrom = \"Holdline <hl@example.test>\"\nto = \"Support <inbox@example.test>\"",
            "smtp = \"smtps://mail.example.test:465\"\nto = \"inbox@example.test\"\nusername = \"hl\"\npassword = \"secret\"",
            "smtp = \"smtp://mail.example.test:587?tls=required\"\nto = \"inbox@example.test\"\nusername = \"hl\"\npassword = \"secret\"",
            "smtp = \"smtp://mail.example.test:587?tls=opportunistic\"\nto = \"inbox@example.test\"",
        ] {
            let c = Config::from_toml(&with_email(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert!(c.email.enabled(), "{ok}");
            assert!(
                !format!("{:?}", c.email).contains("secret"),
                "Debug hides the password"
            );
        }
        for (bad, want) in [
            (
                "smtp = \"mail.example.test\"\nto = \"i@example.test\"",
                "email.smtp",
            ),
            (
                "smtp = \"http://mail.example.test\"\nto = \"i@example.test\"",
                "email.smtp",
            ),
            ("smtp = \"smtp://\"\nto = \"i@example.test\"", "email.smtp"),
            (
                "smtp = \"smtp://u:p@mail.example.test\"\nto = \"i@example.test\"",
                "email.username",
            ),
            (
                "smtp = \"smtp://mail.example.test?tls=maybe\"\nto = \"i@example.test\"",
                "email.smtp",
            ),
            (
                "smtp = \"smtp://mail.example.test/x/y\"\nto = \"i@example.test\"",
                "email.smtp",
            ),
            ("smtp = \"smtp://127.0.0.1:2525\"", "email.to"),
            (
                "smtp = \"smtp://127.0.0.1:2525\"\nto = \"not an address\"",
                "email.to",
            ),
            (
                "smtp = \"smtp://127.0.0.1:2525\"\nto = \"i@example.test\"\nfrom = \"\"",
                "email.from",
            ),
            (
                "smtp = \"smtp://127.0.0.1:2525\"\nto = \"i@example.test\\r\\nBcc: x@example.test\"",
                "email.to",
            ),
            (
                "smtp = \"smtps://mail.example.test\"\nto = \"i@example.test\"\nusername = \"hl\"",
                "email.password",
            ),
            (
                "smtp = \"smtp://mail.example.test\"\nto = \"i@example.test\"\nusername = \"hl\"\npassword = \"secret\"",
                "email.username",
            ),
        ] {
            let m = refused(&with_email(bad));
            assert!(m.contains(want), "{bad}: {m:?} does not name {want}");
        }
        let unknown = with_email("smtp = \"\"\nbogus = 1");
        assert!(matches!(
            Config::from_toml(&unknown),
            Err(ConfigError::Syntax(_))
        ));
    }

    #[test]
    fn sip_uris() {
        for ok in [
            "sip:host",
            "sip:127.0.0.1",
            "sip:user@host.example.com:5060",
            "SIP:u@h",
            "sips:[::1]:5061",
            "sip:support@10.0.0.1;transport=tcp",
        ] {
            assert_eq!(check_sip_uri(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "sip",
            "sip:",
            "sip:@h",
            "mailto:a@b",
            "sip:h:",
            "sip:[::1",
            "sip:a@b c",
            "sip:<a>",
        ] {
            assert!(check_sip_uri(bad).is_err(), "{bad} accepted");
        }
    }

    /// The default with its demo supervisor replaced by `supervisors` (`[[supervisor]]`s).
    fn with_supervisors(supervisors: &str) -> String {
        let base = DEFAULT_TOML.split("[[supervisor]]").next().unwrap();
        format!("{base}\n{supervisors}")
    }

    #[test]
    fn supervisors_are_checked_and_their_passwords_never_logged() {
        let sue = "[[supervisor]]\nid = \"sue\"\nname = \"Sue\"\npassword = \"sue-pass-1\"\nqueues = [\"sales\"]\n";
        let c = Config::from_toml(&with_supervisors(sue)).expect("valid");
        assert_eq!(c.supervisors[0].queues, ["sales"]);
        assert_eq!(c.supervisor_settings.service_level_secs, 20);
        assert!(
            !format!("{c:?}").contains("sue-pass-1"),
            "Debug hides passwords"
        );
        assert!(c.demo_supervisors().is_empty());
        assert_eq!(Config::embedded().demo_supervisors(), ["sam"]);
        for (change, error) in [
            (
                sue.replace("\"sue\"\nname", "\"Sue!\"\nname"),
                "must be 1 to 32 of a-z",
            ),
            (format!("{sue}{sue}"), "is used twice"),
            (
                sue.replace("sue-pass-1", "short"),
                "password must be 8 to 128 bytes",
            ),
            (
                sue.replace("\"sales\"", "\"nowhere\""),
                "unknown queue \"nowhere\"",
            ),
            (
                sue.replace("\"Sue\"", "\"  \""),
                "name must be 1 to 100 characters",
            ),
        ] {
            let why = refused(&with_supervisors(&change));
            assert!(why.contains(error), "{why}");
        }
        let no_level =
            with_supervisors(sue).replace("service_level_secs = 20", "service_level_secs = 0");
        assert!(refused(&no_level).contains("service_level_secs must be 1 to 3600"));
    }
}
