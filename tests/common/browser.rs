//! A real browser for the integration tests: Debian's headless Chromium driven through its
//! own `chromedriver` (WebDriver) with `fantoccini`.
//!
//! Each [`Browser`] has its own chromedriver on a free 127.0.0.1 port and its own fresh
//! Chromium profile, so tests run in parallel. The API is blocking (each call runs on the
//! browser's own current-thread tokio runtime) so it mixes freely with the other blocking
//! helpers of the harness. Every call is bounded by a timeout; waiting for a condition polls
//! the DOM with a deadline, never a bare sleep. Chromium and chromedriver are killed on drop.
//!
//! Missing binaries fail loudly: these tests are never skipped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator, wd::TimeoutConfiguration};
use serde_json::{Value, json};

use super::{HOST, free_port, scratch_dir};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Bound on any single WebDriver command (a page load included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on chromedriver answering /status as ready.
const DRIVER_READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Chromium's flags: headless, as root, with no network beyond loopback to reach.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1024",
];

pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Option<Child>,
    /// Scratch directory: the profile, chromedriver's log.
    pub dir: PathBuf,
    pub driver_log: PathBuf,
}

fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: the browser tests need Debian's {package} \
         (./scripts/test installs it; by hand: apt-get install -y chromium chromium-driver)"
    );
}

/// How the browser is set up: the default is a desktop window with JavaScript on, in the
/// machine's time zone.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// A phone's screen (390 × 844 CSS pixels, a phone's user agent).
    pub phone: bool,
    pub javascript: bool,
    /// The browser's time zone (IANA name), through `TZ`.
    pub time_zone: Option<&'static str>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            phone: false,
            javascript: true,
            time_zone: None,
        }
    }
}

impl Browser {
    /// Starts chromedriver on a free port, waits until it is ready, opens a headless
    /// Chromium session with a fresh profile.
    pub fn start() -> Browser {
        Self::start_with(Options::default())
    }

    /// [`Browser::start`] set up as `options` says.
    pub fn start_with(options: Options) -> Browser {
        require(CHROMIUM, "chromium");
        require(CHROMEDRIVER, "chromium-driver");
        let dir = scratch_dir("browser");
        let profile = dir.join("profile");
        std::fs::create_dir_all(&profile).unwrap();
        let driver_log = dir.join("chromedriver.log");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime for the browser");

        // The port is free when picked; if chromedriver loses a race for it, try another.
        let mut last_err = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut driver = Command::new(CHROMEDRIVER);
            if let Some(tz) = options.time_zone {
                // Chromium, started by chromedriver, takes its zone from TZ.
                driver.env("TZ", tz);
            }
            let mut driver = driver
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", driver_log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Its own process group: on drop the whole group (Chromium's processes
                // too) is killed by its id.
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
            match wait_driver_ready(&mut driver, port, DRIVER_READY_TIMEOUT) {
                Ok(()) => {
                    let mut b = Browser {
                        rt,
                        client: None,
                        driver: Some(driver),
                        dir,
                        driver_log,
                    };
                    b.open_session(port, &profile, options);
                    return b;
                }
                Err(e) => {
                    last_err = e;
                    kill_group(&mut driver);
                }
            }
        }
        panic!(
            "chromedriver did not become ready: {last_err}\n--- chromedriver log:\n{}",
            std::fs::read_to_string(&driver_log).unwrap_or_default()
        );
    }

    fn open_session(&mut self, port: u16, profile: &Path, options: Options) {
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        let mut chrome = json!({ "binary": CHROMIUM, "args": args });
        if options.phone {
            // Mouse clicks, not touch: chromedriver's emulated tap never returned on a
            // submit button below the fold with page scripts off.
            chrome["mobileEmulation"] = json!({
                "deviceMetrics": { "width": 390, "height": 844, "pixelRatio": 2, "touch": false },
                "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36"
            });
        }
        if !options.javascript {
            // The page's scripts do not run (WebDriver's own commands still work).
            chrome["prefs"] = json!({ "profile.managed_default_content_settings.javascript": 2 });
        }
        caps.insert("goog:chromeOptions".into(), chrome);
        let url = format!("http://{HOST}:{port}");
        let connect = async {
            let client =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps)
                    .connect(&url)
                    .await?;
            client
                .update_timeouts(TimeoutConfiguration::new(
                    Some(Duration::from_secs(10)),
                    Some(Duration::from_secs(20)),
                    Some(Duration::ZERO),
                ))
                .await?;
            Ok::<_, Box<dyn std::error::Error>>(client)
        };
        let client = match self
            .rt
            .block_on(async { tokio::time::timeout(COMMAND_TIMEOUT, connect).await })
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => panic!(
                "cannot open a Chromium session through chromedriver: {e}\n--- chromedriver log:\n{}",
                self.driver_log_text()
            ),
            Err(_) => panic!(
                "opening a Chromium session took over {COMMAND_TIMEOUT:?}\n--- chromedriver log:\n{}",
                self.driver_log_text()
            ),
        };
        self.client = Some(client);
    }

    pub fn driver_log_text(&self) -> String {
        let text = std::fs::read_to_string(&self.driver_log).unwrap_or_default();
        // The tail is what matters; the log is verbose.
        let start = text.len().saturating_sub(8000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].to_owned()
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("browser session open")
    }

    /// Runs one WebDriver interaction with the standard deadline; panics with context.
    fn run<T, E: std::fmt::Display>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, E>>,
    ) -> T {
        match self
            .rt
            .block_on(async { tokio::time::timeout(COMMAND_TIMEOUT, fut).await })
        {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => panic!("browser: {what}: {e}\n{}", self.where_am_i()),
            Err(_) => panic!(
                "browser: {what}: no answer within {COMMAND_TIMEOUT:?}\n{}",
                self.where_am_i()
            ),
        }
    }

    /// Like `run`, but a failure is returned (for polling).
    fn try_run<T, E: std::fmt::Display>(
        &self,
        fut: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, String> {
        match self
            .rt
            .block_on(async { tokio::time::timeout(COMMAND_TIMEOUT, fut).await })
        {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {COMMAND_TIMEOUT:?}")),
        }
    }

    /// The current URL and the start of the page, for failure messages (never panics).
    fn where_am_i(&self) -> String {
        let Some(c) = self.client.as_ref() else {
            return String::new();
        };
        let probe = async {
            let url = c.current_url().await.map(|u| u.to_string());
            let src = c.source().await;
            (url, src)
        };
        match self
            .rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(5), probe).await })
        {
            Ok((url, src)) => {
                let url = url.unwrap_or_else(|e| format!("(no url: {e})"));
                let mut src = src.unwrap_or_else(|e| format!("(no source: {e})"));
                if src.len() > 4000 {
                    let mut cut = 4000;
                    while !src.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    src.truncate(cut);
                    src.push('…');
                }
                format!("--- at {url}\n{src}")
            }
            Err(_) => "--- (browser did not answer)".into(),
        }
    }

    /// Navigates (waits for the load, bounded).
    pub fn goto(&self, url: &str) {
        self.run(&format!("goto {url}"), self.client().goto(url));
    }

    pub fn current_url(&self) -> String {
        self.run("current url", self.client().current_url())
            .to_string()
    }

    /// The rendered text of the first element matching `css`.
    pub fn text(&self, css: &str) -> String {
        let c = self.client();
        self.run(&format!("text of {css}"), async {
            c.find(Locator::Css(css)).await?.text().await
        })
    }

    /// The id of the element that has the focus (WebDriver's, so without page scripts too).
    pub fn focused_id(&self) -> String {
        let c = self.client();
        self.run("active element", async {
            c.active_element().await?.attr("id").await
        })
        .unwrap_or_default()
    }

    /// (x, y, width, height) of the first element matching `css`, in CSS pixels from the
    /// top of the page.
    pub fn rect(&self, css: &str) -> (f64, f64, f64, f64) {
        let c = self.client();
        self.run(&format!("rect of {css}"), async {
            c.find(Locator::Css(css)).await?.rectangle().await
        })
    }

    /// The page's HTML as the browser has it.
    pub fn source(&self) -> String {
        self.run("page source", self.client().source())
    }

    /// Whether an element matching `css` is on the page and displayed.
    pub fn is_shown(&self, css: &str) -> bool {
        let c = self.client();
        self.try_run(async { c.find(Locator::Css(css)).await?.is_displayed().await })
            .unwrap_or(false)
    }

    /// The `value` property of a form field (what is typed in it now).
    pub fn value(&self, css: &str) -> String {
        let c = self.client();
        self.run(&format!("value of {css}"), async {
            c.find(Locator::Css(css)).await?.prop("value").await
        })
        .unwrap_or_default()
    }

    /// Replaces the content of a text field (or textarea) by typing `value`.
    pub fn fill(&self, css: &str, value: &str) {
        let c = self.client();
        self.run(&format!("fill {css}"), async {
            let e = c.find(Locator::Css(css)).await?;
            e.clear().await?;
            e.send_keys(value).await
        });
    }

    /// Chooses the `<option value=…>` of a `<select>`.
    pub fn select(&self, css: &str, value: &str) {
        let c = self.client();
        self.run(&format!("select {value} in {css}"), async {
            c.find(Locator::Css(css))
                .await?
                .select_by_value(value)
                .await
        });
    }

    /// Clicks an element (a submit button: chromedriver waits for the navigation it starts).
    pub fn click(&self, css: &str) {
        let c = self.client();
        self.run(&format!("click {css}"), async {
            c.find(Locator::Css(css)).await?.click().await
        });
    }

    /// Runs a script in the page and returns its value.
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.run("execute script", self.client().execute(script, args))
    }

    /// Runs an asynchronous script (its last argument is the callback), bounded by the
    /// session's script timeout.
    pub fn execute_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.run(
            "execute async script",
            self.client().execute_async(script, args),
        )
    }

    /// The HTTP status of the response that produced the current document (the navigation
    /// timing entry; after a form POST that is the POST's own response).
    pub fn http_status(&self) -> u16 {
        let v = self.execute(
            "const n = performance.getEntriesByType('navigation')[0]; return n ? n.responseStatus : 0;",
            vec![],
        );
        v.as_u64().unwrap_or(0) as u16
    }

    /// Polls the text of `css` until `predicate` holds or `timeout` passes (then panics with
    /// the last text seen and the page). Returns the text that satisfied it.
    pub fn wait_for_text(
        &self,
        css: &str,
        predicate: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> String {
        let c = self.client();
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.try_run(async { c.find(Locator::Css(css)).await?.text().await }) {
                Ok(text) if predicate(&text) => return text,
                Ok(text) => format!("{text:?}"),
                Err(e) => format!("(not readable: {e})"),
            };
            if Instant::now() >= deadline {
                panic!(
                    "browser: {css} did not reach the expected text within {timeout:?}; last: {last}\n{}",
                    self.where_am_i()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (bounded) until the current URL satisfies `predicate`; returns it.
    pub fn wait_for_url(&self, predicate: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let url = self.current_url();
            if predicate(&url) {
                return url;
            }
            if Instant::now() >= deadline {
                panic!(
                    "browser: URL did not change as expected within {timeout:?}; at {url}\n{}",
                    self.where_am_i()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Resizes the window so the page's viewport is `width` × `height` CSS pixels (a wall
    /// screen, say): the window's outer size is the viewport plus the browser's own frame.
    pub fn set_viewport(&self, width: u32, height: u32) {
        let c = self.client();
        let inner = self.execute(
            "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];",
            vec![],
        );
        let frame = |i: usize| u32::try_from(inner[i].as_u64().unwrap_or(0)).unwrap_or(0);
        let (w, h) = (width + frame(0), height + frame(1));
        self.run("set window size", c.set_window_size(w, h));
    }

    /// Saves a PNG of the viewport.
    pub fn screenshot(&self, path: &Path) {
        let png = self.run("screenshot", self.client().screenshot());
        assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
        std::fs::write(path, png).unwrap();
    }

    /// Ends the session (Chromium quits) and stops chromedriver.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(10), c.close()).await });
        }
        if let Some(mut d) = self.driver.take() {
            kill_group(&mut d);
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// SIGKILL to the process group led by `child` (chromedriver and the Chromium it started),
/// then reap it.
fn kill_group(child: &mut Child) {
    // Through the syscall, not the `kill` program: on some machines `kill -KILL -PGID`
    // is not Debian's procps and signals every process instead of the group.
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Polls chromedriver's `GET /status` until it says ready (bounded).
fn wait_driver_ready(driver: &mut Child, port: u16, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        if let Ok(Some(status)) = driver.try_wait() {
            return Err(format!("chromedriver exited early ({status})"));
        }
        match status_ready(port) {
            Ok(true) => return Ok(()),
            Ok(false) => last = "not ready yet".into(),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("not ready within {within:?}: {last}"))
}

fn status_ready(port: u16) -> Result<bool, String> {
    let addr = std::net::SocketAddr::new(HOST.parse().unwrap(), port);
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET /status HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    // chromedriver may keep the connection open: read until the answer says ready or not.
    // {"value":{"build":…,"message":"ChromeDriver ready for new sessions.","ready":true,…}}
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let compact: String = String::from_utf8_lossy(&out)
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if compact.contains("\"ready\":true") {
            return Ok(true);
        }
        if compact.contains("\"ready\":false") {
            return Ok(false);
        }
        match s.read(&mut buf) {
            Ok(0) => return Ok(false),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
}
