//! Checking what a caller types into a command form: call-back numbers (with the
//! operator's prefix rules), call-back windows, email addresses and text fields; and the
//! caller's own number as the call-back default.
//!
//! Every refusal is a message in plain words, shown beside the field it is about.

use serde::{Deserialize, Serialize};

use super::command::Window;
use super::contact::Timestamp;

/// Which numbers the centre will call back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackRules {
    /// A number must start with one of these (after normalising); empty allows any.
    pub allowed_prefixes: Vec<String>,
    /// Numbers starting with any of these are refused (premium rate and the like).
    pub blocked_prefixes: Vec<String>,
    /// Fewest digits a callable number has (the `+` not counted).
    pub min_digits: usize,
    /// Most digits (E.164 allows 15).
    pub max_digits: usize,
}

impl Default for CallbackRules {
    fn default() -> Self {
        CallbackRules {
            allowed_prefixes: Vec::new(),
            blocked_prefixes: [
                "+1900", "1900", "+44871", "+44872", "+44873", "+4490", "0900", "09",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            min_digits: 6,
            max_digits: 15,
        }
    }
}

/// Characters people put in phone numbers to make them readable.
fn is_visual_separator(c: char) -> bool {
    c.is_whitespace() || matches!(c, '-' | '.' | '(' | ')')
}

/// `input` without visual separators, if what is left is an optional `+` and at least one
/// ASCII digit.
fn compact_number(input: &str) -> Option<String> {
    let compact: String = input.chars().filter(|c| !is_visual_separator(*c)).collect();
    let digits = compact.strip_prefix('+').unwrap_or(&compact);
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(compact)
}

impl CallbackRules {
    /// The number as the dialler will use it (`+` and digits only), or why it cannot be
    /// called back.
    pub fn normalise(&self, input: &str) -> Result<String, String> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err("Please enter the number we should call.".to_owned());
        }
        let number = compact_number(trimmed).ok_or_else(|| {
            "A phone number has only digits (and perhaps a + at the start).".to_owned()
        })?;
        let digits = number.trim_start_matches('+').len();
        if digits < self.min_digits {
            return Err(format!(
                "That number is too short: a phone number has at least {} digits.",
                self.min_digits
            ));
        }
        if digits > self.max_digits {
            return Err(format!(
                "That number is too long: a phone number has at most {} digits.",
                self.max_digits
            ));
        }
        let matches = |prefixes: &[String]| {
            prefixes.iter().any(|p| {
                let p = compact_number(p).unwrap_or_else(|| p.clone());
                !p.is_empty() && number.starts_with(&p)
            })
        };
        if matches(&self.blocked_prefixes) {
            return Err("Premium-rate numbers cannot be called back.".to_owned());
        }
        if !self.allowed_prefixes.is_empty() && !matches(&self.allowed_prefixes) {
            return Err("We cannot call that number back; please give another one.".to_owned());
        }
        Ok(number)
    }
}

/// Longest a call-back window may start from now.
pub const WINDOW_MAX_START_SECS: u64 = 7 * 86_400;

/// A call-back window must end after it starts, not be over already, and start within a
/// week.
pub fn check_window(window: &Window, now: Timestamp) -> Result<(), String> {
    if window.not_after <= window.not_before {
        return Err("The latest time must be after the earliest time.".to_owned());
    }
    if window.not_after <= now {
        return Err("That time has already passed.".to_owned());
    }
    if window.not_before >= now.plus_secs(WINDOW_MAX_START_SECS) {
        return Err("We can only book call-backs within the next 7 days.".to_owned());
    }
    Ok(())
}

/// A text field of `min..=max` characters (after trimming), or a message naming `what`.
pub fn check_text(value: &str, what: &str, max: usize) -> Result<String, String> {
    let value = value.trim();
    let chars = value.chars().count();
    if chars == 0 {
        return Err(format!("Please enter {what}."));
    }
    if chars > max {
        return Err(format!(
            "That is too long: {what} may have at most {max} characters (this has {chars})."
        ));
    }
    Ok(value.to_owned())
}

use super::limits::EMAIL_MAX_CHARS as EMAIL_MAX_LEN;

/// A plausible email address: one `@`, something before it, a dotted domain after it, no
/// spaces, at most 254 characters. Deliberately loose: the reply is what proves it.
pub fn check_email(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("Please enter the email address we should reply to.".to_owned());
    }
    let bad = || Err("That does not look like an email address (name@example.com).".to_owned());
    if value.chars().count() > EMAIL_MAX_LEN {
        return Err(format!(
            "That email address is too long (at most {EMAIL_MAX_LEN} characters)."
        ));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad();
    }
    let mut parts = value.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return bad();
    };
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..");
    if local.is_empty() || !domain_ok {
        return bad();
    }
    Ok(value.to_owned())
}

/// The caller's own number from a From or P-Asserted-Identity header value, when the URI's
/// user part is a phone number: `"Alice" <sip:+15550100@host>;tag=x` gives `+15550100`,
/// `<tel:+44 20 7946 0000>` gives `+442079460000`; `sip:alice@host` gives nothing.
pub fn default_callback_number(caller: &str) -> Option<String> {
    let caller = caller.trim();
    // Name-addr: the URI is inside <>; addr-spec: header parameters follow a ';'.
    let uri = match (caller.find('<'), caller.rfind('>')) {
        (Some(open), Some(close)) if open < close => &caller[open + 1..close],
        (Some(_), _) => return None,
        _ => caller.split(';').next().unwrap_or(""),
    };
    let uri = uri.trim();
    let (scheme, rest) = uri.split_once(':')?;
    let user = match scheme.to_ascii_lowercase().as_str() {
        "sip" | "sips" => rest.split_once('@')?.0,
        "tel" => rest,
        _ => return None,
    };
    // User or tel parameters (";phone-context=...", ";isub=...") are not the number.
    let user = user.split(';').next().unwrap_or("");
    let user = percent_decode_spaces(user);
    compact_number(&user)
}

/// `%20` (and `%2D`, `%2E`, `%28`, `%29`) appear in SIP users where a visual separator
/// was meant; other escapes are left alone (and then fail the digit check).
fn percent_decode_spaces(s: &str) -> String {
    let mut out = s.to_owned();
    for (code, ch) in [
        ("%20", " "),
        ("%2D", "-"),
        ("%2E", "."),
        ("%28", "("),
        ("%29", ")"),
    ] {
        out = out
            .replace(code, ch)
            .replace(&code.to_ascii_lowercase(), ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_strips_separators_and_keeps_a_leading_plus() {
        let rules = CallbackRules::default();
        assert_eq!(
            rules.normalise("+1 (555) 010-0100"),
            Ok("+15550100100".into())
        );
        assert_eq!(rules.normalise(" 020.7946.0000 "), Ok("02079460000".into()));
        assert_eq!(
            rules.normalise("+44 20 7946 0000"),
            Ok("+442079460000".into())
        );
    }

    #[test]
    fn normalise_refuses_letters_length_and_premium_rate() {
        let rules = CallbackRules::default();
        for bad in [
            "0800 CALL ME",
            "+1555O100100",
            "++15550100",
            "1+5550100",
            "１２３４５６７",
        ] {
            let e = rules.normalise(bad).expect_err(bad);
            assert!(e.contains("only digits"), "{bad}: {e}");
        }
        assert!(
            rules
                .normalise("12345")
                .expect_err("short")
                .contains("too short")
        );
        assert!(
            rules
                .normalise("+")
                .expect_err("plus")
                .contains("only digits")
        );
        assert!(rules.normalise("  ").expect_err("empty").contains("enter"));
        assert!(
            rules
                .normalise("1234567890123456")
                .expect_err("long")
                .contains("too long")
        );
        assert_eq!(rules.normalise("123456"), Ok("123456".into()));
        for premium in [
            "+1 900 555 0100",
            "1-900-555-0100",
            "+44 871 234 5678",
            "+44 90 1234 5678",
            "0900 123456",
            "09012 345678",
        ] {
            assert_eq!(
                rules.normalise(premium),
                Err("Premium-rate numbers cannot be called back.".into()),
                "{premium}"
            );
        }
        // Close to, but not, a blocked prefix.
        assert!(rules.normalise("+1 800 555 0100").is_ok());
        assert!(rules.normalise("+44 870 234 5678").is_ok());
    }

    #[test]
    fn allowed_prefixes_restrict_when_set() {
        let rules = CallbackRules {
            allowed_prefixes: vec!["+44".into(), "0".into()],
            ..CallbackRules::default()
        };
        assert!(rules.normalise("+44 20 7946 0000").is_ok());
        assert!(rules.normalise("020 7946 0000").is_ok());
        assert!(rules.normalise("+1 555 010 0100").is_err());
    }

    #[test]
    fn windows_must_be_ordered_current_and_within_a_week() {
        let now = Timestamp(1_700_000_000_000);
        let w = |a: u64, b: u64| Window {
            not_before: Timestamp(a),
            not_after: Timestamp(b),
        };
        assert!(check_window(&w(now.0, now.0 + 1), now).is_ok());
        assert!(check_window(&w(now.0 - 1000, now.0 + 1), now).is_ok());
        assert!(check_window(&w(now.0 + 10, now.0 + 10), now).is_err());
        assert!(check_window(&w(now.0 + 10, now.0 + 5), now).is_err());
        assert!(check_window(&w(now.0 - 10, now.0), now).is_err());
        let week = now.plus_secs(WINDOW_MAX_START_SECS).0;
        assert!(check_window(&w(week - 1, week + 1000), now).is_ok());
        assert!(check_window(&w(week, week + 1000), now).is_err());
    }

    #[test]
    fn emails_are_checked_loosely() {
        for good in [
            "a@b.c",
            "first.last+tag@mail.example.com",
            " x@example.org ",
        ] {
            assert_eq!(check_email(good), Ok(good.trim().to_owned()));
        }
        let long = format!("{}@example.com", "a".repeat(250));
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@b@example.com",
            "a@localhost",
            "a b@example.com",
            "a@.example.com",
            "a@example.com.",
            "a@example..com",
            long.as_str(),
        ] {
            assert!(check_email(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn text_fields_have_bounds_in_characters() {
        assert_eq!(check_text("  hi ", "a subject", 5), Ok("hi".into()));
        assert!(check_text("   ", "a subject", 5).is_err());
        assert!(check_text("ééééé", "a subject", 5).is_ok());
        assert!(check_text("éééééé", "a subject", 5).is_err());
    }

    #[test]
    fn caller_numbers_come_from_the_uri_user_part() {
        let cases = [
            ("\"Alice\" <sip:+15550100@host>;tag=x", Some("+15550100")),
            ("<tel:+44 20 7946 0000>", Some("+442079460000")),
            ("tel:+44-20-7946-0000;tag=1", Some("+442079460000")),
            ("sip:02079460000@pbx.example;tag=abc", Some("02079460000")),
            (
                "<sips:+1(555)0100@host:5061;transport=tls>",
                Some("+15550100"),
            ),
            ("<sip:+15550100;npdi@host>", Some("+15550100")),
            ("<sip:+44%2020%207946%200000@host>", Some("+442079460000")),
            (
                "<tel:+15550100;phone-context=example.com>",
                Some("+15550100"),
            ),
            ("\"Bob\" <sip:bob@example.test>;tag=1", None),
            ("<sip:anonymous@anonymous.invalid>", None),
            ("sip:host.example", None),
            ("<mailto:a@b.c>", None),
            ("<sip:+1555x0100@host>", None),
            ("", None),
            ("\"Broken <sip:+15550100@host", None),
        ];
        for (caller, want) in cases {
            assert_eq!(default_callback_number(caller).as_deref(), want, "{caller}");
        }
    }
}
