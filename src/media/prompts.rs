//! Prompt clips (raw G.711 at 8 kHz) and the sentences built from them.
//!
//! Sentence building is split in two so tests and other parts can reason about it without
//! audio: the pure functions ([`contact_number_clips`], [`position_clips`], [`number_words`])
//! return a list of [`ClipRef`]s, and [`PromptSet::resolve`] turns that list into the
//! `Bytes` the announcer plays, joined byte by byte in order.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;

/// Samples (= bytes of G.711) per millisecond at 8 kHz.
const BYTES_PER_MS: usize = 8;

/// The G.711 companding law of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Law {
    /// µ-law, static RTP payload type 0.
    Pcmu,
    /// A-law, static RTP payload type 8.
    Pcma,
}

impl Law {
    /// The byte that encodes digital silence (sample value 0) in this law.
    pub fn silence_byte(self) -> u8 {
        match self {
            Law::Pcmu => 0xFF,
            Law::Pcma => 0xD5,
        }
    }

    /// The static RTP payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        match self {
            Law::Pcmu => 0,
            Law::Pcma => 8,
        }
    }

    /// The encoding name used in `a=rtpmap`.
    pub fn encoding_name(self) -> &'static str {
        match self {
            Law::Pcmu => "PCMU",
            Law::Pcma => "PCMA",
        }
    }

    fn dir_and_ext(self) -> (&'static str, &'static str) {
        match self {
            Law::Pcmu => ("pcmu", "ul"),
            Law::Pcma => ("pcma", "al"),
        }
    }
}

/// One element of a sentence: a named clip or a pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipRef {
    /// A clip from the prompt set, by name (one of [`CLIP_NAMES`]).
    Clip(&'static str),
    /// Silence of this many milliseconds.
    Silence(u32),
}

/// How the queue wait is said after the position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitPhrase {
    /// "No agents are available at the moment."
    NoAgents,
    /// "The expected wait is less than a minute."
    LessThanAMinute,
    /// "The expected wait is up to <high> minutes."
    UpTo { high: u32, learning: bool },
    /// "The expected wait is about <low> to <high> minutes." (or "about 1 minute").
    /// `learning`: followed by "This is a rough guide: we are still learning how long
    /// calls take here."
    Minutes { low: u32, high: u32, learning: bool },
}

/// Pause lengths used by the sentence builders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pauses {
    /// Between the digits of the contact number: long enough to write each one down.
    pub between_digits_ms: u32,
    /// Between the groups of four digits (the page shows the number as 4827 1930 5561).
    pub between_groups_ms: u32,
    /// Between two sentences.
    pub between_sentences_ms: u32,
}

impl Default for Pauses {
    fn default() -> Self {
        Pauses {
            between_digits_ms: 400,
            between_groups_ms: 900,
            between_sentences_ms: 700,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("prompt clip {name:?} is missing ({path})")]
    Missing { name: &'static str, path: PathBuf },
    #[error("cannot read prompt clip {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

// One table drives the clip names, the embedded bytes of both laws and `load_dir`, so a clip
// cannot be added to one and forgotten in another.
macro_rules! clips {
    ($($name:literal),* $(,)?) => {
        /// Every clip a complete prompt set has (file stem under `prompts/pcmu|pcma/`).
        pub const CLIP_NAMES: &[&str] = &[$($name),*];
        static EMBEDDED_PCMU: &[(&str, &[u8])] = &[$(
            ($name, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/prompts/pcmu/", $name, ".ul"))),
        )*];
        static EMBEDDED_PCMA: &[(&str, &[u8])] = &[$(
            ($name, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/prompts/pcma/", $name, ".al"))),
        )*];
    };
}

/// Clips added after prompt directories were first recorded (issue 16: back in by number);
/// `load_dir` takes the embedded ones when a directory lacks them.
const ADDED_LATER: &[&str] = &[
    "key_number_hint",
    "welcome_back",
    "number_not_right",
    "number_tries_over",
];

clips!(
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "9", //
    "n1",
    "n2",
    "n3",
    "n4",
    "n5",
    "n6",
    "n7",
    "n8",
    "n9",
    "n10", //
    "n11",
    "n12",
    "n13",
    "n14",
    "n15",
    "n16",
    "n17",
    "n18",
    "n19", //
    "n20",
    "n30",
    "n40",
    "n50",
    "n60",
    "n70",
    "n80",
    "n90",
    "hundred",
    "thousand", //
    "your_contact_number_is",
    "you_are_number",
    "in_the_queue",
    "expected_wait_about",
    "expected_wait_up_to",
    "still_learning",
    "to",
    "minutes",
    "minute",
    "less_than_a_minute",
    "no_agents",
    "web_info",
    "goodbye",
    "callback_goodbye",
    "connecting_agent",
    "moving_call",
    "not_connected",
    "callback_connecting",
    "key_number_hint",
    "welcome_back",
    "number_not_right",
    "number_tries_over",
    "moh",
);

const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
const ONES: [&str; 20] = [
    "", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9", "n10", "n11", "n12", "n13", "n14",
    "n15", "n16", "n17", "n18", "n19",
];
const TENS: [&str; 10] = [
    "", "", "n20", "n30", "n40", "n50", "n60", "n70", "n80", "n90",
];

/// Clip names that say `n` in words: 2345 → two thousand three hundred forty five.
///
/// Covers 1..=999_999. Zero is said "zero"; anything larger is read digit by digit, which is
/// still understandable and cannot happen for a queue position in practice.
pub fn number_words(n: u32) -> Vec<&'static str> {
    let mut out = Vec::new();
    if n == 0 {
        out.push(DIGITS[0]);
    } else if n > 999_999 {
        out.extend(n.to_string().bytes().map(|b| DIGITS[usize::from(b - b'0')]));
    } else {
        let thousands = n / 1000;
        if thousands > 0 {
            below_thousand(thousands, &mut out);
            out.push("thousand");
        }
        below_thousand(n % 1000, &mut out);
    }
    out
}

fn below_thousand(n: u32, out: &mut Vec<&'static str>) {
    // Indices are < 20 / < 10 by construction, so the conversions cannot truncate.
    let hundreds = (n / 100) as usize;
    let rest = (n % 100) as usize;
    if hundreds > 0 {
        out.push(ONES[hundreds]);
        out.push("hundred");
    }
    if rest >= 20 {
        out.push(TENS[rest / 10]);
        if !rest.is_multiple_of(10) {
            out.push(ONES[rest % 10]);
        }
    } else if rest > 0 {
        out.push(ONES[rest]);
    }
}

/// "Your contact number is 4 8 2 7 — 1 9 3 0 — 5 5 6 1": once, in the groups of four the
/// page shows, with a longer pause between groups. Said twice it kept the caller ~24 s
/// from hearing their place; `*` repeats it on demand.
///
/// Characters that are not ASCII digits (spaces, dashes a caller would not hear) are skipped.
pub fn contact_number_clips(digits: &str, pauses: Pauses) -> Vec<ClipRef> {
    let spoken: Vec<&'static str> = digits
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| DIGITS[usize::from(b - b'0')])
        .collect();
    let mut out = Vec::with_capacity(2 * spoken.len() + 3);
    out.push(ClipRef::Clip("your_contact_number_is"));
    for (i, d) in spoken.iter().enumerate() {
        out.push(ClipRef::Silence(if i > 0 && i % 4 == 0 {
            pauses.between_groups_ms
        } else {
            pauses.between_digits_ms
        }));
        out.push(ClipRef::Clip(d));
    }
    out.push(ClipRef::Silence(pauses.between_sentences_ms));
    out
}

/// "You are number <n> in the queue." followed by the wait sentence.
pub fn position_clips(position: u32, wait: &WaitPhrase, pauses: Pauses) -> Vec<ClipRef> {
    let mut out = vec![ClipRef::Clip("you_are_number")];
    out.extend(number_words(position).into_iter().map(ClipRef::Clip));
    out.push(ClipRef::Clip("in_the_queue"));
    out.push(ClipRef::Silence(pauses.between_sentences_ms));
    out.extend(wait_clips(wait));
    out.push(ClipRef::Silence(pauses.between_sentences_ms));
    out
}

fn wait_clips(wait: &WaitPhrase) -> Vec<ClipRef> {
    let (mut out, learning) = match *wait {
        WaitPhrase::NoAgents => return vec![ClipRef::Clip("no_agents")],
        WaitPhrase::LessThanAMinute => return vec![ClipRef::Clip("less_than_a_minute")],
        WaitPhrase::UpTo { high, learning } => {
            let high = high.max(1);
            let mut out = vec![ClipRef::Clip("expected_wait_up_to")];
            out.extend(number_words(high).into_iter().map(ClipRef::Clip));
            out.push(ClipRef::Clip(if high == 1 { "minute" } else { "minutes" }));
            (out, learning)
        }
        WaitPhrase::Minutes {
            low,
            high,
            learning,
        } => {
            // Be forgiving about what the estimator hands us: an upper bound of 0 means
            // "under a minute", a lower bound of 0 would sound odd ("about zero to 3").
            let (low, high) = (low.min(high), low.max(high));
            if high == 0 {
                return vec![ClipRef::Clip("less_than_a_minute")];
            }
            let low = low.max(1);
            let mut out = vec![ClipRef::Clip("expected_wait_about")];
            out.extend(number_words(low).into_iter().map(ClipRef::Clip));
            if low != high {
                out.push(ClipRef::Clip("to"));
                out.extend(number_words(high).into_iter().map(ClipRef::Clip));
            }
            out.push(ClipRef::Clip(if high == 1 { "minute" } else { "minutes" }));
            (out, learning)
        }
    };
    if learning {
        out.push(ClipRef::Clip("still_learning"));
    }
    out
}

/// All clips of one law, shared cheaply (`Bytes` clones are reference counts).
#[derive(Debug, Clone)]
pub struct PromptSet {
    law: Law,
    clips: HashMap<&'static str, Bytes>,
    /// One second of silence, sliced for pauses so they cost no allocation.
    silence: Bytes,
    pauses: Pauses,
}

impl PromptSet {
    /// The clips compiled into the binary from `prompts/`.
    pub fn embedded(law: Law) -> PromptSet {
        let table = match law {
            Law::Pcmu => EMBEDDED_PCMU,
            Law::Pcma => EMBEDDED_PCMA,
        };
        let clips = table
            .iter()
            .map(|&(name, data)| (name, Bytes::from_static(data)))
            .collect();
        PromptSet::from_clips(law, clips)
    }

    /// Loads every clip from a directory laid out like the repository's `prompts/`:
    /// `<dir>/pcmu/<name>.ul` or `<dir>/pcma/<name>.al`.
    pub fn load_dir(dir: &Path, law: Law) -> Result<PromptSet, PromptError> {
        let (sub, ext) = law.dir_and_ext();
        let mut clips = HashMap::with_capacity(CLIP_NAMES.len());
        let embedded = PromptSet::embedded(law);
        for &name in CLIP_NAMES {
            let path = dir.join(sub).join(format!("{name}.{ext}"));
            match std::fs::read(&path) {
                Ok(data) => {
                    clips.insert(name, Bytes::from(data));
                }
                // A directory recorded before these clips existed keeps working: the
                // embedded voice says them until the site records its own.
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound && ADDED_LATER.contains(&name) =>
                {
                    tracing::warn!(clip = name, path = %path.display(), "prompt clip missing: the embedded one is used");
                    if let Some(data) = embedded.clip(name) {
                        clips.insert(name, data);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(PromptError::Missing { name, path });
                }
                Err(source) => return Err(PromptError::Io { path, source }),
            }
        }
        Ok(PromptSet::from_clips(law, clips))
    }

    fn from_clips(law: Law, clips: HashMap<&'static str, Bytes>) -> PromptSet {
        PromptSet {
            law,
            clips,
            silence: Bytes::from(vec![law.silence_byte(); 1000 * BYTES_PER_MS]),
            pauses: Pauses::default(),
        }
    }

    /// Replaces one clip, e.g. a site-specific `web_info`. Unknown names are ignored and
    /// reported as `false`, because the sentence builders would never play them.
    pub fn set_clip(&mut self, name: &str, data: Bytes) -> bool {
        match CLIP_NAMES.iter().find(|&&n| n == name) {
            Some(&known) => {
                self.clips.insert(known, data);
                true
            }
            None => false,
        }
    }

    /// Sets the pauses the sentence builders insert.
    pub fn with_pauses(mut self, pauses: Pauses) -> PromptSet {
        self.pauses = pauses;
        self
    }

    pub fn pauses(&self) -> Pauses {
        self.pauses
    }

    pub fn law(&self) -> Law {
        self.law
    }

    pub fn clip(&self, name: &str) -> Option<Bytes> {
        self.clips.get(name).cloned()
    }

    /// Silence of `ms` milliseconds in this law.
    pub fn silence(&self, ms: u32) -> Vec<Bytes> {
        let mut left = ms as usize * BYTES_PER_MS;
        let mut out = Vec::new();
        while left > 0 {
            let n = left.min(self.silence.len());
            out.push(self.silence.slice(..n));
            left -= n;
        }
        out
    }

    /// Turns a sentence into the byte pieces to play, in order. A clip missing from the set
    /// is skipped (every set built by this module has them all).
    pub fn resolve(&self, refs: &[ClipRef]) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(refs.len());
        for r in refs {
            match *r {
                ClipRef::Clip(name) => out.extend(self.clip(name)),
                ClipRef::Silence(ms) => out.extend(self.silence(ms)),
            }
        }
        out
    }

    pub fn contact_number(&self, digits: &str) -> Vec<Bytes> {
        self.resolve(&contact_number_clips(digits, self.pauses))
    }

    pub fn position(&self, position: u32, wait: &WaitPhrase) -> Vec<Bytes> {
        self.resolve(&position_clips(position, wait, self.pauses))
    }

    pub fn web_info(&self) -> Vec<Bytes> {
        self.resolve(&[
            ClipRef::Clip("web_info"),
            ClipRef::Silence(self.pauses.between_sentences_ms),
        ])
    }

    pub fn goodbye(&self) -> Vec<Bytes> {
        self.resolve(&[ClipRef::Clip("goodbye")])
    }

    pub fn callback_goodbye(&self) -> Vec<Bytes> {
        self.resolve(&[ClipRef::Clip("callback_goodbye")])
    }

    /// "Please hold. We are connecting you to an agent now." (before the REFER to an agent)
    pub fn connecting_agent(&self) -> Vec<Bytes> {
        self.resolve(&[ClipRef::Clip("connecting_agent")])
    }

    /// "We are moving your call now. Please hold." (before the REFER to another site)
    pub fn moving_call(&self) -> Vec<Bytes> {
        self.resolve(&[ClipRef::Clip("moving_call")])
    }

    /// "We could not connect you. You keep your place in the queue." (a failed offer or move)
    pub fn not_connected(&self) -> Vec<Bytes> {
        self.resolve(&[
            ClipRef::Clip("not_connected"),
            ClipRef::Silence(self.pauses.between_sentences_ms),
        ])
    }

    /// "If you were cut off before, key your old contact number to get your place back."
    pub fn key_number_hint(&self) -> Vec<Bytes> {
        self.resolve(&[
            ClipRef::Clip("key_number_hint"),
            ClipRef::Silence(self.pauses.between_sentences_ms),
        ])
    }

    /// "Welcome back. You have your place again." (a keyed number took its kept place)
    pub fn welcome_back(&self) -> Vec<Bytes> {
        self.resolve(&[
            ClipRef::Clip("welcome_back"),
            ClipRef::Silence(self.pauses.between_sentences_ms),
        ])
    }

    /// "That number is not right. Please key it again."
    pub fn number_not_right(&self) -> Vec<Bytes> {
        self.resolve(&[ClipRef::Clip("number_not_right")])
    }

    /// "We could not find that number. You keep your new place in the queue."
    pub fn number_tries_over(&self) -> Vec<Bytes> {
        self.resolve(&[ClipRef::Clip("number_tries_over")])
    }

    /// What the agent hears while a call-back dials the customer.
    pub fn callback_connecting(&self) -> Vec<Bytes> {
        self.resolve(&[ClipRef::Clip("callback_connecting")])
    }

    /// The music-on-hold loop (the announcer's filler).
    pub fn moh(&self) -> Bytes {
        self.clip("moh").unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn law_constants() {
        assert_eq!(Law::Pcmu.silence_byte(), 0xFF);
        assert_eq!(Law::Pcma.silence_byte(), 0xD5);
        assert_eq!(Law::Pcmu.payload_type(), 0);
        assert_eq!(Law::Pcma.payload_type(), 8);
    }

    #[test]
    fn number_words_cover_the_range() {
        assert_eq!(number_words(1), ["n1"]);
        assert_eq!(number_words(7), ["n7"]);
        assert_eq!(number_words(13), ["n13"]);
        assert_eq!(number_words(20), ["n20"]);
        assert_eq!(number_words(45), ["n40", "n5"]);
        assert_eq!(number_words(100), ["n1", "hundred"]);
        assert_eq!(number_words(110), ["n1", "hundred", "n10"]);
        assert_eq!(number_words(999), ["n9", "hundred", "n90", "n9"]);
        assert_eq!(number_words(1000), ["n1", "thousand"]);
        assert_eq!(
            number_words(2345),
            ["n2", "thousand", "n3", "hundred", "n40", "n5"]
        );
        assert_eq!(number_words(20_019), ["n20", "thousand", "n19"]);
        assert_eq!(
            number_words(999_999),
            [
                "n9", "hundred", "n90", "n9", "thousand", "n9", "hundred", "n90", "n9"
            ]
        );
        assert_eq!(number_words(0), ["0"]);
        assert_eq!(number_words(1_000_000), ["1", "0", "0", "0", "0", "0", "0"]);
        // Every name produced for the whole range exists as a clip.
        for n in 0..=2000 {
            for name in number_words(n) {
                assert!(CLIP_NAMES.contains(&name), "{name}");
            }
        }
    }

    #[test]
    fn contact_number_sequence() {
        let p = Pauses {
            between_digits_ms: 400,
            between_groups_ms: 900,
            between_sentences_ms: 700,
        };
        use ClipRef::{Clip, Silence};
        assert_eq!(
            contact_number_clips("4-82", p),
            vec![
                Clip("your_contact_number_is"),
                Silence(400),
                Clip("4"),
                Silence(400),
                Clip("8"),
                Silence(400),
                Clip("2"),
                Silence(700),
            ]
        );
        // Twelve digits: once, 4-4-4, the groups apart.
        let refs = contact_number_clips("4827 1930 5561", p);
        let digits: Vec<_> = refs
            .iter()
            .filter(|r| matches!(r, Clip(d) if d.len() == 1))
            .collect();
        assert_eq!(digits.len(), 12, "said once");
        let silences: Vec<u32> = refs
            .iter()
            .filter_map(|r| match r {
                Silence(ms) => Some(*ms),
                Clip(_) => None,
            })
            .collect();
        assert_eq!(
            silences,
            [
                400, 400, 400, 400, 900, 400, 400, 400, 900, 400, 400, 400, 700
            ]
        );
    }

    #[test]
    fn position_and_wait_sequences() {
        let p = Pauses::default();
        use ClipRef::{Clip, Silence};
        assert_eq!(
            position_clips(
                3,
                &WaitPhrase::Minutes {
                    low: 4,
                    high: 6,
                    learning: false
                },
                p
            ),
            vec![
                Clip("you_are_number"),
                Clip("n3"),
                Clip("in_the_queue"),
                Silence(700),
                Clip("expected_wait_about"),
                Clip("n4"),
                Clip("to"),
                Clip("n6"),
                Clip("minutes"),
                Silence(700),
            ]
        );
        assert_eq!(
            wait_clips(&WaitPhrase::Minutes {
                low: 1,
                high: 1,
                learning: false
            }),
            vec![Clip("expected_wait_about"), Clip("n1"), Clip("minute")]
        );
        assert_eq!(
            wait_clips(&WaitPhrase::Minutes {
                low: 5,
                high: 5,
                learning: false
            }),
            vec![Clip("expected_wait_about"), Clip("n5"), Clip("minutes")]
        );
        assert_eq!(
            wait_clips(&WaitPhrase::Minutes {
                low: 0,
                high: 0,
                learning: false
            }),
            vec![Clip("less_than_a_minute")]
        );
        assert_eq!(wait_clips(&WaitPhrase::NoAgents), vec![Clip("no_agents")]);
        assert_eq!(
            position_clips(21, &WaitPhrase::LessThanAMinute, p)[..3],
            [Clip("you_are_number"), Clip("n20"), Clip("n1")]
        );
    }

    #[test]
    fn embedded_sets_are_complete_and_resolve() {
        for law in [Law::Pcmu, Law::Pcma] {
            let set = PromptSet::embedded(law);
            for name in CLIP_NAMES {
                let clip = set.clip(name).expect("embedded clip");
                assert!(clip.len() > 800, "{name} is suspiciously short");
            }
            assert_eq!(set.moh().len(), 20 * 8000);
            let refs = contact_number_clips("12", set.pauses());
            let bytes: Vec<u8> = set.resolve(&refs).concat();
            let expected_len: usize = refs
                .iter()
                .map(|r| match r {
                    ClipRef::Clip(n) => set.clip(n).map_or(0, |c| c.len()),
                    ClipRef::Silence(ms) => *ms as usize * 8,
                })
                .sum();
            assert_eq!(bytes.len(), expected_len);
            assert_eq!(set.silence(1500).concat(), vec![law.silence_byte(); 12_000]);
        }
    }

    #[test]
    fn load_dir_reads_the_repository_clips_and_names_a_missing_one() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
        let set = PromptSet::load_dir(&root, Law::Pcma).expect("load");
        assert_eq!(
            set.clip("goodbye"),
            PromptSet::embedded(Law::Pcma).clip("goodbye")
        );

        let empty = std::env::temp_dir().join(format!("holdline-prompts-{}", std::process::id()));
        std::fs::create_dir_all(empty.join("pcmu")).expect("mkdir");
        match PromptSet::load_dir(&empty, Law::Pcmu) {
            Err(PromptError::Missing { name, .. }) => assert_eq!(name, "0"),
            other => panic!("expected a missing clip, got {other:?}"),
        }
        // A directory from before the back-in-by-number clips: those come from the
        // embedded set, the rest from the directory.
        let older = empty.join("older");
        std::fs::create_dir_all(older.join("pcma")).expect("mkdir");
        for name in CLIP_NAMES.iter().filter(|n| !ADDED_LATER.contains(n)) {
            let file = format!("{name}.al");
            std::fs::copy(
                root.join("pcma").join(&file),
                older.join("pcma").join(&file),
            )
            .expect("copy");
        }
        std::fs::write(older.join("pcma").join("goodbye.al"), b"site goodbye").expect("write");
        let set = PromptSet::load_dir(&older, Law::Pcma).expect("an older directory loads");
        assert_eq!(
            set.clip("goodbye"),
            Some(Bytes::from_static(b"site goodbye"))
        );
        assert_eq!(
            set.clip("welcome_back"),
            PromptSet::embedded(Law::Pcma).clip("welcome_back")
        );
        let _ = std::fs::remove_dir_all(&empty);
    }

    #[test]
    fn set_clip_overrides_known_names_only() {
        let mut set = PromptSet::embedded(Law::Pcmu);
        assert!(set.set_clip("web_info", Bytes::from_static(b"abc")));
        assert_eq!(set.web_info()[0], Bytes::from_static(b"abc"));
        assert!(!set.set_clip("nonsense", Bytes::new()));
    }
}
