//! Keys, tenants and scopes, black-box: `photo-api keys …`, the admin API, scope enforcement on
//! every documented route, revocation and expiry, and the audit log.
#![expect(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Opts, Server, command, expect_problem, tempdir};
use serde_json::{Value, json};

const BOOT: &str = "auth-test-bootstrap-key-0123456789";

async fn boot_server() -> Server {
    Server::start_with(Opts::default().env("API_KEY", BOOT)).await
}

async fn post_as(s: &Server, key: &str, path: &str, body: Value) -> reqwest::Response {
    s.http
        .post(s.url(path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn get_as(s: &Server, key: &str, path: &str) -> reqwest::Response {
    s.http
        .get(s.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

async fn delete_as(s: &Server, key: &str, path: &str) -> reqwest::Response {
    s.http
        .delete(s.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

/// Creates a key through the admin API; returns (key, key_id).
async fn new_key(s: &Server, as_key: &str, body: Value) -> (String, String) {
    let r = post_as(s, as_key, "/admin/keys", body).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let v: Value = r.json().await.unwrap();
    (
        v["key"].as_str().unwrap().to_owned(),
        v["key_id"].as_str().unwrap().to_owned(),
    )
}

fn keys_cli(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = command(dir).arg("keys").args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_cli_creates_lists_and_revokes() {
    let dir = tempdir();
    let (ok, out, err) = keys_cli(
        &dir,
        &[
            "create",
            "--tenant",
            "acme",
            "--scope",
            "read,write",
            "--expires",
            "30d",
            "--name",
            "ci uploader",
        ],
    );
    assert!(ok, "{out}{err}");
    let key = out
        .lines()
        .find_map(|l| l.strip_prefix("API key: "))
        .unwrap()
        .to_owned();
    let key_id = key.split('_').nth(1).unwrap().to_owned();
    assert!(
        out.contains(&format!("Created API key {key_id} for tenant acme")),
        "{out}"
    );
    assert!(!err.contains(&key), "the key never reaches the log");

    // Bad input is refused with the flag's name, nothing created.
    for (args, expect) in [
        (vec!["create", "--tenant", "Bad Tenant"], "--tenant"),
        (
            vec!["create", "--tenant", "acme", "--scope", "root"],
            "--scope",
        ),
        (
            vec!["create", "--tenant", "acme", "--expires", "soon"],
            "--expires",
        ),
    ] {
        let (ok, _, err) = keys_cli(&dir, &args);
        assert!(!ok, "{args:?}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }

    let s = Server::start_with(
        Opts {
            data_dir: Some(dir.clone()),
            key: Some(key.clone()),
            ..Default::default()
        }
        .env("API_KEY", BOOT),
    )
    .await;
    assert_eq!(s.get("/jobs").await.status(), 200);
    let init = s.init_upload("image/jpeg", 100).await;
    assert!(
        init["key"].as_str().unwrap().starts_with("tenants/acme/"),
        "{init}"
    );
    // read,write: no admin routes.
    expect_problem(s.get("/admin/keys").await, 403, "insufficient_scope").await;

    let (ok, out, _) = keys_cli(&dir, &["list", "--tenant", "acme"]);
    assert!(ok);
    assert!(out.contains(&key_id) && out.contains("active") && out.contains("ci uploader"));
    assert!(!out.contains(&key), "list never shows a secret");
    let (ok, out, _) = keys_cli(&dir, &["list", "--json"]);
    assert!(ok);
    let rows: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mine = rows
        .iter()
        .find(|r| r["key_id"] == key_id.as_str())
        .unwrap();
    assert_eq!(mine["scopes"], json!(["read", "write"]));
    assert!(mine["expires_at"].is_string());

    // Revoked while the server runs: refused on the very next request.
    let (ok, out, err) = keys_cli(&dir, &["revoke", &key_id]);
    assert!(ok, "{out}{err}");
    expect_problem(s.get("/jobs").await, 401, "invalid_credentials").await;
    let (ok, _, err) = keys_cli(&dir, &["revoke", "ffffffffffff"]);
    assert!(!ok && err.contains("no key"), "{err}");

    // The audit log has the CLI's actions.
    let log: Value = get_as(&s, BOOT, "/admin/audit?tenant=acme")
        .await
        .json()
        .await
        .unwrap();
    let acts: Vec<(&str, &str)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        acts,
        [
            ("key.revoked", "cli"),
            ("key.created", "cli"),
            ("tenant.created", "cli")
        ],
        "the first key of an unknown tenant created it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_manages_keys_within_a_tenant_and_audits_it() {
    let s = boot_server().await;
    let (acme_admin, acme_admin_id) = new_key(
        &s,
        BOOT,
        json!({"tenant": "acme", "scopes": ["admin", "read", "write"], "name": "acme admin"}),
    )
    .await;
    let (_, other_id) = new_key(&s, BOOT, json!({"tenant": "other", "scopes": ["read"]})).await;

    // A tenant admin creates keys for its own tenant only, and only with scopes it holds.
    let r = post_as(
        &s,
        &acme_admin,
        "/admin/keys",
        json!({"scopes": ["read"], "name": "reader", "expires_in": "30d"}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["tenant"], "acme");
    assert_eq!(created["status"], "active");
    assert!(created["expires_at"].is_string());
    let reader = created["key"].as_str().unwrap().to_owned();
    let reader_id = created["key_id"].as_str().unwrap().to_owned();
    for body in [
        json!({"scopes": ["read"], "tenant": "other"}),
        json!({"scopes": ["global"]}),
        json!({"scopes": ["admin", "global"]}),
    ] {
        let r = post_as(&s, &acme_admin, "/admin/keys", body.clone()).await;
        expect_problem(r, 403, "insufficient_scope").await;
    }
    for body in [
        json!({"scopes": []}),
        json!({"scopes": ["root"]}),
        json!({"scopes": ["read"], "expires_in": "yesterday"}),
        json!({"scopes": ["read"], "expires_at": "2001-01-01T00:00:00Z"}),
        json!({"scopes": ["read"], "name": "a\u{0007}b"}),
        json!({"scopes": ["read"], "name": "x".repeat(101)}),
        json!({"scopes": ["read"], "surprise": true}),
    ] {
        let r = post_as(&s, &acme_admin, "/admin/keys", body.clone()).await;
        let got = r.status().as_u16();
        assert!(got == 422, "{body}: {got}");
    }
    // A global admin must say which tenant.
    expect_problem(
        post_as(&s, BOOT, "/admin/keys", json!({"scopes": ["read"]})).await,
        422,
        "invalid_request",
    )
    .await;

    // The reader reads, but cannot write or administer.
    assert_eq!(get_as(&s, &reader, "/jobs").await.status(), 200);
    let r = post_as(
        &s,
        &reader,
        "/uploads/init",
        json!({"content_type": "image/jpeg", "max_bytes": 10}),
    )
    .await;
    let p = expect_problem(r, 403, "insufficient_scope").await;
    assert_eq!(p["required_scope"], "write");
    expect_problem(
        get_as(&s, &reader, "/admin/keys").await,
        403,
        "insufficient_scope",
    )
    .await;

    // Lists: acme's admin sees acme's keys only, never a secret; the global admin sees all.
    let list: Value = get_as(&s, &acme_admin, "/admin/keys")
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{list}");
    assert!(ids.contains(&acme_admin_id.as_str()) && ids.contains(&reader_id.as_str()));
    assert!(!list.to_string().contains(&reader), "no secrets in lists");
    expect_problem(
        get_as(&s, &acme_admin, "/admin/keys?tenant=other").await,
        403,
        "insufficient_scope",
    )
    .await;
    let all: Value = get_as(&s, BOOT, "/admin/keys").await.json().await.unwrap();
    assert_eq!(all["keys"].as_array().unwrap().len(), 3);
    let others: Value = get_as(&s, BOOT, "/admin/keys?tenant=other")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(others["keys"][0]["key_id"], other_id.as_str());

    // last_used_at is recorded (asynchronously) after a use.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list: Value = get_as(&s, &acme_admin, "/admin/keys")
            .await
            .json()
            .await
            .unwrap();
        let k = list["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["key_id"] == reader_id.as_str())
            .cloned()
            .unwrap();
        if k["last_used_at"].is_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "last_used_at never recorded: {k}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Revocation: another tenant's key is not found; the own key is revoked at once; twice is
    // the same answer.
    expect_problem(
        delete_as(&s, &acme_admin, &format!("/admin/keys/{other_id}")).await,
        404,
        "not_found",
    )
    .await;
    expect_problem(
        delete_as(&s, &acme_admin, "/admin/keys/not-a-key").await,
        404,
        "not_found",
    )
    .await;
    let r = delete_as(&s, &acme_admin, &format!("/admin/keys/{reader_id}")).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "revoked");
    expect_problem(
        get_as(&s, &reader, "/jobs").await,
        401,
        "invalid_credentials",
    )
    .await;
    let again: Value = delete_as(&s, &acme_admin, &format!("/admin/keys/{reader_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["revoked_at"], v["revoked_at"]);
    assert_eq!(
        get_as(&s, BOOT, "/admin/keys?tenant=other").await.status(),
        200
    );

    // The audit log: acme's admin sees acme's entries, newest first, one per change.
    let log: Value = get_as(&s, &acme_admin, "/admin/audit")
        .await
        .json()
        .await
        .unwrap();
    let entries = log["entries"].as_array().unwrap();
    let acts: Vec<(String, String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
                e["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        acts,
        [
            (
                "key.revoked".to_owned(),
                acme_admin_id.clone(),
                reader_id.clone()
            ),
            (
                "key.created".to_owned(),
                acme_admin_id.clone(),
                reader_id.clone()
            ),
            (
                "key.created".to_owned(),
                "bootstrap".to_owned(),
                acme_admin_id.clone()
            ),
            (
                "tenant.created".to_owned(),
                "bootstrap".to_owned(),
                "acme".to_owned()
            ),
        ]
    );
    assert!(entries.iter().all(|e| e["tenant"] == "acme"));
    assert_eq!(entries[1]["detail"]["scopes"], json!(["read"]));
    assert!(!log.to_string().contains(&reader) && !log.to_string().contains(&acme_admin));
    expect_problem(
        get_as(&s, &acme_admin, "/admin/audit?tenant=other").await,
        403,
        "insufficient_scope",
    )
    .await;
    expect_problem(
        get_as(&s, &acme_admin, "/admin/audit?limit=0").await,
        422,
        "invalid_request",
    )
    .await;
    let page: Value = get_as(&s, BOOT, "/admin/audit?limit=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["entries"].as_array().unwrap().len(), 2);
    let before = page["next_before"].as_i64().unwrap();
    let rest: Value = get_as(&s, BOOT, &format!("/admin/audit?before={before}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        rest["entries"].as_array().unwrap().len(),
        4,
        "6 actions in all (4 of acme's, 2 of other's): {rest}"
    );
    assert!(rest["next_before"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_keys_are_refused() {
    let s = boot_server().await;
    let (key, _) = new_key(
        &s,
        BOOT,
        json!({"tenant": "acme", "scopes": ["read"], "expires_in": "1s"}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    // Valid until it expires, refused from then on (the wait is for the clock, not a timing check).
    loop {
        let r = get_as(&s, &key, "/jobs").await;
        if r.status() == 401 {
            expect_problem(r, 401, "invalid_credentials").await;
            break;
        }
        assert_eq!(r.status(), 200);
        assert!(Instant::now() < deadline, "the key never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let list: Value = get_as(&s, BOOT, "/admin/keys?tenant=acme")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["keys"][0]["status"], "expired");
}

/// The scope a documented operation needs, by the same rule as the server's (`admin` under
/// /admin, `read` for GET, `write` otherwise).
fn needed(method: &str, path: &str) -> &'static str {
    if path.starts_with("/admin") {
        "admin"
    } else if method == "get" {
        "read"
    } else {
        "write"
    }
}

/// Every authenticated operation of the OpenAPI document refuses a credential without the
/// operation's scope (403 `insufficient_scope`) and a missing one (401) — before looking at
/// anything else of the request.
#[tokio::test(flavor = "multi_thread")]
async fn every_documented_route_enforces_its_scope() {
    let s = boot_server().await;
    let mut without = std::collections::HashMap::new();
    for (missing, scopes) in [
        ("read", json!(["write", "admin"])),
        ("write", json!(["read", "admin"])),
        ("admin", json!(["read", "write"])),
    ] {
        let (k, _) = new_key(&s, BOOT, json!({"tenant": "acme", "scopes": scopes})).await;
        without.insert(missing, k);
    }
    let doc: Value = s
        .http
        .get(s.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let secured = op["security"]
                .as_array()
                .is_some_and(|v| v.iter().any(|r| r.get("bearer").is_some()));
            if !secured {
                continue;
            }
            let concrete = path
                .split('/')
                .map(|seg| if seg.starts_with('{') { "0" } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            let m = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            let scope = needed(method, path);
            let r = s
                .http
                .request(m.clone(), s.url(&concrete))
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            expect_problem(r, 401, "unauthenticated").await;
            let r = s
                .http
                .request(m, s.url(&concrete))
                .bearer_auth(&without[scope])
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let p = expect_problem(r, 403, "insufficient_scope").await;
            assert_eq!(p["required_scope"], scope, "{method} {path}");
            checked += 1;
        }
    }
    assert!(checked >= 9, "only {checked} secured operations found");
}
