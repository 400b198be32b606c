//! Tenants, black-box: `/admin/tenants` and `photo-api tenants …` create, change, suspend and
//! reactivate tenants, each change audited; a suspended tenant's keys and tokens are refused
//! everywhere with `403 tenant_suspended` while other tenants go on; a tenant's own admin cannot
//! touch other tenants; a key for an unknown tenant creates it.
#![expect(clippy::unwrap_used)]

mod common;

use common::{Opts, Server, command, expect_problem, jpeg, production};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

const BOOT: &str = "tenants-test-bootstrap-0123456789";
const SECRET: &str = "tenants-test-jwt-secret-0123456789abcdef";

async fn call(
    s: &Server,
    key: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut r = s
        .http
        .request(method.parse().unwrap(), s.url(path))
        .bearer_auth(key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    r.send().await.unwrap()
}

async fn ok(r: reqwest::Response, status: u16) -> Value {
    let got = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn key_for(s: &Server, tenant: &str, scopes: &[&str]) -> String {
    let v = ok(
        call(
            s,
            BOOT,
            "POST",
            "/admin/keys",
            Some(json!({"tenant": tenant, "scopes": scopes})),
        )
        .await,
        201,
    )
    .await;
    v["key"].as_str().unwrap().to_owned()
}

fn token(tenant: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "user-1", "exp": now + 600, "tenant_id": tenant}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// `photo-api tenants|keys …` against the server's database; returns stdout.
fn cli(s: &Server, args: &[&str]) -> String {
    let out = command(&s.data_dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "photo-api {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn actions(s: &Server, tenant: &str) -> Vec<Value> {
    let v = ok(
        call(
            s,
            BOOT,
            "GET",
            &format!("/admin/audit?tenant={tenant}"),
            None,
        )
        .await,
        200,
    )
    .await;
    v["entries"].as_array().unwrap().clone()
}

fn names(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_are_managed_audited_and_suspension_refuses_every_credential() {
    let mut s = Server::start_with(
        Opts::default()
            .env("API_KEY", BOOT)
            .env("PHOTO_API_JWT_SECRET", SECRET)
            .env("PHOTO_API_JWT_TENANT_CLAIM", "tenant_id"),
    )
    .await;

    // Create: 201, then 409; malformed input is a 422, never a 500.
    let t = ok(
        call(
            &s,
            BOOT,
            "POST",
            "/admin/tenants",
            Some(json!({"tenant_id": "acme", "display_name": "  Acme  "})),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(t["tenant_id"], "acme");
    assert_eq!(t["display_name"], "Acme");
    assert_eq!(t["status"], "active");
    expect_problem(
        call(
            &s,
            BOOT,
            "POST",
            "/admin/tenants",
            Some(json!({"tenant_id": "acme"})),
        )
        .await,
        409,
        "already_exists",
    )
    .await;
    for bad in [
        json!({"tenant_id": "Not A Tenant"}),
        json!({"tenant_id": "ok", "status": "frozen"}),
        json!({"tenant_id": "ok", "display_name": "a\u{7}b"}),
        json!({"tenant_id": "ok", "owner": "x"}),
        json!({}),
    ] {
        let r = call(&s, BOOT, "POST", "/admin/tenants", Some(bad.clone())).await;
        assert_eq!(r.status(), 422, "{bad}: {}", r.text().await.unwrap());
    }

    // A key for an unknown tenant creates it (audited as implicit).
    let acme_admin = key_for(&s, "acme", &["read", "write", "admin"]).await;
    let zeta = key_for(&s, "zeta", &["read", "write"]).await;
    let list = ok(call(&s, BOOT, "GET", "/admin/tenants", None).await, 200).await;
    let ids: Vec<&str> = list["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tenant_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["acme", "zeta"]);
    let z = actions(&s, "zeta").await;
    assert_eq!(names(&z), ["key.created", "tenant.created"]);
    assert_eq!(z[1]["detail"]["implicit"], true, "{z:?}");
    assert_eq!(z[1]["actor"], "bootstrap");

    // A tenant's own admin reads its own tenant only, and changes none.
    let own = ok(
        call(&s, &acme_admin, "GET", "/admin/tenants", None).await,
        200,
    )
    .await;
    assert_eq!(own["tenants"].as_array().unwrap().len(), 1, "{own}");
    assert_eq!(own["tenants"][0]["tenant_id"], "acme");
    ok(
        call(&s, &acme_admin, "GET", "/admin/tenants/acme", None).await,
        200,
    )
    .await;
    for (method, path, body) in [
        ("GET", "/admin/tenants/zeta", None),
        ("GET", "/admin/tenants/nope", None),
        (
            "PATCH",
            "/admin/tenants/zeta",
            Some(json!({"display_name": "mine"})),
        ),
        (
            "PATCH",
            "/admin/tenants/acme",
            Some(json!({"display_name": "mine"})),
        ),
        ("POST", "/admin/tenants/zeta/suspend", None),
        ("POST", "/admin/tenants/acme/reactivate", None),
        (
            "POST",
            "/admin/tenants",
            Some(json!({"tenant_id": "acme2"})),
        ),
    ] {
        let r = call(&s, &acme_admin, method, path, body).await;
        expect_problem(r, 403, "insufficient_scope").await;
    }
    expect_problem(
        call(&s, &zeta, "GET", "/admin/tenants", None).await,
        403,
        "insufficient_scope",
    )
    .await;

    // Update: a real change is audited with from/to; the same change again records nothing.
    let t = ok(
        call(
            &s,
            BOOT,
            "PATCH",
            "/admin/tenants/acme",
            Some(json!({"display_name": "Acme Corp"})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(t["display_name"], "Acme Corp");
    ok(
        call(
            &s,
            BOOT,
            "PATCH",
            "/admin/tenants/acme",
            Some(json!({"display_name": "Acme Corp"})),
        )
        .await,
        200,
    )
    .await;
    expect_problem(
        call(
            &s,
            BOOT,
            "PATCH",
            "/admin/tenants/nope",
            Some(json!({"display_name": "x"})),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    expect_problem(
        call(
            &s,
            BOOT,
            "PATCH",
            "/admin/tenants/acme",
            Some(json!({"status": "gone"})),
        )
        .await,
        422,
        "invalid_request",
    )
    .await;

    // Things of acme's made while it is active.
    s.key = acme_admin.clone();
    let upload = s.upload_ready(jpeg(40, 30), "image/jpeg").await;
    let pending = s.init_upload("image/jpeg", 10_000).await;
    s.key = BOOT.into();
    let jwt = token("acme");
    ok(call(&s, &jwt, "GET", "/jobs", None).await, 200).await;

    // Suspend: every credential of acme is refused, everywhere; zeta goes on.
    let t = ok(
        call(&s, BOOT, "POST", "/admin/tenants/acme/suspend", None).await,
        200,
    )
    .await;
    assert_eq!(t["status"], "suspended");
    for cred in [&acme_admin, &jwt] {
        for (method, path, body) in [
            ("GET", "/jobs".to_owned(), None),
            ("GET", format!("/uploads/{upload}"), None),
            (
                "POST",
                "/uploads/init".to_owned(),
                Some(json!({"content_type": "image/jpeg", "max_bytes": 10})),
            ),
            (
                "POST",
                "/jobs".to_owned(),
                Some(
                    json!({"job_type": "thumbnail", "upload_id": upload, "params": {"width": 8, "height": 8}}),
                ),
            ),
            ("GET", "/files/list".to_owned(), None),
            ("GET", "/admin/keys".to_owned(), None),
            ("GET", "/admin/tenants/acme".to_owned(), None),
            ("GET", "/webhooks".to_owned(), None),
        ] {
            let r = call(&s, cred, method, &path, body).await;
            let p = expect_problem(r, 403, "tenant_suspended").await;
            assert_eq!(p["tenant"], "acme");
        }
    }
    if production().is_none() {
        // Our own signed upload route refuses acme's bytes too (with S3 the URL goes to the
        // bucket; it lapses after PRESIGN_EXPIRES_SECONDS).
        let r = s.send_upload(&pending, jpeg(8, 8), "image/jpeg").await;
        expect_problem(r, 403, "tenant_suspended").await;
    }
    ok(call(&s, &zeta, "GET", "/jobs", None).await, 200).await;
    // Suspending again changes (and records) nothing; a global admin cannot lock itself out.
    ok(
        call(&s, BOOT, "POST", "/admin/tenants/acme/suspend", None).await,
        200,
    )
    .await;
    expect_problem(
        call(&s, BOOT, "POST", "/admin/tenants/default/suspend", None).await,
        422,
        "invalid_request",
    )
    .await;
    expect_problem(
        call(&s, BOOT, "POST", "/admin/tenants/nope/suspend", None).await,
        404,
        "not_found",
    )
    .await;

    // Reactivate: the same credentials work again at once.
    let t = ok(
        call(&s, BOOT, "POST", "/admin/tenants/acme/reactivate", None).await,
        200,
    )
    .await;
    assert_eq!(t["status"], "active");
    ok(
        call(&s, &acme_admin, "GET", &format!("/uploads/{upload}"), None).await,
        200,
    )
    .await;
    ok(call(&s, &jwt, "GET", "/jobs", None).await, 200).await;

    let a = actions(&s, "acme").await;
    assert_eq!(
        names(&a),
        [
            "tenant.reactivated",
            "tenant.suspended",
            "tenant.updated",
            "key.created",
            "tenant.created"
        ],
        "one entry per actual change: {a:?}"
    );
    assert_eq!(
        a[0]["detail"]["changes"]["status"],
        json!({"from": "suspended", "to": "active"})
    );
    assert_eq!(
        a[1]["detail"]["changes"]["status"],
        json!({"from": "active", "to": "suspended"})
    );
    assert_eq!(
        a[2]["detail"]["changes"]["display_name"],
        json!({"from": "Acme", "to": "Acme Corp"})
    );
    assert!(a.iter().all(|e| e["actor"] == "bootstrap"), "{a:?}");
    // A tenant's admin sees its own tenant's log, which holds these too.
    let own_log = ok(
        call(&s, &acme_admin, "GET", "/admin/audit", None).await,
        200,
    )
    .await;
    assert_eq!(own_log["entries"].as_array().unwrap().len(), a.len());

    // The CLI mirrors the API, straight in the database; the server sees it at once.
    let out = cli(&s, &["tenants", "suspend", "zeta"]);
    assert!(out.contains("suspended"), "{out}");
    expect_problem(
        call(&s, &zeta, "GET", "/jobs", None).await,
        403,
        "tenant_suspended",
    )
    .await;
    let listed = cli(&s, &["tenants", "list", "--json"]);
    let rows: Vec<Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{listed}");
    assert_eq!(rows[1]["tenant_id"], "zeta");
    assert_eq!(rows[1]["status"], "suspended");
    cli(&s, &["tenants", "reactivate", "zeta"]);
    ok(call(&s, &zeta, "GET", "/jobs", None).await, 200).await;
    cli(&s, &["tenants", "create", "newco", "--name", "New Co"]);
    cli(&s, &["tenants", "update", "newco", "--name", "NewCo"]);
    let shown: Value = serde_json::from_str(&cli(&s, &["tenants", "show", "newco"])).unwrap();
    assert_eq!(shown["display_name"], "NewCo");
    let out = command(&s.data_dir)
        .args(["tenants", "create", "newco"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a second create fails");
    cli(&s, &["keys", "create", "--tenant", "cli-made"]);
    let z = actions(&s, "zeta").await;
    assert_eq!(
        names(&z)[..2],
        ["tenant.reactivated", "tenant.suspended"],
        "{z:?}"
    );
    assert!(z[..2].iter().all(|e| e["actor"] == "cli"));
    assert_eq!(
        names(&actions(&s, "newco").await),
        ["tenant.updated", "tenant.created"]
    );
    assert_eq!(
        names(&actions(&s, "cli-made").await),
        ["key.created", "tenant.created"]
    );
    let t = ok(
        call(&s, BOOT, "GET", "/admin/tenants/cli-made", None).await,
        200,
    )
    .await;
    assert_eq!(t["status"], "active");
}
