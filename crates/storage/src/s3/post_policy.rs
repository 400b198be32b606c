//! SigV4 POST policies: the browser-form upload that, unlike a presigned PUT, can cap the size
//! (`content-length-range`) and pin the key and content type.
//!
//! The policy is JSON, sent base64-encoded in the `policy` field; the signature is the hex
//! HMAC-SHA256 of that base64 text under the SigV4 signing key
//! ("Browser-Based Uploads Using POST (AWS Signature Version 4)").

use std::collections::BTreeMap;

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::sigv4::{self, ALGORITHM, Credentials};

/// What a POST upload must respect.
#[derive(Debug, Clone)]
pub struct PostPolicyInput<'a> {
    /// The bucket's name.
    pub bucket: &'a str,
    /// The exact key.
    pub key: &'a str,
    /// The exact `Content-Type`.
    pub content_type: &'a str,
    /// The largest body, in bytes (the smallest is 1).
    pub max_bytes: u64,
    /// When the policy stops working.
    pub expires_at: DateTime<Utc>,
    /// The status S3 answers a successful upload with: 201 (XML body) or 204 (empty).
    pub success_status: u16,
}

/// A signed policy: the form fields to send before the `file` part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPost {
    /// The base64 policy (also in `fields["policy"]`).
    pub policy_b64: String,
    /// Every form field, in no particular order (S3 reads them all before the file).
    pub fields: BTreeMap<String, String>,
}

/// The policy document. Separate from signing so tests can look at it.
pub fn policy_json(
    input: &PostPolicyInput<'_>,
    creds: &Credentials,
    region: &str,
    now: DateTime<Utc>,
) -> Value {
    let mut conditions = vec![
        json!({"bucket": input.bucket}),
        json!(["eq", "$key", input.key]),
        json!(["eq", "$Content-Type", input.content_type]),
        json!(["content-length-range", 1, input.max_bytes]),
        json!({"success_action_status": input.success_status.to_string()}),
        json!({"x-amz-algorithm": ALGORITHM}),
        json!({"x-amz-credential": credential(creds, region, now)}),
        json!({"x-amz-date": sigv4::amz_date(now)}),
    ];
    if let Some(token) = &creds.session_token {
        conditions.push(json!({"x-amz-security-token": token}));
    }
    json!({
        "expiration": input.expires_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "conditions": conditions,
    })
}

fn credential(creds: &Credentials, region: &str, now: DateTime<Utc>) -> String {
    format!(
        "{}/{}",
        creds.access_key_id,
        sigv4::scope(now, region, "s3")
    )
}

/// Hex signature of a base64 policy: HMAC-SHA256 under the SigV4 key of `date` (yyyymmdd).
pub fn signature_of(policy_b64: &str, secret: &str, date: &str, region: &str) -> String {
    sigv4::signature(&sigv4::signing_key(secret, date, region, "s3"), policy_b64)
}

/// Builds and signs a policy; returns the fields a client sends before the file.
pub fn sign(
    input: &PostPolicyInput<'_>,
    creds: &Credentials,
    region: &str,
    now: DateTime<Utc>,
) -> SignedPost {
    let credential = credential(creds, region, now);
    let policy = policy_json(input, creds, region, now);
    let policy_b64 = base64::engine::general_purpose::STANDARD.encode(policy.to_string());
    let sig = signature_of(
        &policy_b64,
        &creds.secret_access_key,
        &sigv4::date_stamp(now),
        region,
    );
    let mut fields = BTreeMap::new();
    fields.insert("key".to_owned(), input.key.to_owned());
    fields.insert("Content-Type".to_owned(), input.content_type.to_owned());
    fields.insert(
        "success_action_status".to_owned(),
        input.success_status.to_string(),
    );
    fields.insert("policy".to_owned(), policy_b64.clone());
    fields.insert("x-amz-algorithm".to_owned(), ALGORITHM.to_owned());
    fields.insert("x-amz-credential".to_owned(), credential);
    fields.insert("x-amz-date".to_owned(), sigv4::amz_date(now));
    fields.insert("x-amz-signature".to_owned(), sig);
    if let Some(token) = &creds.session_token {
        fields.insert("x-amz-security-token".to_owned(), token.clone());
    }
    SignedPost { policy_b64, fields }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;

    /// The base64 policy of AWS's "Example: Browser-Based Upload using HTTP POST (Using AWS
    /// Signature Version 4)": 648 bytes of JSON with CRLF line ends, signed on 2015-12-29 in
    /// us-east-1 with the documentation's example keys.
    const AWS_POLICY_B64: &str = concat!(
        "eyAiZXhwaXJhdGlvbiI6ICIyMDE1LTEyLTMwVDEyOjAwOjAwLjAwMFoiLA0KICAiY29uZGl0aW9ucyI6IFsNCiAgICB7ImJ1Y2tldCI6ICJza",
        "Wd2NGV4YW1wbGVidWNrZXQifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRrZXkiLCAidXNlci91c2VyMS8iXSwNCiAgICB7ImFjbCI6ICJwdW",
        "JsaWMtcmVhZCJ9LA0KICAgIHsic3VjY2Vzc19hY3Rpb25fcmVkaXJlY3QiOiAiaHR0cDovL3NpZ3Y0ZXhhbXBsZWJ1Y2tldC5zMy5hbWF6b25",
        "hd3MuY29tL3N1Y2Nlc3NmdWxfdXBsb2FkLmh0bWwifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRDb250ZW50LVR5cGUiLCAiaW1hZ2UvIl0s",
        "DQogICAgeyJ4LWFtei1tZXRhLXV1aWQiOiAiMTQzNjUxMjM2NTEyNzQifSwNCiAgICB7IngtYW16LXNlcnZlci1zaWRlLWVuY3J5cHRpb24iO",
        "iAiQUVTMjU2In0sDQogICAgWyJzdGFydHMtd2l0aCIsICIkeC1hbXotbWV0YS10YWciLCAiIl0sDQoNCiAgICB7IngtYW16LWNyZWRlbnRpYW",
        "wiOiAiQUtJQUlPU0ZPRE5ON0VYQU1QTEUvMjAxNTEyMjkvdXMtZWFzdC0xL3MzL2F3czRfcmVxdWVzdCJ9LA0KICAgIHsieC1hbXotYWxnb3J",
        "pdGhtIjogIkFXUzQtSE1BQy1TSEEyNTYifSwNCiAgICB7IngtYW16LWRhdGUiOiAiMjAxNTEyMjlUMDAwMDAwWiIgfQ0KICBdDQp9",
    );
    const AWS_SIGNATURE: &str = "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e";
    const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    #[test]
    fn reproduces_the_aws_worked_example() {
        let policy = base64::engine::general_purpose::STANDARD
            .decode(AWS_POLICY_B64)
            .unwrap();
        assert_eq!(policy.len(), 648);
        let text = String::from_utf8(policy).unwrap();
        assert!(text.starts_with("{ \"expiration\": \"2015-12-30T12:00:00.000Z\",\r\n"));
        assert!(text.contains(
            "{\"x-amz-credential\": \"AKIAIOSFODNN7EXAMPLE/20151229/us-east-1/s3/aws4_request\"}"
        ));
        assert_eq!(
            signature_of(AWS_POLICY_B64, AWS_SECRET, "20151229", "us-east-1"),
            AWS_SIGNATURE
        );
        // One changed byte of the policy or of the scope changes the signature.
        let mut other = AWS_POLICY_B64.to_owned();
        other.replace_range(0..1, "f");
        assert_ne!(
            signature_of(&other, AWS_SECRET, "20151229", "us-east-1"),
            AWS_SIGNATURE
        );
        assert_ne!(
            signature_of(AWS_POLICY_B64, AWS_SECRET, "20151230", "us-east-1"),
            AWS_SIGNATURE
        );
    }

    fn creds(token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: AWS_SECRET.into(),
            session_token: token.map(str::to_owned),
        }
    }

    #[test]
    fn policy_pins_key_type_size_and_credential() {
        let now = Utc.with_ymd_and_hms(2015, 12, 29, 0, 0, 0).unwrap();
        let input = PostPolicyInput {
            bucket: "raw-bucket",
            key: "tenants/t1/uploads/u1",
            content_type: "image/jpeg",
            max_bytes: 5_000_000,
            expires_at: now + chrono::Duration::minutes(5),
            success_status: 204,
        };
        let signed = sign(&input, &creds(Some("SESSION")), "eu-west-1", now);
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&signed.policy_b64)
            .unwrap();
        let policy: Value = serde_json::from_slice(&decoded).unwrap();
        assert_eq!(policy["expiration"], "2015-12-29T00:05:00.000Z");
        let conds = policy["conditions"].as_array().unwrap();
        let has = |v: Value| conds.contains(&v);
        assert!(has(json!({"bucket": "raw-bucket"})));
        assert!(has(json!(["eq", "$key", "tenants/t1/uploads/u1"])));
        assert!(has(json!(["eq", "$Content-Type", "image/jpeg"])));
        assert!(has(json!(["content-length-range", 1, 5_000_000])));
        assert!(has(json!({"success_action_status": "204"})));
        assert!(has(json!({"x-amz-algorithm": "AWS4-HMAC-SHA256"})));
        assert!(has(json!({
            "x-amz-credential": "AKIAIOSFODNN7EXAMPLE/20151229/eu-west-1/s3/aws4_request"
        })));
        assert!(has(json!({"x-amz-date": "20151229T000000Z"})));
        assert!(has(json!({"x-amz-security-token": "SESSION"})));
        assert_eq!(conds.len(), 9);
        let f = &signed.fields;
        assert_eq!(f["policy"], signed.policy_b64);
        assert_eq!(f["key"], "tenants/t1/uploads/u1");
        assert_eq!(f["Content-Type"], "image/jpeg");
        assert_eq!(f["x-amz-security-token"], "SESSION");
        assert_eq!(
            f["x-amz-signature"],
            signature_of(&signed.policy_b64, AWS_SECRET, "20151229", "eu-west-1")
        );
        assert!(!f.values().any(|v| v.contains("wJalr")));
        let no_token = sign(&input, &creds(None), "eu-west-1", now);
        assert!(!no_token.fields.contains_key("x-amz-security-token"));
        assert!(!no_token.policy_b64.is_empty());
    }
}
