//! Value types for contacts: time, identifiers, media, state and the status others read.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::estimate::WaitEstimate;

/// Unix time in milliseconds.
///
/// The core never reads a clock: every operation is handed `now`, so tests can run on a
/// virtual clock and replays are deterministic. The wall-clock helper lives in `actor.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// `self` plus `secs` seconds, saturating rather than wrapping on absurd configs.
    pub fn plus_secs(self, secs: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(secs.saturating_mul(1000)))
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn millis_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// Number of digits in a contact number, check digit included.
pub const CONTACT_ID_LEN: usize = 12;

/// Damm quasigroup (order 10, weakly totally anti-symmetric). With it one check digit
/// catches every single-digit substitution and every adjacent transposition, the two
/// mistakes people make when reading a number off a phone call into a web form.
const DAMM: [[u8; 10]; 10] = [
    [0, 3, 1, 7, 5, 9, 8, 6, 4, 2],
    [7, 0, 9, 2, 1, 5, 4, 8, 6, 3],
    [4, 2, 0, 6, 8, 7, 1, 3, 5, 9],
    [1, 7, 5, 0, 9, 8, 3, 4, 2, 6],
    [6, 1, 2, 3, 0, 4, 5, 9, 7, 8],
    [3, 6, 7, 4, 2, 0, 9, 5, 8, 1],
    [5, 8, 6, 9, 7, 2, 0, 1, 3, 4],
    [8, 9, 4, 5, 3, 6, 2, 0, 1, 7],
    [9, 4, 3, 8, 6, 1, 7, 2, 0, 5],
    [2, 5, 8, 1, 4, 3, 6, 7, 9, 0],
];

/// Damm interim digit of a run of ASCII digits. Appending it makes the whole run fold to 0.
fn damm_interim(digits: &[u8]) -> u8 {
    digits.iter().fold(0u8, |interim, &d| {
        DAMM[interim as usize][(d - b'0') as usize]
    })
}

/// The contact number: 11 random digits followed by a Damm check digit.
///
/// It is spoken to the caller and typed into a web page as the key of their contact, so
/// it is random (not guessable from a neighbour's) and self-checking (typos are refused
/// instead of showing someone else's contact). Always exactly 12 ASCII digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContactId(String);

impl ContactId {
    /// Sorts before every real number (range bounds over `(key, id)` pairs).
    pub(crate) const MIN: ContactId = ContactId(String::new());

    /// Draws a fresh random number. Uniqueness is the caller's job (the core retries).
    pub fn random<R: Rng + ?Sized>(rng: &mut R) -> ContactId {
        let mut digits: Vec<u8> = (0..CONTACT_ID_LEN - 1)
            .map(|_| b'0' + rng.random_range(0..10u8))
            .collect();
        digits.push(b'0' + damm_interim(&digits));
        // Only ASCII digits were pushed, so this cannot fail; avoid unwrap all the same.
        ContactId(digits.into_iter().map(char::from).collect())
    }

    /// The 12 digits.
    /// For logs: the number is a lookup secret, so only its last three digits are shown.
    pub fn redacted(&self) -> String {
        let keep = self.0.len().saturating_sub(3);
        format!("{}{}", "*".repeat(keep), &self.0[keep..])
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 12 digits as a number (compact sets of reserved numbers).
    pub fn as_u64(&self) -> Option<u64> {
        self.0.parse().ok()
    }
}

impl fmt::Display for ContactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a string is not a contact number; each variant suggests what to tell the person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContactIdError {
    #[error("a contact number has {CONTACT_ID_LEN} digits, this has {0}")]
    WrongLength(usize),
    #[error("a contact number has only digits")]
    NotDigits,
    #[error("that contact number has a typing mistake (check digit does not match)")]
    BadCheckDigit,
}

impl FromStr for ContactId {
    type Err = ContactIdError;

    /// Accepts the 12 digits, optionally grouped with spaces or hyphens (people copy
    /// "1234 5678 9012" from where it was written down). Nothing else is tolerated.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let compact: Vec<u8> = s
            .trim()
            .bytes()
            .filter(|b| *b != b' ' && *b != b'-')
            .collect();
        if !compact.iter().all(u8::is_ascii_digit) {
            return Err(ContactIdError::NotDigits);
        }
        if compact.len() != CONTACT_ID_LEN {
            return Err(ContactIdError::WrongLength(compact.len()));
        }
        if damm_interim(&compact) != 0 {
            return Err(ContactIdError::BadCheckDigit);
        }
        Ok(ContactId(compact.into_iter().map(char::from).collect()))
    }
}

impl TryFrom<String> for ContactId {
    type Error = ContactIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ContactId> for String {
    fn from(id: ContactId) -> String {
        id.0
    }
}

/// A skill queue's identifier, as written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QueueId(pub String);

impl QueueId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the contact reached us: a call (voice, video), a text session (web chat, SIP
/// MESSAGE instant messaging: live, the customer is there, but no call to bridge), or what
/// replaced a call or a session (call-back, email, web form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaType {
    Voice,
    Video,
    Callback,
    Email,
    WebForm,
    /// A web chat started from the entry page.
    Chat,
    /// Instant messages over SIP MESSAGE (RFC 3428, pager mode).
    Im,
}

impl MediaType {
    /// A text session: the customer is there and types; messages go both ways
    /// ([`crate::centre::chat`]). An agent takes it at once (nothing rings).
    pub fn is_text(self) -> bool {
        matches!(self, MediaType::Chat | MediaType::Im)
    }

    /// Stable machine name (stored in the database; do not change).
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::Voice => "voice",
            MediaType::Video => "video",
            MediaType::Callback => "callback",
            MediaType::Email => "email",
            MediaType::WebForm => "webform",
            MediaType::Chat => "chat",
            MediaType::Im => "im",
        }
    }

    /// Human label for pages and announcements.
    pub fn label(self) -> &'static str {
        match self {
            MediaType::Voice => "voice call",
            MediaType::Video => "video call",
            MediaType::Callback => "call-back",
            MediaType::Email => "email",
            MediaType::WebForm => "web form",
            MediaType::Chat => "web chat",
            MediaType::Im => "instant message",
        }
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A stored or typed name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what}: {value:?}")]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
}

impl FromStr for MediaType {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "voice" => MediaType::Voice,
            "video" => MediaType::Video,
            "callback" => MediaType::Callback,
            "email" => MediaType::Email,
            "webform" => MediaType::WebForm,
            "chat" => MediaType::Chat,
            "im" => MediaType::Im,
            _ => {
                return Err(UnknownName {
                    what: "media type",
                    value: s.to_owned(),
                });
            }
        })
    }
}

/// Why a contact ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The caller hung up while queued.
    Abandoned,
    /// The call was lost in a restart and the keep-place window ran out.
    Lost,
    /// Admitted, but the call could not be answered.
    Rejected,
    /// The caller cancelled their pending call-back.
    Cancelled,
    /// An agent handled the contact.
    Completed,
    /// The live call was moved to another site's queue.
    Transferred,
    /// Every call-back attempt failed.
    CallbackFailed,
    /// The call-back window closed before the customer was reached.
    Expired,
    /// The caller keyed the number of a place kept for them (issue 16): this call went on
    /// as that contact, and this one (seconds old) ended without a queue-log exit (the
    /// call's queue-log lines go on under the same callid).
    Merged,
}

impl EndReason {
    /// Stable machine name (stored in the database and in event kinds `ended:<name>`).
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Abandoned => "abandoned",
            EndReason::Lost => "lost",
            EndReason::Rejected => "rejected",
            EndReason::Cancelled => "cancelled",
            EndReason::Completed => "completed",
            EndReason::Transferred => "transferred",
            EndReason::CallbackFailed => "callback_failed",
            EndReason::Expired => "expired",
            EndReason::Merged => "merged",
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EndReason {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "abandoned" => EndReason::Abandoned,
            "lost" => EndReason::Lost,
            "rejected" => EndReason::Rejected,
            "cancelled" => EndReason::Cancelled,
            "completed" => EndReason::Completed,
            "transferred" => EndReason::Transferred,
            "callback_failed" => EndReason::CallbackFailed,
            "expired" => EndReason::Expired,
            "merged" => EndReason::Merged,
            _ => {
                return Err(UnknownName {
                    what: "end reason",
                    value: s.to_owned(),
                });
            }
        })
    }
}

/// Where a contact is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum ContactState {
    /// In its queue with a live call attached.
    Queued,
    /// Still holds its place in the queue, but its call is gone (lost in a restart);
    /// it ends as `Lost` at `until` unless the caller comes back first.
    Disconnected { since: Timestamp, until: Timestamp },
    /// Out of the queue for good. Kept for a while so the number is not reused and the
    /// web page can still say what happened.
    Ended { at: Timestamp, reason: EndReason },
}

impl ContactState {
    /// Queued or disconnected: holds a place in a queue.
    pub fn is_live(&self) -> bool {
        !matches!(self, ContactState::Ended { .. })
    }
}

/// What the SIP front-end hands the centre to admit a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewContact {
    pub queue: QueueId,
    pub media: MediaType,
    /// The From URI (display only; never used as a key).
    pub caller: String,
    /// Opaque handle back to the call (the SIP Call-ID).
    pub call_ref: String,
}

/// Everything a page, an announcement or an API needs to know about one contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactStatus {
    pub id: ContactId,
    pub queue: QueueId,
    pub queue_name: String,
    pub skillset: String,
    pub media: MediaType,
    pub state: ContactState,
    /// 1-based place in the queue; `None` once ended.
    pub position: Option<u32>,
    /// Contacts ahead in the same queue (0 once ended).
    pub ahead: u32,
    /// Wait estimate for `position`; meaningless (reported as `NoAgents`) once ended.
    pub estimate: WaitEstimate,
    /// Queue order key: earlier seniority is served first. Set at admission (`created`);
    /// moves between queues and substitutes keep it so a caller does not lose their turn.
    pub seniority: Timestamp,
    pub created: Timestamp,
    pub caller: String,
    /// Grows by one on every change to this contact; pages send it back with commands so
    /// a stale page is detected.
    pub version: u64,
    /// The contact still has a live SIP call (false once substituted, disconnected or ended).
    pub live_call: bool,
    /// The call-back, email or web form that replaced the live call, if any.
    pub substitute: Option<super::command::Substitute>,
    /// The controls the caller may use now.
    pub options: Vec<super::command::ActionKind>,
    /// Queues this contact may move to, with the place and wait it would get there.
    pub move_targets: Vec<super::command::MoveTarget>,
    /// The caller's own number (from From / P-Asserted-Identity) as the call-back default.
    pub default_callback_number: Option<String>,
    /// The last time the position number went up, and why.
    pub position_rise: Option<super::command::PositionRise>,
    /// The wait grew because fewer agents are working than when the contact joined.
    pub wait_rise: Option<super::command::WaitRise>,
    /// The agent the contact is being offered to or is connected with (out of the line
    /// meanwhile: `position` is `None`).
    pub agent: Option<super::agent::AgentView>,
    /// The agent answered: the contact is being handled.
    pub connected: bool,
    /// The live call is being moved to this remote queue (its name); the contact keeps
    /// its place here until the move is confirmed.
    pub transferring: Option<String>,
    /// Something the caller should be told, e.g. that a move to another site failed.
    pub notice: Option<Notice>,
    /// Call-back attempts so far, oldest first.
    pub attempts: Vec<CallbackAttempt>,
    /// A call-back is not tried again before this.
    pub next_attempt: Option<Timestamp>,
    /// The caller's note for the agent (the caller's own words: escape wherever shown).
    pub note: Option<String>,
}

/// One try at calling a customer back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackAttempt {
    pub at: Timestamp,
    /// "connected", or why it failed ("busy", "no answer", "rejected (503)").
    pub outcome: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn random_ids_are_twelve_digits_and_parse_back() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..1000 {
            let id = ContactId::random(&mut rng);
            assert_eq!(id.as_str().len(), CONTACT_ID_LEN);
            assert!(id.as_str().bytes().all(|b| b.is_ascii_digit()));
            assert_eq!(id.as_str().parse::<ContactId>(), Ok(id.clone()));
            assert_eq!(id.to_string(), id.as_str());
        }
    }

    #[test]
    fn every_single_digit_error_is_detected() {
        let mut rng = StdRng::seed_from_u64(2);
        for _ in 0..500 {
            let id = ContactId::random(&mut rng);
            let digits = id.as_str().as_bytes();
            for pos in 0..CONTACT_ID_LEN {
                for d in b'0'..=b'9' {
                    if d == digits[pos] {
                        continue;
                    }
                    let mut typo = digits.to_vec();
                    typo[pos] = d;
                    let typo = String::from_utf8(typo).expect("ascii");
                    assert_eq!(
                        typo.parse::<ContactId>(),
                        Err(ContactIdError::BadCheckDigit),
                        "{typo} (from {id}) accepted"
                    );
                }
            }
        }
    }

    #[test]
    fn every_adjacent_transposition_is_detected() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut checked = 0;
        for _ in 0..2000 {
            let id = ContactId::random(&mut rng);
            let digits = id.as_str().as_bytes();
            for pos in 0..CONTACT_ID_LEN - 1 {
                if digits[pos] == digits[pos + 1] {
                    continue;
                }
                let mut swapped = digits.to_vec();
                swapped.swap(pos, pos + 1);
                let swapped = String::from_utf8(swapped).expect("ascii");
                assert_eq!(
                    swapped.parse::<ContactId>(),
                    Err(ContactIdError::BadCheckDigit),
                    "{swapped} (from {id}) accepted"
                );
                checked += 1;
            }
        }
        assert!(checked > 10_000);
    }

    #[test]
    fn parse_says_what_is_wrong() {
        assert_eq!(
            "12345".parse::<ContactId>(),
            Err(ContactIdError::WrongLength(5))
        );
        assert_eq!(
            "1234567890123".parse::<ContactId>(),
            Err(ContactIdError::WrongLength(13))
        );
        assert_eq!(
            "12345678901a".parse::<ContactId>(),
            Err(ContactIdError::NotDigits)
        );
        assert_eq!("".parse::<ContactId>(), Err(ContactIdError::WrongLength(0)));
        // Unicode digits are not ASCII digits.
        assert_eq!(
            "١٢٣٤٥٦٧٨٩٠١٢".parse::<ContactId>(),
            Err(ContactIdError::NotDigits)
        );
    }

    #[test]
    fn grouping_separators_are_accepted() {
        let mut rng = StdRng::seed_from_u64(4);
        let id = ContactId::random(&mut rng);
        let s = id.as_str();
        let grouped = format!(" {} {}-{} ", &s[0..4], &s[4..8], &s[8..12]);
        assert_eq!(grouped.parse::<ContactId>(), Ok(id));
    }

    #[test]
    fn serde_rejects_bad_ids() {
        let mut rng = StdRng::seed_from_u64(5);
        let id = ContactId::random(&mut rng);
        let good: Result<ContactId, _> = ContactId::try_from(id.to_string());
        assert_eq!(good, Ok(id));
        assert!(ContactId::try_from("000000000001".to_owned()).is_err());
    }

    #[test]
    fn names_round_trip() {
        for m in [
            MediaType::Voice,
            MediaType::Video,
            MediaType::Callback,
            MediaType::Email,
            MediaType::WebForm,
            MediaType::Chat,
            MediaType::Im,
        ] {
            assert_eq!(m.as_str().parse::<MediaType>(), Ok(m));
            // serde and the stored name agree.
            assert_eq!(
                serde_json::to_string(&m).expect("json"),
                format!("\"{}\"", m.as_str())
            );
        }
        for r in [
            EndReason::Abandoned,
            EndReason::Lost,
            EndReason::Rejected,
            EndReason::Cancelled,
            EndReason::Completed,
            EndReason::Transferred,
            EndReason::CallbackFailed,
            EndReason::Expired,
            EndReason::Merged,
        ] {
            assert_eq!(r.as_str().parse::<EndReason>(), Ok(r));
            // serde and the stored name agree.
            assert_eq!(
                serde_json::to_string(&r).expect("json"),
                format!("\"{}\"", r.as_str())
            );
        }
        assert_eq!(MediaType::Voice.label(), "voice call");
        assert!("fax".parse::<MediaType>().is_err());
    }
}

/// Something the caller should be told about their contact, in the centre's terms (the
/// page says it in words: `web::words::notice`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// A move of the live call to another site's queue (`queue_name`) failed; the contact
    /// keeps its place here. `detail` is the far end's answer ("busy", "rejected (503)").
    TransferFailed { queue_name: String, detail: String },
    /// The call could not be put through to an agent `attempts` times because the
    /// caller's phone did not complete the transfer: it is no longer offered on this call
    /// (the caller may choose a call-back, email or form on the page, or ring again).
    TransfersFailed { attempts: u32 },
    /// A notice stored by an older version, in its own words.
    Text { text: String },
}
