//! Checking what a caller types into a command form: call-back numbers (with the
//! operator's prefix rules), call-back windows, email addresses and text fields; and the
//! caller's own number as the call-back default.
//!
//! Every refusal is a typed [`Problem`]; the page puts it in words beside the field.

use serde::{Deserialize, Serialize};

use super::command::{Problem, Window};
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
    pub fn normalise(&self, input: &str) -> Result<String, Problem> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(Problem::Missing);
        }
        let number = compact_number(trimmed).ok_or(Problem::NotANumber)?;
        let digits = number.trim_start_matches('+').len();
        if digits < self.min_digits {
            return Err(Problem::TooFewDigits {
                min: self.min_digits,
            });
        }
        if digits > self.max_digits {
            return Err(Problem::TooManyDigits {
                max: self.max_digits,
            });
        }
        let matches = |prefixes: &[String]| {
            prefixes.iter().any(|p| {
                let p = compact_number(p).unwrap_or_else(|| p.clone());
                !p.is_empty() && number.starts_with(&p)
            })
        };
        if matches(&self.blocked_prefixes) {
            return Err(Problem::PremiumRate);
        }
        if !self.allowed_prefixes.is_empty() && !matches(&self.allowed_prefixes) {
            return Err(Problem::NotCallable);
        }
        Ok(number)
    }
}

/// Longest a call-back window may start from now.
pub const WINDOW_MAX_START_SECS: u64 = 7 * 86_400;

/// A call-back window must end after it starts, not be over already, and start within a
/// week.
pub fn check_window(window: &Window, now: Timestamp) -> Result<(), Problem> {
    if window.not_after <= window.not_before {
        return Err(Problem::WindowBackwards);
    }
    if window.not_after <= now {
        return Err(Problem::WindowPassed);
    }
    if window.not_before >= now.plus_secs(WINDOW_MAX_START_SECS) {
        return Err(Problem::WindowTooFar {
            days: WINDOW_MAX_START_SECS / 86_400,
        });
    }
    Ok(())
}

/// A text field of 1 to `max` characters (after trimming), trimmed.
pub fn check_text(value: &str, max: usize) -> Result<String, Problem> {
    let value = value.trim();
    let chars = value.chars().count();
    if chars == 0 {
        return Err(Problem::Missing);
    }
    if chars > max {
        return Err(Problem::TooLong { max, len: chars });
    }
    Ok(value.to_owned())
}

use super::limits::EMAIL_MAX_CHARS as EMAIL_MAX_LEN;

/// A plausible email address: one `@`, something before it, a dotted domain after it, no
/// spaces, at most 254 characters. Deliberately loose: the reply is what proves it.
pub fn check_email(value: &str) -> Result<String, Problem> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Problem::Missing);
    }
    let bad = || Err(Problem::NotAnEmail);
    let len = value.chars().count();
    if len > EMAIL_MAX_LEN {
        return Err(Problem::TooLong {
            max: EMAIL_MAX_LEN,
            len,
        });
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
    // Most numbers have no escapes: skip the ten replacements (they were ~5 % of a status
    // page's CPU, since every status compiles the caller's number).
    if !s.contains('%') {
        return out;
    }
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
            assert_eq!(rules.normalise(bad), Err(Problem::NotANumber), "{bad}");
        }
        assert_eq!(
            rules.normalise("12345"),
            Err(Problem::TooFewDigits { min: 6 })
        );
        assert_eq!(rules.normalise("+"), Err(Problem::NotANumber));
        assert_eq!(rules.normalise("  "), Err(Problem::Missing));
        assert_eq!(
            rules.normalise("1234567890123456"),
            Err(Problem::TooManyDigits { max: 15 })
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
                Err(Problem::PremiumRate),
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
        assert_eq!(check_text("  hi ", 5), Ok("hi".into()));
        assert!(check_text("   ", 5).is_err());
        assert!(check_text("ééééé", 5).is_ok());
        assert!(check_text("éééééé", 5).is_err());
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
