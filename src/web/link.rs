//! The caller's link: the Call-Info URL in the 200 OK carries a token that proves it came
//! from us, so opening it never spends the guessing budget (`limit.rs`).
//!
//! The token is the first 64 bits of HMAC-SHA256(key, "contact-link" ‖ number), hex. It can
//! be checked without looking the contact up (so a wrong token is no oracle) and cannot be
//! made without the key. The key is 32 random bytes in `DATA/link.key` (mode 0600), made at
//! the first start, so links survive restarts. Whoever has a caller's link has their page
//! anyway; the token only lets them skip the limits that slow down guessing *numbers*.
//!
//! A browser that opened a contact (by link or by a lookup that found it) is remembered as
//! having proven that number (`Shared::prove`), so the page's own requests (live events,
//! commands) do not spend the budget either.

use std::io::{self, Read, Write};
use std::path::Path;

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::centre::ContactId;

const KEY_FILE: &str = "link.key";

/// The key of the caller links' tokens.
#[derive(Clone)]
pub struct LinkKey([u8; 32]);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(..)")
    }
}

impl LinkKey {
    /// Reads `dir/link.key`, or makes it (32 random bytes, mode 0600) if there is none.
    pub fn load_or_create(dir: &Path) -> io::Result<LinkKey> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(KEY_FILE);
        match std::fs::File::open(&path) {
            Ok(mut f) => {
                let mut key = [0u8; 32];
                f.read_exact(&mut key).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("{} is not a 32-byte key: {e}", path.display()),
                    )
                })?;
                Ok(LinkKey(key))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut f = options.open(&path)?;
                f.write_all(&key)?;
                f.sync_all()?;
                Ok(LinkKey(key))
            }
            Err(e) => Err(e),
        }
    }

    /// A key for tests and tools that keep no data directory.
    pub fn random() -> LinkKey {
        LinkKey(rand::random())
    }

    /// A known key, for tests that make tokens themselves.
    #[cfg(test)]
    pub(crate) fn fixed(key: [u8; 32]) -> LinkKey {
        LinkKey(key)
    }

    fn mac(&self, id: &ContactId) -> [u8; 8] {
        let mut mac =
            <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("any key length");
        mac.update(b"contact-link\0");
        mac.update(id.as_str().as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 8];
        out.copy_from_slice(&full[..8]);
        out
    }

    /// The token of `id`'s link.
    pub fn token(&self, id: &ContactId) -> String {
        hex::encode(self.mac(id))
    }

    /// Whether `token` is `id`'s (in constant time).
    pub fn verify(&self, id: &ContactId, token: &str) -> bool {
        let Ok(given) = hex::decode(token) else {
            return false;
        };
        let want = self.mac(id);
        given.len() == want.len()
            && given
                .iter()
                .zip(want.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// The `k` parameter of a raw query string, if any.
pub fn token_in(query: Option<&str>) -> Option<&str> {
    query?.split('&').find_map(|p| p.strip_prefix("k="))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::TempDir;

    #[test]
    fn a_token_verifies_for_its_number_only_and_the_key_survives_a_restart() {
        let dir = TempDir::new("link-key");
        let key = LinkKey::load_or_create(dir.path()).expect("made");
        let id: ContactId = ContactId::random(&mut rand::rng());
        let other: ContactId = ContactId::random(&mut rand::rng());
        let t = key.token(&id);
        assert_eq!(t.len(), 16);
        assert!(key.verify(&id, &t));
        assert!(!key.verify(&other, &t));
        assert!(!key.verify(&id, "00000000000000zz"));
        assert!(!key.verify(&id, &t[..15]));
        let again = LinkKey::load_or_create(dir.path()).expect("read back");
        assert!(again.verify(&id, &t), "the same key after a restart");
        assert!(!LinkKey::random().verify(&id, &t), "another key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .expect("file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "not readable by others");
        }
    }

    #[test]
    fn the_token_is_found_among_other_query_parameters() {
        assert_eq!(token_in(Some("k=abc")), Some("abc"));
        assert_eq!(token_in(Some("x=1&k=abc&y=2")), Some("abc"));
        assert_eq!(token_in(Some("kk=abc")), None);
        assert_eq!(token_in(None), None);
    }
}
