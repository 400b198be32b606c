//! JWT bearer tokens, black-box: HS256 with a shared secret, RS256 and ES256 against a JWKS served
//! by a small HTTP server inside the test (keys made with the `openssl` CLI at test time).
//! Valid, expired, wrong signature, wrong audience and issuer, wrong scope, refused role, tenant
//! isolation, refresh on an unknown `kid`, and a key withdrawn from the JWKS.
#![expect(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::{Opts, Server, expect_problem, tempdir};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "jwt-test-shared-secret-0123456789abcdef";
const ISS: &str = "https://auth.example.test/auth/v1";
const AUD: &str = "authenticated";

fn now() -> i64 {
    chrono_now()
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Supabase-shaped claims: `sub`, `role`, and the tenant in `app_metadata`.
fn claims(tenant: &str, scope: Option<&str>) -> Value {
    let mut c = json!({
        "iss": ISS, "aud": AUD, "sub": "5d3c0b6e-1111-4a7b-9c1d-2e3f4a5b6c7d",
        "role": "authenticated", "exp": now() + 600, "iat": now(),
        "app_metadata": {"tenant_id": tenant, "provider": "email"},
        "user_metadata": {"name": "Test"}
    });
    if let Some(s) = scope {
        c["scope"] = json!(s);
    }
    c
}

fn hs(c: &Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        c,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn openssl(args: &[&str], dir: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A signing key and its public JWK.
struct TestKey {
    enc: EncodingKey,
    alg: Algorithm,
    jwk: Value,
}

fn rsa_key(dir: &Path, kid: &str) -> TestKey {
    let pem = format!("{kid}.pem");
    let der = format!("{kid}.der");
    openssl(&["genrsa", "-out", &pem, "2048"], dir);
    openssl(
        &[
            "rsa",
            "-in",
            &pem,
            "-traditional",
            "-outform",
            "DER",
            "-out",
            &der,
        ],
        dir,
    );
    let modulus =
        String::from_utf8(openssl(&["rsa", "-in", &pem, "-noout", "-modulus"], dir)).unwrap();
    let hex = modulus.trim().strip_prefix("Modulus=").unwrap();
    let n: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    TestKey {
        enc: EncodingKey::from_rsa_der(&std::fs::read(dir.join(&der)).unwrap()),
        alg: Algorithm::RS256,
        jwk: json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": B64.encode(n), "e": "AQAB"}),
    }
}

fn ec_key(dir: &Path, kid: &str) -> TestKey {
    let pem = format!("{kid}.pem");
    let p8 = format!("{kid}.p8");
    let public = format!("{kid}.pub");
    openssl(
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &pem,
        ],
        dir,
    );
    openssl(
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", &pem, "-outform", "DER", "-out", &p8,
        ],
        dir,
    );
    openssl(
        &[
            "ec", "-in", &pem, "-pubout", "-outform", "DER", "-out", &public,
        ],
        dir,
    );
    let spki = std::fs::read(dir.join(&public)).unwrap();
    // The uncompressed point 04 || x || y ends the SubjectPublicKeyInfo.
    let point = &spki[spki.len() - 65..];
    assert_eq!(point[0], 4);
    TestKey {
        enc: EncodingKey::from_ec_der(&std::fs::read(dir.join(&p8)).unwrap()),
        alg: Algorithm::ES256,
        jwk: json!({"kty": "EC", "kid": kid, "use": "sig", "crv": "P-256",
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..])}),
    }
}

fn sign(k: &TestKey, kid: &str, c: &Value) -> String {
    let mut h = Header::new(k.alg);
    h.kid = Some(kid.into());
    encode(&h, c, &k.enc).unwrap()
}

/// A JWKS endpoint: serves whatever `keys` holds, counting fetches.
struct Jwks {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

async fn jwks_server() -> Jwks {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    let keys: Arc<Mutex<Vec<Value>>> = Arc::default();
    let fetches: Arc<AtomicUsize> = Arc::default();
    let (k, f) = (keys.clone(), fetches.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let (k, f) = (k.clone(), f.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let Ok(n) = sock.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                f.fetch_add(1, Ordering::SeqCst);
                let body = json!({"keys": *k.lock().unwrap()}).to_string();
                let res = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(res.as_bytes()).await;
            });
        }
    });
    Jwks { url, keys, fetches }
}

async fn get_with(s: &Server, token: &str, path: &str) -> reqwest::Response {
    s.http
        .get(s.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn init_with(s: &Server, token: &str) -> reqwest::Response {
    s.http
        .post(s.url("/uploads/init"))
        .bearer_auth(token)
        .json(&json!({"content_type": "image/jpeg", "max_bytes": 100}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn hs256_tokens_are_checked_and_scoped() {
    let s = Server::start_with(
        Opts::default()
            .env("API_KEY", "jwt-test-bootstrap-0123456789")
            .env("PHOTO_API_JWT_SECRET", SECRET)
            .env("PHOTO_API_JWT_ISSUER", ISS)
            .env("PHOTO_API_JWT_AUDIENCE", AUD)
            .env("PHOTO_API_JWT_TENANT_CLAIM", "app_metadata.tenant_id")
            .env("PHOTO_API_JWT_ALLOWED_ROLES", "authenticated,service_role"),
    )
    .await;

    // Valid: default scopes (read, write); the tenant comes from the claim.
    let good = hs(&claims("acme", None), SECRET);
    assert_eq!(get_with(&s, &good, "/jobs").await.status(), 200);
    let r = init_with(&s, &good).await;
    assert_eq!(r.status(), 201);
    let up: Value = r.json().await.unwrap();
    assert!(
        up["key"].as_str().unwrap().starts_with("tenants/acme/"),
        "{up}"
    );
    let id = up["upload_id"].as_str().unwrap();
    assert_eq!(
        get_with(&s, &good, &format!("/uploads/{id}"))
            .await
            .status(),
        200
    );

    // Another tenant's token sees nothing of acme's.
    let other = hs(&claims("other", None), SECRET);
    expect_problem(
        get_with(&s, &other, &format!("/uploads/{id}")).await,
        404,
        "not_found",
    )
    .await;

    // Wrong scope: a read-only token cannot write or administer.
    let reader = hs(&claims("acme", Some("read")), SECRET);
    assert_eq!(get_with(&s, &reader, "/jobs").await.status(), 200);
    expect_problem(init_with(&s, &reader).await, 403, "insufficient_scope").await;
    expect_problem(
        get_with(&s, &reader, "/admin/keys").await,
        403,
        "insufficient_scope",
    )
    .await;
    // `global` never comes from a token.
    let greedy = hs(&claims("acme", Some("read admin global")), SECRET);
    let keys: Value = get_with(&s, &greedy, "/admin/keys")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        keys["keys"].as_array().unwrap().is_empty(),
        "acme's keys only: {keys}"
    );
    expect_problem(
        get_with(&s, &greedy, "/admin/keys?tenant=default").await,
        403,
        "insufficient_scope",
    )
    .await;

    let mut expired = claims("acme", None);
    expired["exp"] = json!(now() - 3600);
    let mut wrong_aud = claims("acme", None);
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims("acme", None);
    wrong_iss["iss"] = json!("https://evil.example.test");
    let mut anon = claims("acme", None);
    anon["role"] = json!("anon");
    let mut no_tenant = claims("acme", None);
    no_tenant["app_metadata"] = json!({});
    let mut not_yet = claims("acme", None);
    not_yet["nbf"] = json!(now() + 3600);
    let mut no_exp = claims("acme", None);
    no_exp.as_object_mut().unwrap().remove("exp");
    let header_none = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = B64.encode(claims("acme", None).to_string());
    for (what, token, detail) in [
        ("expired", hs(&expired, SECRET), "expired"),
        (
            "wrong signature",
            hs(&claims("acme", None), "another-secret-0123456789abcdef0123"),
            "signature",
        ),
        ("wrong audience", hs(&wrong_aud, SECRET), "audience"),
        ("wrong issuer", hs(&wrong_iss, SECRET), "issuer"),
        ("refused role", hs(&anon, SECRET), "role"),
        ("no tenant", hs(&no_tenant, SECRET), "tenant"),
        ("not yet valid", hs(&not_yet, SECRET), "not valid yet"),
        ("no exp", hs(&no_exp, SECRET), "claim"),
        ("alg none", format!("{header_none}.{body}."), "malformed"),
        (
            "tampered",
            {
                let t = hs(&claims("acme", None), SECRET);
                let parts: Vec<&str> = t.split('.').collect();
                format!(
                    "{}.{}.{}",
                    parts[0],
                    B64.encode(claims("other", None).to_string()),
                    parts[2]
                )
            },
            "signature",
        ),
    ] {
        let p = expect_problem(
            get_with(&s, &token, "/jobs").await,
            401,
            "invalid_credentials",
        )
        .await;
        assert!(
            p["detail"].as_str().unwrap().contains(detail),
            "{what}: {p}"
        );
    }
    // RS256 tokens are refused when no JWKS is configured.
    let dir = tempdir();
    let k = rsa_key(&dir, "r1");
    expect_problem(
        get_with(&s, &sign(&k, "r1", &claims("acme", None)), "/jobs").await,
        401,
        "invalid_credentials",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn jwks_tokens_rs256_es256_refresh_and_withdrawal() {
    let dir = tempdir();
    let r1 = rsa_key(&dir, "r1");
    let r2 = rsa_key(&dir, "r2");
    let e1 = ec_key(&dir, "e1");
    let jwks = jwks_server().await;
    jwks.keys
        .lock()
        .unwrap()
        .extend([r1.jwk.clone(), e1.jwk.clone()]);
    let opts = |ttl: &str| {
        Opts::default()
            .env("API_KEY", "jwt-test-bootstrap-0123456789")
            .env("PHOTO_API_JWT_JWKS_URL", &jwks.url)
            .env("PHOTO_API_JWT_ISSUER", ISS)
            .env("PHOTO_API_JWT_AUDIENCE", AUD)
            .env("PHOTO_API_JWT_TENANT_CLAIM", "app_metadata.tenant_id")
            .env("PHOTO_API_JWKS_CACHE_TTL", ttl)
            .env("PHOTO_API_JWKS_MIN_REFRESH", "0s")
    };
    let s = Server::start_with(opts("10m")).await;
    let c = claims("acme", Some("read write"));

    let rs = sign(&r1, "r1", &c);
    let es = sign(&e1, "e1", &c);
    assert_eq!(get_with(&s, &rs, "/jobs").await.status(), 200, "RS256");
    assert_eq!(init_with(&s, &es).await.status(), 201, "ES256");
    let fetched = jwks.fetches.load(Ordering::SeqCst);
    assert_eq!(fetched, 1, "one fetch serves both keys");
    for _ in 0..5 {
        assert_eq!(get_with(&s, &rs, "/jobs").await.status(), 200);
    }
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1, "cached");

    // Signed by a key the JWKS does not hold, under a known kid: wrong signature.
    let forged = sign(&r2, "r1", &c);
    expect_problem(
        get_with(&s, &forged, "/jobs").await,
        401,
        "invalid_credentials",
    )
    .await;
    // An EC-signed token claiming the RSA key: refused.
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("r1".into());
    let confused = encode(&h, &c, &e1.enc).unwrap();
    expect_problem(
        get_with(&s, &confused, "/jobs").await,
        401,
        "invalid_credentials",
    )
    .await;
    // HS256 signed with the RSA public key's JWK as the secret (algorithm confusion): refused.
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("r1".into());
    let hs_conf = encode(
        &h,
        &c,
        &EncodingKey::from_secret(r1.jwk.to_string().as_bytes()),
    )
    .unwrap();
    expect_problem(
        get_with(&s, &hs_conf, "/jobs").await,
        401,
        "invalid_credentials",
    )
    .await;
    // Wrong audience and expiry are checked for JWKS tokens too.
    let mut bad = c.clone();
    bad["aud"] = json!("other");
    expect_problem(
        get_with(&s, &sign(&r1, "r1", &bad), "/jobs").await,
        401,
        "invalid_credentials",
    )
    .await;
    let mut old = c.clone();
    old["exp"] = json!(now() - 3600);
    expect_problem(
        get_with(&s, &sign(&r1, "r1", &old), "/jobs").await,
        401,
        "invalid_credentials",
    )
    .await;

    // Rotation: a new key appears in the JWKS; a token with its unknown kid triggers a fetch.
    let before = jwks.fetches.load(Ordering::SeqCst);
    let new = sign(&r2, "r2", &c);
    jwks.keys.lock().unwrap().push(r2.jwk.clone());
    assert_eq!(
        get_with(&s, &new, "/jobs").await.status(),
        200,
        "refreshed on unknown kid"
    );
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), before + 1);
    // A kid nobody publishes: refused after one more fetch.
    let ghost = sign(&r2, "ghost", &c);
    let p = expect_problem(
        get_with(&s, &ghost, "/jobs").await,
        401,
        "invalid_credentials",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("kid"), "{p}");

    // Withdrawn keys: with a short cache, a key removed from the JWKS stops working.
    let s2 = Server::start_with(opts("1ms")).await;
    assert_eq!(get_with(&s2, &rs, "/jobs").await.status(), 200);
    jwks.keys.lock().unwrap().retain(|k| k["kid"] != "r1");
    expect_problem(
        get_with(&s2, &rs, "/jobs").await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_eq!(
        get_with(&s2, &es, "/jobs").await.status(),
        200,
        "other keys still work"
    );
}
