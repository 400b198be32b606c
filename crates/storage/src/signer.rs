//! HMAC-SHA256 URL signatures for the local adapter's upload and download URLs.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Signs and verifies a list of fields with a server secret. Fields are joined with `\n`, which
/// none of the signed values may contain (keys, ids and MIME types never do).
#[derive(Clone)]
pub struct UrlSigner {
    secret: Vec<u8>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner(<secret>)")
    }
}

impl UrlSigner {
    /// A signer with the given secret (at least 32 bytes recommended).
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self {
            secret: secret.into(),
        }
    }

    fn mac(&self, fields: &[&str]) -> HmacSha256 {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = match HmacSha256::new_from_slice(&self.secret) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any size"),
        };
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                mac.update(b"\n");
            }
            mac.update(f.as_bytes());
        }
        mac
    }

    /// Hex signature over `fields`.
    pub fn sign(&self, fields: &[&str]) -> String {
        hex::encode(self.mac(fields).finalize().into_bytes())
    }

    /// Constant-time check of a hex signature.
    pub fn verify(&self, fields: &[&str], signature: &str) -> bool {
        match hex::decode(signature) {
            Ok(sig) => self.mac(fields).verify_slice(&sig).is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies() {
        let s = UrlSigner::new(b"k".repeat(32));
        let sig = s.sign(&["GET", "processed", "a/b", "123"]);
        assert!(s.verify(&["GET", "processed", "a/b", "123"], &sig));
        assert!(!s.verify(&["GET", "processed", "a/b", "124"], &sig));
        assert!(!s.verify(&["GET", "processed", "a/b", "123"], "zz"));
        assert!(
            !UrlSigner::new(b"other".to_vec()).verify(&["GET", "processed", "a/b", "123"], &sig)
        );
        let mut tampered = sig.clone();
        tampered.replace_range(0..1, if sig.starts_with('0') { "1" } else { "0" });
        assert!(!s.verify(&["GET", "processed", "a/b", "123"], &tampered));
    }
}
