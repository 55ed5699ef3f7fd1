//! Typed configuration: the command line, the TOML file and the embedded default.
//!
//! `holdline` with no arguments runs on `DEFAULT_TOML` (compiled in), so a fresh checkout
//! needs no file. A `--config FILE` replaces the default wholesale; `--sip`, `--http` and
//! `--data` override single fields of whichever configuration was loaded.

use std::collections::HashSet;
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
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration is not valid TOML for holdline: {0}")]
    Syntax(#[from] toml::de::Error),
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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Base URL of the caller pages as the caller's browser reaches them; the 200 OK's
    /// Call-Info points at `{public_url}/c/{contact number}`. Empty: derived from the listen
    /// address (with 127.0.0.1 in place of a wildcard).
    #[serde(default)]
    pub public_url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub dir: PathBuf,
    /// How long a contact whose live call was lost (crash, restart) keeps its place.
    pub keep_place_secs: u64,
    /// Contact numbers are not handed out again for this long after their contact ended.
    pub id_retention_secs: u64,
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
    /// Contacts waiting in all queues (live or disconnected).
    pub max_contacts: usize,
    /// Seconds sent in Retry-After with 503.
    pub retry_after_secs: u32,
    /// How long to let calls finish on shutdown before ending them with BYE.
    pub drain_secs: u64,
}

/// Which numbers a caller may ask to be called back on (checked by the centre).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackConfig {
    /// A number must start with one of these after normalising; empty allows any.
    pub allowed_prefixes: Vec<String>,
    /// Refused prefixes: premium-rate and other numbers the centre must never dial.
    pub blocked_prefixes: Vec<String>,
    pub min_digits: usize,
    pub max_digits: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub id: String,
    pub name: String,
    pub skillset: String,
    /// SIP user parts (service numbers) that reach this queue.
    pub numbers: Vec<String>,
    /// Average handle time assumed until real handle times are measured.
    pub default_handle_secs: u32,
    /// Music on hold is interrupted by the current position and wait every this many seconds.
    pub announce_every_secs: u64,
    /// Clip played after the position: how to reach the web page. A clip name.
    #[serde(default = "default_web_clip")]
    pub web_clip: String,
}

fn default_web_clip() -> String {
    "web_info".to_owned()
}

impl Config {
    /// The embedded default, unmodified.
    pub fn embedded() -> Self {
        Self::from_toml(DEFAULT_TOML).expect("the embedded default configuration is valid")
    }

    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text)?;
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
        if self.queues.is_empty() {
            return invalid("at least one [[queue]] is needed".into());
        }
        let mut ids = HashSet::new();
        let mut numbers = HashSet::new();
        for q in &self.queues {
            if q.id.is_empty() || !ids.insert(q.id.as_str()) {
                return invalid(format!("queue id {:?} is empty or repeated", q.id));
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
        let cb = &self.callback;
        if cb.min_digits == 0 || cb.min_digits > cb.max_digits || cb.max_digits > 15 {
            return invalid("callback: 1 <= min_digits <= max_digits <= 15".into());
        }
        if self.limits.max_calls == 0 {
            return invalid("limits.max_calls must be at least 1".into());
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

    pub fn queue_for_number(&self, user: &str) -> Option<&QueueConfig> {
        self.queues
            .iter()
            .find(|q| q.numbers.iter().any(|n| n == user))
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
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
}
