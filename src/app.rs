//! Composition root: binds the sockets, opens the store, starts every task on one
//! `TaskTracker` under one `CancellationToken`, and drains on shutdown.
//!
//! Shutdown order: stop taking calls (new INVITEs get 503 + Retry-After), let calls in
//! progress end for `limits.drain_secs`, hang up the rest (their contacts stay queued and
//! become "disconnected" on the next start, keeping their place), then stop every task, then
//! the web server (it serves callers' pages and commands until then; live pages reconnect to
//! the next start), then the centre thread. `anyhow` lives here and in `main` only.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::centre::{self, AgentId, AgentSpec, CentreConfig, QueueId, QueueSpec, Reach};
use crate::config::Config;
use crate::media::announcer::Announcer;
use crate::media::ports::RtpPorts;
use crate::media::prompts::{Law, PromptSet};
use crate::sip::{
    endpoint,
    rate::Rate,
    transport,
    ua::{PagerConfig, RegistrarConfig, UaConfig},
};
use crate::store::SqliteStore;
use crate::{calls, im, mail, web};

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The centre's view of the configuration: queues, agents and their timers.
pub fn centre_config(config: &Config) -> CentreConfig {
    let agents = &config.agent_settings;
    CentreConfig {
        queues: config
            .queues
            .iter()
            .map(|q| QueueSpec {
                id: QueueId(q.id.clone()),
                name: q.name.clone(),
                skillset: q.skillset.clone(),
                default_handle_secs: q.default_handle_secs,
                // Another site's queue: moving there REFERs the call to this configured URI.
                remote: q.uri.clone(),
            })
            .collect(),
        keep_place_secs: config.data.keep_place_secs,
        id_retention_secs: config.data.id_retention_secs,
        max_live_contacts: config.limits.max_contacts,
        callback: centre::CallbackRules {
            allowed_prefixes: config.callback.allowed_prefixes.clone(),
            blocked_prefixes: config.callback.blocked_prefixes.clone(),
            min_digits: config.callback.min_digits,
            max_digits: config.callback.max_digits,
        },
        agents: config
            .agents
            .iter()
            .map(|a| AgentSpec {
                id: AgentId(a.id.clone()),
                name: a.name.clone(),
                skills: a
                    .skills
                    .iter()
                    .map(|(q, level)| (QueueId(q.clone()), *level))
                    .collect(),
                reach: match &a.uri {
                    Some(uri) => Reach::Uri(uri.clone()),
                    None => Reach::Registered,
                },
            })
            .collect(),
        wrap_up_secs: agents.wrap_up_secs,
        // A backstop only: the call layer times offers itself (agent ring, then the
        // customer's ring for call-backs); this must never fire before those do. A new
        // caller offered at once first hears their number (about 25 s), hence the margin.
        offer_timeout_secs: agents
            .ring_secs
            .saturating_add(config.callback.ring_secs)
            .saturating_add(60),
        callback_attempts: config.callback.attempts,
        callback_retry_secs: config.callback.retry_secs,
        dial_callbacks: config.callback.dials(),
        queue_log: (!config.log.queue_log.is_empty())
            .then(|| config.data.dir.join(&config.log.queue_log)),
        exit_keys: config
            .queues
            .iter()
            .filter_map(|q| {
                let digits = q
                    .numbers
                    .iter()
                    .find(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))?;
                Some((QueueId(q.id.clone()), digits.clone()))
            })
            .collect(),
    }
}

fn prompts(config: &Config, law: Law) -> anyhow::Result<Arc<PromptSet>> {
    let set = if config.media.prompt_dir.is_empty() {
        PromptSet::embedded(law)
    } else {
        PromptSet::load_dir(std::path::Path::new(&config.media.prompt_dir), law)
            .with_context(|| format!("loading prompts from {}", config.media.prompt_dir))?
    };
    Ok(Arc::new(set))
}

/// Raises the open-file limit to the hard limit: every call holds an RTP socket and every
/// SIP/TCP or HTTP client a connection, and the usual soft limit of 1,024 made new calls
/// fail with 503 behind 1,100 idle TCP connections. Says so when it cannot.
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::info!(from = soft, to = hard, "raised the open-file limit"),
            Err(e) => tracing::warn!(soft, hard, error = %e, "cannot raise the open-file limit"),
        },
        Ok((soft, _)) if soft < 16_384 => tracing::warn!(
            limit = soft,
            "the open-file limit is low and cannot be raised (ulimit -Hn): \
             calls and connections beyond it will fail"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the open-file limit"),
    }
}

/// Why a listening socket could not be had, with what to do about it.
fn bind_error(
    what: &str,
    addr: std::net::SocketAddr,
    flag: &str,
    e: &std::io::Error,
) -> anyhow::Error {
    let port = addr.port();
    match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
            "{what} port {port} on {ip} is already in use: another holdline or another server \
             is listening there (`ss -lntup | grep :{port}` shows which); stop it, or choose \
             another port with {flag} ADDR:PORT",
            ip = addr.ip()
        ),
        std::io::ErrorKind::PermissionDenied if port < 1024 => anyhow::anyhow!(
            "{what} port {port} needs privileges (ports below 1024): run with \
             CAP_NET_BIND_SERVICE, or choose a port from 1024 up with {flag} ADDR:PORT"
        ),
        std::io::ErrorKind::AddrNotAvailable => anyhow::anyhow!(
            "{what} address {ip} is not one of this machine's: choose one it has (0.0.0.0 = \
             all) with {flag} ADDR:PORT",
            ip = addr.ip()
        ),
        _ => anyhow::anyhow!("cannot listen for {what} on {addr}: {e}"),
    }
}

/// Tells the operator where the pages are, and warns loudly while agents with the
/// passwords holdline.toml publishes can log in.
fn announce_start(config: &Config, http_local: std::net::SocketAddr) {
    let base = if !config.http.public_url.is_empty() {
        config.public_url()
    } else if http_local.ip().is_unspecified() {
        format!("http://localhost:{}", http_local.port())
    } else if http_local.is_ipv6() {
        format!("http://[{}]:{}", http_local.ip(), http_local.port())
    } else {
        format!("http://{http_local}")
    };
    tracing::info!(
        "callers' page: {base}/   agent console: {base}/agent   wallboard: {base}/supervisor"
    );
    if config.http.public_url.is_empty() && http_local.ip().is_unspecified() {
        tracing::info!(
            "from other machines use this machine's address, port {}; set http.public_url \
             to the address callers' browsers use (it goes into the link sent to softphones)",
            http_local.port()
        );
    }
    let demo = config.demo_agents();
    if !demo.is_empty() {
        tracing::warn!(
            "DEMO AGENTS ACTIVE: {} can log in to {base}/agent and register phones with the \
             passwords published in holdline.toml. Change their passwords or remove them \
             (agent = [] in your configuration file) before real use.",
            demo.join(", ")
        );
    }
    let demo = config.demo_supervisors();
    if !demo.is_empty() {
        tracing::warn!(
            "DEMO SUPERVISORS ACTIVE: {} can log in to {base}/supervisor with the passwords \
             published in holdline.toml. Change their passwords or remove them \
             (supervisor = [] in your configuration file) before real use.",
            demo.join(", ")
        );
    }
}

/// Runs the gateway until `shutdown` resolves, then drains and returns.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    raise_open_file_limit();
    let config = Arc::new(config);
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();

    if config.data.dir.exists() && !config.data.dir.is_dir() {
        anyhow::bail!(
            "the data directory {} is a file, not a directory: give --data (or data.dir) a \
             directory's path (it is created when missing)",
            config.data.dir.display()
        );
    }
    // Before the store is opened: a second gateway must not touch the first one's calls.
    let _dir_lock = crate::store::dir_lock::DirLock::acquire(&config.data.dir)?;
    let store = SqliteStore::open_with(&config.data.dir, config.data.synchronous)
        .with_context(|| format!("opening the store in {}", config.data.dir.display()))?;
    let centre_token = CancellationToken::new();
    let (centre, centre_thread) = centre::spawn(
        centre_config(&config),
        Box::new(store),
        centre_token.clone(),
    )
    .context("starting the contact centre")?;

    let sockets = transport::bind(config.sip.listen)
        .await
        .map_err(|e| bind_error("SIP (UDP and TCP)", config.sip.listen, "--sip", &e))?;
    let sip_local = sockets.local;
    match transport::set_udp_recv_buffer(&sockets.udp, config.sip.udp_recv_buffer_bytes) {
        // Linux reports double the size it books for its own overhead.
        Ok(granted) if granted / 2 < config.sip.udp_recv_buffer_bytes => tracing::warn!(
            asked = config.sip.udp_recv_buffer_bytes,
            granted = granted / 2,
            "the SIP UDP receive buffer is smaller than configured (raise net.core.rmem_max): \
             bursts may be dropped"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot size the SIP UDP receive buffer"),
    }
    let http = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|e| bind_error("HTTP", config.http.listen, "--http", &e))?;
    let http_local = http.local_addr()?;

    let announcer = Announcer::spawn(token.clone(), &tracker).context("starting the announcer")?;
    // RTP binds where SIP listens (a wildcard listens on every address, as SIP does).
    let rtp_ip = sip_local.ip();
    let ports = Arc::new(RtpPorts::new(
        rtp_ip,
        config.media.rtp_port_min,
        config.media.rtp_port_max,
    ));
    // A call needs one RTP port, a video call two (the second only while one stays free for
    // every call still to come, `RtpPorts::bind_secondary`).
    let max_calls = u32::try_from(config.limits.max_calls).unwrap_or(u32::MAX);
    if ports.capacity() < max_calls.saturating_mul(2) {
        tracing::warn!(
            rtp_ports = ports.capacity(),
            max_calls,
            "the RTP port range is under two even ports per call: calls beyond it get 503, and \
             video is declined when ports run short (widen media.rtp_port_min..max)"
        );
    }
    let (ua_tx, ua_rx) = mpsc::unbounded_channel();
    let ua_config = UaConfig {
        max_calls: config.limits.max_calls,
        max_pending_calls: config.limits.max_pending_calls,
        retry_after_secs: config.limits.retry_after_secs,
        min_se_secs: config.calls.min_se_secs,
        session_expires_secs: config.calls.session_expires_secs,
        public_host: (!config.sip.public_host.is_empty()).then(|| config.sip.public_host.clone()),
        // Agents without a fixed address reach us by REGISTERing with their SIP password
        // (the console's unless they have their own); with none such, REGISTER stays 405.
        registrar: {
            let users: Vec<(String, String)> = config
                .agents
                .iter()
                .filter(|a| a.uri.is_none())
                .map(|a| {
                    let digest = a.sip_password.as_ref().unwrap_or(&a.password);
                    (a.id.clone(), digest.clone())
                })
                .collect();
            (!users.is_empty()).then(|| RegistrarConfig {
                realm: config.agent_settings.realm.clone(),
                users,
                algorithms: config.agent_settings.digest_algorithms.clone(),
            })
        },
        // Instant messages (RFC 3428) to any queue's service number, as calls.
        pager: PagerConfig {
            services: config
                .queues
                .iter()
                .flat_map(|q| q.numbers.iter().cloned())
                .collect(),
            per_sender: Rate {
                burst: 10.0,
                per_second: f64::from(config.limits.im_per_sender_per_minute) / 60.0,
            },
            per_source: Rate {
                burst: 4.0 * f64::from(config.limits.im_per_source_per_second),
                per_second: f64::from(config.limits.im_per_source_per_second),
            },
            ..PagerConfig::default()
        },
        ..UaConfig::default()
    };
    let sip_token = CancellationToken::new();
    let sip = endpoint::spawn(sockets, ua_config, ua_tx, sip_token.clone(), &tracker);
    let public_url = if !config.http.public_url.is_empty() {
        Some(config.public_url())
    } else if config.http.listen.ip().is_unspecified() {
        None
    } else {
        Some(format!("http://{http_local}"))
    };
    // The caller links' key, kept in the data directory so links outlive a restart.
    let link_key = web::link::LinkKey::load_or_create(&config.data.dir)
        .with_context(|| format!("reading the link key in {}", config.data.dir.display()))?;
    let deps = calls::Deps {
        link_key: link_key.clone(),
        config: config.clone(),
        centre: centre.clone(),
        sip: sip.clone(),
        announcer,
        ports,
        pcmu: prompts(&config, Law::Pcmu)?,
        pcma: prompts(&config, Law::Pcma)?,
        public_url,
        http_port: http_local.port(),
    };
    if config.email.enabled() {
        let relay = mail::Relay::new(&config.email).context("setting up the email relay")?;
        mail::spawn(relay, centre.clone(), token.clone(), &tracker);
        tracing::info!(smtp = %config.email.smtp, "relaying emails and web forms by SMTP");
    }
    // Instant messages (RFC 3428): the IM front-end, fed by the call layer's router.
    let (im_tx, im_rx) = mpsc::unbounded_channel();
    let im_deps = im::Deps {
        config: config.clone(),
        centre: centre.clone(),
        sip: sip.clone(),
        public_url: deps.public_url.clone(),
        http_port: deps.http_port,
        link_key: deps.link_key.clone(),
        max_text_bytes: PagerConfig::default().max_text_bytes,
    };
    tracker.spawn(im::run(im_rx, im_deps, token.clone(), tracker.clone()));
    let calls_token = CancellationToken::new();
    tracker.spawn(calls::run(
        ua_rx,
        im_tx,
        deps,
        calls_token.clone(),
        tracker.clone(),
    ));

    // Where an agent's softphone registers, for the console's set-up help.
    let sip_address = if !config.sip.public_host.is_empty() {
        format!("{}:{}", config.sip.public_host, sip_local.port())
    } else if sip_local.ip().is_unspecified() {
        format!("this server's address, port {}", sip_local.port())
    } else {
        sip_local.to_string()
    };
    // CSRF key: random per start, so tokens from before a restart are refused.
    // Whether an agent's phone can be rung: a fixed address, or the registrar's binding.
    let phones: web::PhoneLookup = {
        let fixed: std::collections::HashSet<String> = config
            .agents
            .iter()
            .filter(|a| a.uri.is_some())
            .map(|a| a.id.clone())
            .collect();
        let sip = sip.clone();
        Arc::new(move |agent: String| {
            let (sip, fixed) = (sip.clone(), fixed.contains(&agent));
            Box::pin(async move {
                if fixed {
                    return web::Phone::Fixed;
                }
                match sip.binding(agent).await {
                    Some(contact) => web::Phone::Registered(contact),
                    None => web::Phone::NotRegistered,
                }
            })
        })
    };
    // The web is the last to stop: callers keep their pages (and their commands) through
    // the drain, and live pages reconnect to the next start when their stream ends.
    let web_token = CancellationToken::new();
    let router = web::router(web::WebState {
        link_key,
        phones: Some(phones),
        sip_address,
        // Checked when the configuration was loaded.
        zone: web::zone::Zone::centre(&config.http.time_zone).unwrap_or_else(web::zone::Zone::utc),
        centre: centre.clone(),
        secret: rand::random(),
        limits: web::RateLimits::default(),
        shutdown: web_token.clone(),
        agents: config
            .agents
            .iter()
            .map(|a| web::AgentAccount {
                id: AgentId(a.id.clone()),
                name: a.name.clone(),
                password: a.password.clone(),
            })
            .collect(),
        chat_idle_secs: config.http.chat_idle_secs,
        supervision: web::Supervision {
            accounts: config
                .supervisors
                .iter()
                .map(|s| web::SupervisorAccount {
                    id: s.id.clone(),
                    name: s.name.clone(),
                    password: s.password.clone(),
                    queues: s.queues.clone(),
                })
                .collect(),
            service_level_secs: config.supervisor_settings.service_level_secs,
            data_dir: Some(config.data.dir.clone()),
        },
    });
    let web_stop = web_token.clone();
    let limits = web::conn_limit::ConnLimits {
        max: config.http.max_connections,
        per_ip: config.http.max_connections_per_ip,
        idle: Duration::from_secs(config.http.idle_secs),
    };
    let web_task = tokio::spawn(async move {
        // Connect info gives the rate limit each client's address.
        let app = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
        // `tap_io` only so axum's ConnectInfo<SocketAddr> applies to a listener of ours.
        let listener = axum::serve::ListenerExt::tap_io(
            web::conn_limit::Bounded::new(http, limits),
            |_: &mut web::conn_limit::Guarded| {},
        );
        let serve = axum::serve(listener, app)
            .with_graceful_shutdown(async move { web_stop.cancelled().await });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    tracing::info!(sip = %sip_local, http = %http_local, data = %config.data.dir.display(), "holdline ready");
    announce_start(&config, http_local);

    shutdown.await;
    tracing::info!("shutting down: refusing new calls");
    sip.drain().await;
    let drain = Duration::from_secs(config.limits.drain_secs);
    let deadline = tokio::time::Instant::now() + drain;
    while sip.call_count().await > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Hang up what is left; their contacts stay queued for the next start.
    calls_token.cancel();
    let bye_deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while sip.call_count().await > 0 && tokio::time::Instant::now() < bye_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sip_token.cancel();
    token.cancel();
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(5), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not stop within 5 s");
    }
    // Live pages' streams end with this token; the server then finishes what is in flight.
    web_token.cancel();
    if tokio::time::timeout(Duration::from_secs(2), web_task)
        .await
        .is_err()
    {
        tracing::warn!("the web server did not stop within 2 s");
    }
    centre_token.cancel();
    drop(centre);
    let _ = tokio::task::spawn_blocking(move || centre_thread.join()).await;
    tracing::info!("stopped");
    Ok(())
}
