//! Debian's baresip 1.0 as a real softphone for the integration tests (an agent's phone in
//! `tests/baresip.rs`, a video caller and a video agent in `tests/video.rs`): its own
//! configuration directory, SIP on 127.0.0.1 only, a 440 Hz tone as audio (what it hears
//! is discarded), with `video` fakevideo's test picture over VP8, and its output read line
//! by line (the status line it redraws with `\r` split too). Killed on drop.
//!
//! A missing binary fails loudly: these tests are never skipped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::free_port;

pub struct Baresip {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Baresip {
    /// Starts baresip on configuration directory `conf` (created) with `account` as the one
    /// line of its `accounts` file, with video if `video`, running `run` at start-up.
    pub fn start(conf: &Path, account: &str, video: bool, run: Option<&str>) -> Baresip {
        let bin = Path::new("/usr/bin/baresip");
        assert!(
            bin.exists(),
            "baresip is not installed: install Debian's baresip (the README's test command does)"
        );
        std::fs::create_dir_all(conf).unwrap();
        let port = free_port();
        let (video_lines, video_modules) = if video {
            (
                "video_source fakevideo,nil\nvideo_display fakevideo,nil\n",
                "module vp8.so\nmodule fakevideo.so\n",
            )
        } else {
            ("", "")
        };
        let menu = if video || run.is_some() {
            "module_app menu.so\n"
        } else {
            ""
        };
        std::fs::write(
            conf.join("config"),
            format!(
                "poll_method epoll\n\
                 sip_listen 127.0.0.1:{port}\n\
                 sip_transports udp\n\
                 net_interface 127.0.0.1\n\
                 audio_player aufile,/dev/null\n\
                 audio_source ausine,440\n\
                 ausrc_srate 48000\n\
                 ausrc_channels 2\n\
                 audio_alert aufile,/dev/null\n\
                 {video_lines}\
                 module_path /usr/lib/baresip/modules\n\
                 module g711.so\n\
                 module ausine.so\n\
                 module aufile.so\n\
                 {video_modules}\
                 module_app account.so\n\
                 {menu}"
            ),
        )
        .unwrap();
        std::fs::write(conf.join("accounts"), format!("{account}\n")).unwrap();
        // A `contacts` file stops baresip writing its template (with example addresses).
        std::fs::write(conf.join("contacts"), "").unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg("-f").arg(conf);
        if let Some(run) = run {
            cmd.arg("-e").arg(run);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start baresip");
        let (tx, lines) = mpsc::channel();
        let out: Vec<Box<dyn std::io::Read + Send>> = vec![
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for pipe in out {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).split(b'\n').map_while(Result::ok) {
                    for part in String::from_utf8_lossy(&line).split('\r') {
                        if !part.trim().is_empty() && tx.send(part.to_owned()).is_err() {
                            return;
                        }
                    }
                }
            });
        }
        Baresip {
            child,
            lines,
            seen: vec![],
        }
    }

    /// Waits (bounded) for an output line containing `needle`, among those already seen
    /// first.
    pub fn expect_line(&mut self, needle: &str, within: Duration) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        self.expect_new_line(needle, &[], within)
    }

    /// Waits (bounded) for a line not seen before containing `needle`; fails at once on a
    /// line containing one of `refused`.
    pub fn expect_new_line(&mut self, needle: &str, refused: &[&str], within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    assert!(
                        !refused.iter().any(|r| line.contains(r)),
                        "baresip: {line}\n{}",
                        self.text_seen()
                    );
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "baresip never printed {needle:?} within {within:?}:\n{}",
                    self.text_seen()
                ),
            }
        }
    }

    /// Every line so far (status lines left out), for assertions on what came before.
    pub fn text(&mut self) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.text_seen()
    }

    fn text_seen(&self) -> String {
        self.seen
            .iter()
            .filter(|l| !l.starts_with("[0:"))
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
