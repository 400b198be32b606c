//! AWS Signature Version 4, the parts object_store does not expose: the signing key, a header
//! signer for the few bucket-admin requests of [`super::S3Store::setup`], a query-string
//! presigner (synchronous, for [`crate::ObjectStore::presign_get`]) and the POST-policy signature.
//!
//! Checked against the worked examples of AWS's documentation (see the tests).

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// SHA-256 of the empty body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// The only algorithm we sign with.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Static credentials used for signing. `Debug` never shows the secret or the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Access key id (not secret; appears in every signed request).
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any size"),
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `yyyymmdd` of a signing time.
pub fn date_stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%d").to_string()
}

/// `yyyymmddThhmmssZ` of a signing time.
pub fn amz_date(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// `{date}/{region}/{service}/aws4_request`.
pub fn scope(t: DateTime<Utc>, region: &str, service: &str) -> String {
    format!("{}/{region}/{service}/aws4_request", date_stamp(t))
}

/// `AWS4{secret}` → date → region → service → `aws4_request`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// Hex HMAC of `string_to_sign` with a derived signing key.
pub fn signature(key: &[u8; 32], string_to_sign: &str) -> String {
    hex::encode(hmac(key, string_to_sign.as_bytes()))
}

/// SigV4 URI encoding: every byte except `A-Za-z0-9-._~` as `%XX`; `/` kept when `keep_slash`.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// One request to sign.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// `GET`, `PUT`, …
    pub method: &'a str,
    /// The path, not yet encoded (`/bucket/key` or `/key`).
    pub path: &'a str,
    /// Query parameters, not yet encoded (`("lifecycle", "")` for `?lifecycle`).
    pub query: &'a [(&'a str, &'a str)],
    /// Headers to sign besides `x-amz-date`, `x-amz-content-sha256` and the token; must include
    /// `host`.
    pub headers: &'a [(&'a str, &'a str)],
    /// Hex SHA-256 of the body (or `UNSIGNED-PAYLOAD`).
    pub payload_sha256: &'a str,
}

/// The headers to send (besides the caller's own) and the pieces, for tests.
#[derive(Debug, Clone)]
pub struct SignedHeaders {
    /// `(name, value)` pairs to add: `x-amz-date`, `x-amz-content-sha256`,
    /// `x-amz-security-token` (if any) and `authorization`.
    pub add: Vec<(String, String)>,
    /// The canonical query string, which is also what the URL must carry.
    pub canonical_query: String,
    /// The hex signature.
    pub signature: String,
}

/// Signs a request with an `Authorization` header.
pub fn sign_headers(
    creds: &Credentials,
    region: &str,
    req: &Request<'_>,
    now: DateTime<Utc>,
) -> SignedHeaders {
    let date = amz_date(now);
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), collapse_spaces(v)))
        .collect();
    headers.push(("x-amz-content-sha256".into(), req.payload_sha256.into()));
    headers.push(("x-amz-date".into(), date.clone()));
    if let Some(token) = &creds.session_token {
        headers.push(("x-amz-security-token".into(), token.clone()));
    }
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let canonical_query = canonical_query(req.query);
    let canonical_request = format!(
        "{}\n{}\n{canonical_query}\n{canonical_headers}\n{signed}\n{}",
        req.method,
        uri_encode(req.path, true),
        req.payload_sha256
    );
    let scope = scope(now, region, "s3");
    let string_to_sign = format!(
        "{ALGORITHM}\n{date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let key = signing_key(&creds.secret_access_key, &date_stamp(now), region, "s3");
    let sig = signature(&key, &string_to_sign);
    let mut add = vec![
        ("x-amz-date".to_owned(), date),
        (
            "x-amz-content-sha256".to_owned(),
            req.payload_sha256.to_owned(),
        ),
    ];
    if let Some(token) = &creds.session_token {
        add.push(("x-amz-security-token".to_owned(), token.clone()));
    }
    add.push((
        "authorization".to_owned(),
        format!(
            "{ALGORITHM} Credential={}/{scope},SignedHeaders={signed},Signature={sig}",
            creds.access_key_id
        ),
    ));
    SignedHeaders {
        add,
        canonical_query,
        signature: sig,
    }
}

fn collapse_spaces(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Where a presigned URL points.
#[derive(Debug, Clone, Copy)]
pub struct UrlTarget<'a> {
    /// Scheme and authority, e.g. `https://bucket.s3.amazonaws.com`.
    pub origin: &'a str,
    /// The `Host` header the client will send (authority with a non-default port).
    pub host: &'a str,
    /// The path, not yet encoded: `/key` or `/bucket/key`.
    pub path: &'a str,
}

/// A presigned URL (query-string authentication) for `method` on `target`, valid for
/// `expires_secs` seconds from `now`.
pub fn presign_url(
    creds: &Credentials,
    region: &str,
    method: &str,
    target: UrlTarget<'_>,
    expires_secs: u64,
    now: DateTime<Utc>,
) -> String {
    presign_url_with(creds, region, method, target, expires_secs, now, &[])
}

/// [`presign_url`] with extra signed query parameters (`response-content-disposition`, …).
pub fn presign_url_with(
    creds: &Credentials,
    region: &str,
    method: &str,
    target: UrlTarget<'_>,
    expires_secs: u64,
    now: DateTime<Utc>,
    extra: &[(&str, &str)],
) -> String {
    let date = amz_date(now);
    let scope = scope(now, region, "s3");
    let credential = format!("{}/{scope}", creds.access_key_id);
    let expires = expires_secs.to_string();
    let mut query: Vec<(&str, &str)> = vec![
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", &credential),
        ("X-Amz-Date", &date),
        ("X-Amz-Expires", &expires),
        ("X-Amz-SignedHeaders", "host"),
    ];
    if let Some(token) = &creds.session_token {
        query.push(("X-Amz-Security-Token", token));
    }
    query.extend_from_slice(extra);
    let canonical_query = canonical_query(&query);
    let encoded_path = uri_encode(target.path, true);
    let host = target.host;
    let canonical_request = format!(
        "{method}\n{encoded_path}\n{canonical_query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD"
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let key = signing_key(&creds.secret_access_key, &date_stamp(now), region, "s3");
    let sig = signature(&key, &string_to_sign);
    format!(
        "{}{encoded_path}?{canonical_query}&X-Amz-Signature={sig}",
        target.origin
    )
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;

    // The credentials, host and time of AWS's SigV4 examples for S3 ("Examples: Signature
    // Calculations in AWS Signature Version 4" and "Authenticating Requests: Using Query
    // Parameters").
    fn aws() -> Credentials {
        Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }
    const HOST: &str = "examplebucket.s3.amazonaws.com";
    fn may24() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2013, 5, 24, 0, 0, 0).unwrap()
    }

    #[test]
    fn aws_example_get_object_with_range() {
        let s = sign_headers(
            &aws(),
            "us-east-1",
            &Request {
                method: "GET",
                path: "/test.txt",
                query: &[],
                headers: &[("Host", HOST), ("Range", "bytes=0-9")],
                payload_sha256: EMPTY_SHA256,
            },
            may24(),
        );
        assert_eq!(
            s.signature,
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        let auth = &s.add.last().unwrap().1;
        assert!(auth.contains("SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"));
    }

    #[test]
    fn aws_example_put_object() {
        let body = b"Welcome to Amazon S3.";
        let sha = sha256_hex(body);
        assert_eq!(
            sha,
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
        );
        let s = sign_headers(
            &aws(),
            "us-east-1",
            &Request {
                method: "PUT",
                path: "/test$file.text",
                query: &[],
                headers: &[
                    ("Host", HOST),
                    ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                    ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                ],
                payload_sha256: &sha,
            },
            may24(),
        );
        assert_eq!(
            s.signature,
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
    }

    #[test]
    fn aws_example_get_bucket_lifecycle() {
        let s = sign_headers(
            &aws(),
            "us-east-1",
            &Request {
                method: "GET",
                path: "/",
                query: &[("lifecycle", "")],
                headers: &[("host", HOST)],
                payload_sha256: EMPTY_SHA256,
            },
            may24(),
        );
        assert_eq!(s.canonical_query, "lifecycle=");
        assert_eq!(
            s.signature,
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        );
    }

    #[test]
    fn aws_example_list_objects_sorts_query() {
        let s = sign_headers(
            &aws(),
            "us-east-1",
            &Request {
                method: "GET",
                path: "/",
                query: &[("prefix", "J"), ("max-keys", "2")],
                headers: &[("host", HOST)],
                payload_sha256: EMPTY_SHA256,
            },
            may24(),
        );
        assert_eq!(
            s.signature,
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn aws_example_presigned_get() {
        let url = presign_url(
            &aws(),
            "us-east-1",
            "GET",
            UrlTarget {
                origin: "https://examplebucket.s3.amazonaws.com",
                host: HOST,
                path: "/test.txt",
            },
            86400,
            may24(),
        );
        assert_eq!(
            url,
            "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    #[test]
    fn debug_redacts_secrets() {
        let mut c = aws();
        c.session_token = Some("TOKEN-SECRET".into());
        let d = format!("{c:?}");
        assert!(d.contains("AKIAIOSFODNN7EXAMPLE"));
        assert!(!d.contains("wJalr"));
        assert!(!d.contains("TOKEN-SECRET"));
    }

    #[test]
    fn uri_encoding() {
        assert_eq!(uri_encode("a b/c~d+é", true), "a%20b/c~d%2B%C3%A9");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
    }
}
