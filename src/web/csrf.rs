//! CSRF tokens: HMAC-SHA256 over a random per-browser session id and the contact number,
//! keyed by the server secret. A form or API call that changes something must carry the
//! token of its own session and contact; a page on another site cannot read it.

use hmac::{KeyInit, Mac};
use rand::Rng;
use sha2::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "hl_session";

/// Length of a session id in hex digits (128 random bits).
const SESSION_LEN: usize = 32;

/// A fresh random session id.
pub fn new_session() -> String {
    let bytes: [u8; SESSION_LEN / 2] = rand::rng().random();
    hex::encode(bytes)
}

/// The session id if `value` looks like one we issued (anything else is ignored).
pub fn valid_session(value: &str) -> Option<&str> {
    (value.len() == SESSION_LEN && value.bytes().all(|b| b.is_ascii_hexdigit())).then_some(value)
}

/// The `Set-Cookie` value for a session.
pub fn session_cookie(session: &str) -> String {
    format!("{SESSION_COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/")
}

/// The session id in a `Cookie` header, if any.
pub fn session_from_cookies(header: &str) -> Option<&str> {
    header.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == SESSION_COOKIE)
            .then_some(value)
            .and_then(valid_session)
    })
}

fn mac(secret: &[u8; 32], session: &str, contact: &str) -> HmacSha256 {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(session.as_bytes());
    mac.update(b"\0");
    mac.update(contact.as_bytes());
    mac
}

/// The token for `session` and `contact` ("" for the entry form).
pub fn token(secret: &[u8; 32], session: &str, contact: &str) -> String {
    hex::encode(mac(secret, session, contact).finalize().into_bytes())
}

/// Constant-time check of a token.
pub fn verify(secret: &[u8; 32], session: &str, contact: &str, token: &str) -> bool {
    let Some(bytes) = hex::decode(token).ok() else {
        return false;
    };
    mac(secret, session, contact).verify_slice(&bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; 32] = [7; 32];

    #[test]
    fn a_token_verifies_for_its_session_and_contact_only() {
        let s = new_session();
        assert!(valid_session(&s).is_some());
        let t = token(&SECRET, &s, "123456789012");
        assert_eq!(t.len(), 64);
        assert!(verify(&SECRET, &s, "123456789012", &t));
        assert!(!verify(&SECRET, &s, "123456789013", &t), "other contact");
        assert!(
            !verify(&SECRET, &new_session(), "123456789012", &t),
            "other session"
        );
        assert!(!verify(&[8; 32], &s, "123456789012", &t), "other secret");
    }

    #[test]
    fn forged_tokens_fail() {
        let s = new_session();
        let t = token(&SECRET, &s, "c");
        let mut flipped = t.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        for forged in ["", "00", &t[..62], &flipped, &format!("{t}00"), "zz", "é"] {
            assert!(!verify(&SECRET, &s, "c", forged), "{forged:?} accepted");
        }
        // Session and contact cannot be shifted into each other.
        assert_ne!(token(&SECRET, "ab", "c"), token(&SECRET, "a", "bc"));
    }

    #[test]
    fn cookies_are_parsed_and_checked() {
        let s = new_session();
        let header = format!("x=1; {SESSION_COOKIE}={s}; y=2");
        assert_eq!(session_from_cookies(&header), Some(s.as_str()));
        assert_eq!(session_from_cookies("hl_session=short"), None);
        assert_eq!(session_from_cookies("other=1"), None);
        assert!(session_cookie(&s).contains("HttpOnly; SameSite=Strict; Path=/"));
    }
}
