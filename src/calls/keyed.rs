//! Back in by number (issue 16), the keypad's side, sans-IO: collects the digits a caller
//! keys (RFC 4733 telephone-events or SIP INFO) into a contact number, checks its check
//! digit, and bounds the tries per call so the IVR is no guessing oracle. `call_task`
//! feeds keys and `now`, asks the centre about a well-formed number, and plays what this
//! says.
//!
//! After [`MAX_TRIES`] wrong numbers the call goes on as the new contact it already is:
//! the caller is in line and has heard their new number, and a typo should not cost them
//! the call (a goodbye would). Further digits are ignored for the rest of the call.

use std::time::{Duration, Instant};

use crate::centre::ContactId;
use crate::centre::contact::CONTACT_ID_LEN;

/// Wrong numbers (mistyped, or no place kept under them) a call may key.
pub(crate) const MAX_TRIES: u32 = 3;

/// A pause longer than this between two keys starts the number again: a stray key
/// pressed earlier does not spoil the next attempt.
pub(crate) const KEY_GAP: Duration = Duration::from_secs(6);

/// What a key press came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Keyed {
    /// Nothing to do yet (a digit of a number under way, or keys after the end).
    Nothing,
    /// A whole number with a valid check digit: ask the centre for its kept place.
    Number(ContactId),
    /// A wrong number; the caller may try again ("that number is not right").
    Wrong,
    /// The last try was wrong: no more numbers on this call.
    TriesOver,
}

#[derive(Debug, Default)]
pub(crate) struct KeyedNumber {
    digits: String,
    last: Option<Instant>,
    wrong: u32,
    /// A number was taken, or the tries are over: keys mean nothing more.
    done: bool,
}

impl KeyedNumber {
    /// One key. `#` and `*` start the number again (`*` also repeats the announcement,
    /// which is `call_task`'s business).
    pub(crate) fn key(&mut self, key: char, now: Instant) -> Keyed {
        if self.done {
            return Keyed::Nothing;
        }
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) > KEY_GAP)
        {
            self.digits.clear();
        }
        self.last = Some(now);
        if !key.is_ascii_digit() {
            self.digits.clear();
            return Keyed::Nothing;
        }
        self.digits.push(key);
        if self.digits.len() < CONTACT_ID_LEN {
            return Keyed::Nothing;
        }
        let digits = std::mem::take(&mut self.digits);
        match digits.parse::<ContactId>() {
            Ok(id) => Keyed::Number(id),
            Err(_) => self.wrong(),
        }
    }

    /// The centre has no place kept under the number [`Keyed::Number`] gave (or this
    /// call can no longer take one): a wrong try like a mistyped one.
    pub(crate) fn refused(&mut self) -> Keyed {
        self.wrong()
    }

    /// The number took its place: nothing more to key on this call.
    pub(crate) fn taken(&mut self) {
        self.done = true;
    }

    fn wrong(&mut self) -> Keyed {
        self.wrong += 1;
        if self.wrong >= MAX_TRIES {
            self.done = true;
            Keyed::TriesOver
        } else {
            Keyed::Wrong
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn key_all(k: &mut KeyedNumber, digits: &str, now: Instant) -> Vec<Keyed> {
        digits
            .chars()
            .map(|c| k.key(c, now))
            .filter(|r| *r != Keyed::Nothing)
            .collect()
    }

    /// `id` with its check digit changed: a typo the check digit catches.
    fn mistyped(id: &ContactId) -> String {
        let mut s = id.as_str().to_owned();
        let last = s.pop().unwrap();
        s.push(if last == '9' {
            '0'
        } else {
            (last as u8 + 1) as char
        });
        s
    }

    #[test]
    fn a_whole_valid_number_is_asked_for_once() {
        let id = ContactId::random(&mut rand::rngs::StdRng::seed_from_u64(4733));
        let mut k = KeyedNumber::default();
        let now = Instant::now();
        assert_eq!(
            key_all(&mut k, id.as_str(), now),
            vec![Keyed::Number(id.clone())]
        );
        k.taken();
        assert_eq!(key_all(&mut k, id.as_str(), now), vec![]);
    }

    #[test]
    fn three_wrong_tries_end_the_keying_for_this_call() {
        let id = ContactId::random(&mut rand::rngs::StdRng::seed_from_u64(1));
        let mut k = KeyedNumber::default();
        let now = Instant::now();
        let typo = mistyped(&id);
        assert!(
            typo.parse::<ContactId>().is_err(),
            "the check digit catches it"
        );
        assert_eq!(key_all(&mut k, &typo, now), vec![Keyed::Wrong]);
        // A valid number with no place kept counts the same.
        assert_eq!(
            key_all(&mut k, id.as_str(), now),
            vec![Keyed::Number(id.clone())]
        );
        assert_eq!(k.refused(), Keyed::Wrong);
        assert_eq!(key_all(&mut k, &typo, now), vec![Keyed::TriesOver]);
        // Even the right number is ignored now: no oracle.
        assert_eq!(key_all(&mut k, id.as_str(), now), vec![]);
    }

    #[test]
    fn star_hash_and_a_long_pause_start_the_number_again() {
        let id = ContactId::random(&mut rand::rngs::StdRng::seed_from_u64(2));
        let mut k = KeyedNumber::default();
        let t0 = Instant::now();
        // Stray keys, then `#`: the number after it is whole.
        assert_eq!(key_all(&mut k, "12#", t0), vec![]);
        assert_eq!(
            key_all(&mut k, id.as_str(), t0),
            vec![Keyed::Number(id.clone())]
        );
        // Five digits, a pause, then the whole number.
        let mut k = KeyedNumber::default();
        assert_eq!(key_all(&mut k, "55555", t0), vec![]);
        let later = t0 + KEY_GAP + Duration::from_secs(1);
        assert_eq!(
            key_all(&mut k, id.as_str(), later),
            vec![Keyed::Number(id.clone())]
        );
        let mut k = KeyedNumber::default();
        assert_eq!(key_all(&mut k, "9*", t0), vec![]);
        assert_eq!(key_all(&mut k, id.as_str(), t0), vec![Keyed::Number(id)]);
    }
}
