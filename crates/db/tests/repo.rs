//! Integration tests of the SQLite repository against a real database file.
#![expect(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Duration, DurationRound, Utc};
use photo_core::{
    BatchId, ContentType, JobId, JobSpec, JobStatus, JobType, ObjectKey, TenantId, UploadId,
};
use photo_db::{
    ApiKeyRecord, ClaimToken, Database, Failure, Job, JobEngine, JobFilter, JobOutput,
    NewAuditEntry, NewJob, NewUpload, PgOptions, PgRepo, Repo, TemporalRoute, TenantChange,
    TenantStatus, UploadOutcome, UploadStatus, Webhook,
};
use serde_json::json;

#[macro_use]
mod common;
use common::TestDb;

/// Now, to the microsecond: PostgreSQL keeps timestamps to the microsecond, and every test
/// compares times it wrote with times it reads back.
fn now() -> DateTime<Utc> {
    let t = Utc::now();
    t.duration_trunc(Duration::microseconds(1)).unwrap_or(t)
}

fn tenant(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

fn thumb_spec() -> JobSpec {
    JobSpec::parse(JobType::Thumbnail, json!({"width": 10, "height": 10})).unwrap()
}

fn transform_spec() -> JobSpec {
    JobSpec::parse(JobType::Transform, json!({"width": 10})).unwrap()
}

fn new_job_with(id: JobId, t: &TenantId, spec: JobSpec, max_attempts: u32) -> NewJob {
    NewJob {
        job_id: id,
        tenant: t.clone(),
        spec,
        upload_id: None,
        s3_key: None,
        source_url: None,
        filename: None,
        content_type: None,
        max_attempts,
        temporal: None,
    }
}

fn temporal_job(t: &TenantId, max_attempts: u32) -> NewJob {
    let id = JobId::new();
    NewJob {
        temporal: Some(TemporalRoute {
            workflow_id: format!("photo-job-{id}"),
            task_queue: "image-tasks".into(),
        }),
        ..new_job_with(id, t, thumb_spec(), max_attempts)
    }
}

fn new_job(t: &TenantId, max_attempts: u32) -> NewJob {
    new_job_with(JobId::new(), t, thumb_spec(), max_attempts)
}

fn output(job: JobId) -> JobOutput {
    JobOutput {
        name: "thumbnail".into(),
        key: ObjectKey::job_output(&tenant("t1"), job, "thumbnail", "jpg").unwrap(),
        content_type: "image/jpeg".into(),
        width: 10,
        height: 8,
        size: 1234,
    }
}

fn ms(n: i64) -> Duration {
    Duration::milliseconds(n)
}

async fn event_count(repo: &Arc<dyn Repo>, id: JobId, status: &str) -> usize {
    repo.job_events(id)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.status == status)
        .count()
}

async fn job(repo: &Arc<dyn Repo>, id: JobId) -> Job {
    repo.get_job_any_tenant(id).await.unwrap().unwrap()
}

// ---------------------------------------------------------------- migrations

async fn migrations_are_idempotent_and_reversible(db: &TestDb) {
    let repo = db.repo();
    let mig = &db.db;
    assert_eq!(mig.migrate().await.unwrap(), 0, "open already migrated");
    assert!(db.table_exists("job_logs").await);

    let again = db.reopen().await;
    assert_eq!(
        again.migrate().await.unwrap(),
        0,
        "second open is idempotent"
    );
    drop(again);

    // Each step below runs on a pool of its own, as `photo-api migrate` does in a process of
    // its own: a pooled SQLite connection that parsed the schema before another connection
    // changed it can fail a DDL statement at prepare time ("no such column"; seen once, under
    // load, in CI), which is not what these steps test.
    let fresh = || async {
        photo_db::connect(&db.url(), &common::pg_opts())
            .await
            .unwrap()
    };

    // 0007 (job results, eager jobs, batch events) and the migrations after it revert and
    // re-apply.
    let from_0007 = PgRepo::migration_count() - 6;
    assert_eq!(
        fresh().await.migrate_down(from_0007).await.unwrap(),
        from_0007
    );
    assert!(!db.columns("job_logs").await.iter().any(|c| c == "result"));
    assert!(
        !db.columns("batches")
            .await
            .iter()
            .any(|c| c == "finished_at")
    );
    assert!(db.table_exists("tenants").await);
    assert_eq!(
        fresh().await.migrate().await.unwrap(),
        from_0007,
        "0007 on re-apply"
    );
    assert!(db.columns("job_logs").await.iter().any(|c| c == "result"));
    // 0006 (tenants) and the migrations after it; then 0005 (the audit log) with them.
    let from_0006 = from_0007 + 1;
    assert_eq!(
        fresh().await.migrate_down(from_0006).await.unwrap(),
        from_0006
    );
    assert!(!db.table_exists("tenants").await);
    assert!(db.table_exists("audit_log").await);
    assert_eq!(
        fresh().await.migrate().await.unwrap(),
        from_0006,
        "0006 on re-apply"
    );
    assert!(db.table_exists("tenants").await);
    assert_eq!(
        fresh().await.migrate_down(from_0006 + 1).await.unwrap(),
        from_0006 + 1
    );
    assert!(!db.table_exists("audit_log").await);
    assert!(db.table_exists("api_keys").await);
    // A key made before tenants existed: 0006 creates its tenant, and the log says so.
    let old_key = key("0123456789ab", "old-co", now() - Duration::days(3));
    repo.insert_api_key(&old_key).await.unwrap();
    assert_eq!(
        fresh().await.migrate().await.unwrap(),
        from_0006 + 1,
        "0005 on re-apply"
    );
    assert!(db.table_exists("audit_log").await);
    let t = repo.get_tenant(&tenant("old-co")).await.unwrap().unwrap();
    assert_eq!(t.status, TenantStatus::Active);
    assert_eq!(
        t.created_at.timestamp(),
        old_key.created_at.timestamp(),
        "created with its first key"
    );
    let log = repo
        .list_audit(Some(&tenant("old-co")), None, 10)
        .await
        .unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].entry.action, "tenant.created");
    assert_eq!(log[0].entry.actor, "migration");

    // Everything after 0001 reverts and leaves the 0001 schema working.
    let n = PgRepo::migration_count();
    assert_eq!(fresh().await.migrate_down(n - 1).await.unwrap(), n - 1);
    assert!(db.table_exists("job_logs").await);
    assert!(!db.table_exists("files").await);
    let cols = db.columns("job_logs").await;
    assert!(!cols.iter().any(|c| c == "engine"), "{cols:?}");
    assert!(cols.iter().any(|c| c == "temporal_workflow_id"), "{cols:?}");
    assert_eq!(
        fresh().await.migrate().await.unwrap(),
        n - 1,
        "all but 0001 re-apply"
    );
    assert!(db.columns("job_logs").await.iter().any(|c| c == "engine"));
    assert!(db.table_exists("files").await);

    assert_eq!(fresh().await.migrate_down(n).await.unwrap(), n);
    for t in [
        "job_logs",
        "job_events",
        "uploads",
        "api_keys",
        "audit_log",
        "files",
        "file_gc",
        "idempotency_keys",
    ] {
        assert!(!db.table_exists(t).await, "{t} dropped by down");
    }
    assert_eq!(
        fresh().await.migrate_down(1).await.unwrap(),
        0,
        "nothing left to revert"
    );

    assert_eq!(fresh().await.migrate().await.unwrap(), n);
    assert!(db.table_exists("job_logs").await);
    assert_eq!(fresh().await.migrate().await.unwrap(), 0);
    // The schema is usable again, triggers included.
    let j = repo
        .insert_job(&new_job(&tenant("t1"), 3), now())
        .await
        .unwrap();
    assert_eq!(event_count(&repo, j.job_id, "submitted").await, 1);
    let c = repo
        .claim_job("w", Duration::seconds(30), now())
        .await
        .unwrap()
        .unwrap();
    assert!(repo.complete_job(&c.token, &[], now()).await.unwrap());
    assert_eq!(event_count(&repo, j.job_id, "completed").await, 1);
}

async fn job_logs_has_the_design_columns(db: &TestDb) {
    let cols: HashSet<String> = db.columns("job_logs").await.into_iter().collect();
    for c in [
        "id",
        "job_id",
        "job_type",
        "filename",
        "s3_key",
        "source_url",
        "content_type",
        "job_metadata",
        "temporal_workflow_id",
        "temporal_task_queue",
        "created_at",
        "started_at",
        "completed_at",
        "status",
        "error_message",
        "engine",
    ] {
        assert!(cols.contains(c), "job_logs lacks column {c}; has {cols:?}");
    }
}

// ---------------------------------------------------------------- API keys

fn key(id: &str, t: &str, now: DateTime<Utc>) -> ApiKeyRecord {
    ApiKeyRecord {
        key_id: id.into(),
        tenant: tenant(t),
        name: format!("key {id}"),
        secret_sha256: "ab".repeat(32),
        scopes: vec!["read".into(), "write".into()],
        created_at: now,
        expires_at: Some(now + Duration::days(30)),
        revoked_at: None,
        last_used_at: None,
    }
}

fn audit(actor: &str, action: &str, target: &str) -> NewAuditEntry {
    NewAuditEntry {
        at: now(),
        actor: actor.into(),
        actor_tenant: Some(tenant("t1")),
        action: action.into(),
        target: Some(target.into()),
        detail: json!({"name": "ci"}),
    }
}

/// Keys created and revoked through the admin path: listed per tenant, revocation scoped to a
/// tenant (another tenant's key is "not found"), each change audited once, in the same
/// transaction.
async fn api_keys_admin_and_audit(db: &TestDb) {
    let repo = db.repo();
    let now = now();
    let a1 = key("aaaaaaaaaaa1", "t1", now);
    let a2 = key("aaaaaaaaaaa2", "t1", now + Duration::seconds(1));
    let b1 = key("bbbbbbbbbbb1", "t2", now);
    for k in [&a1, &a2, &b1] {
        repo.create_api_key(k, &audit("boot", "key.created", &k.key_id))
            .await
            .unwrap();
    }
    let ids = |v: Vec<ApiKeyRecord>| v.into_iter().map(|k| k.key_id).collect::<Vec<_>>();
    assert_eq!(
        ids(repo.list_api_keys(Some(&tenant("t1"))).await.unwrap()),
        ["aaaaaaaaaaa1", "aaaaaaaaaaa2"]
    );
    assert_eq!(repo.list_api_keys(None).await.unwrap().len(), 3);
    assert!(
        repo.list_api_keys(Some(&tenant("t9")))
            .await
            .unwrap()
            .is_empty()
    );

    // Tenant t1 cannot revoke t2's key: not found, nothing changed, nothing audited.
    let rv = audit("aaaaaaaaaaa1", "key.revoked", "bbbbbbbbbbb1");
    assert!(
        repo.revoke_api_key(Some(&tenant("t1")), "bbbbbbbbbbb1", &rv)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        repo.find_api_key("bbbbbbbbbbb1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
    let rv = audit("aaaaaaaaaaa1", "key.revoked", "aaaaaaaaaaa2");
    let got = repo
        .revoke_api_key(Some(&tenant("t1")), "aaaaaaaaaaa2", &rv)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.revoked_at, Some(rv.at));
    // Twice: still found, still revoked at the first time, audited once.
    let again = repo
        .revoke_api_key(
            None,
            "aaaaaaaaaaa2",
            &audit("boot", "key.revoked", "aaaaaaaaaaa2"),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.revoked_at, Some(rv.at));
    assert_eq!(
        repo.find_api_key("aaaaaaaaaaa2")
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(rv.at)
    );

    let t1_log = repo
        .list_audit(Some(&tenant("t1")), None, 100)
        .await
        .unwrap();
    let acts: Vec<(&str, Option<&str>)> = t1_log
        .iter()
        .map(|e| (e.entry.action.as_str(), e.entry.target.as_deref()))
        .collect();
    assert_eq!(
        acts,
        [
            ("key.revoked", Some("aaaaaaaaaaa2")),
            ("key.created", Some("aaaaaaaaaaa2")),
            ("key.created", Some("aaaaaaaaaaa1")),
            ("tenant.created", Some("t1")),
        ],
        "newest first, one entry per change; the first key created its tenant"
    );
    assert_eq!(t1_log[0].entry, rv, "stored as given");
    assert!(t1_log.iter().all(|e| e.tenant == tenant("t1")));
    let t2_log = repo
        .list_audit(Some(&tenant("t2")), None, 100)
        .await
        .unwrap();
    assert_eq!(t2_log.len(), 2);
    assert_eq!(repo.list_audit(None, None, 100).await.unwrap().len(), 6);
    // Paging by seq.
    let first = repo.list_audit(None, None, 2).await.unwrap();
    let rest = repo
        .list_audit(None, Some(first[1].seq), 100)
        .await
        .unwrap();
    assert_eq!(first.len() + rest.len(), 6);
    assert!(rest.iter().all(|e| e.seq < first[1].seq));

    // A key id that already exists is refused, and its audit entry is not written either.
    let dup = repo
        .create_api_key(&a1, &audit("boot", "key.created", "dup"))
        .await;
    assert!(dup.is_err());
    assert_eq!(repo.list_audit(None, None, 100).await.unwrap().len(), 6);
}

/// Tenants: created explicitly (once) or implicitly by their first key, changed with one audit
/// entry per actual change, in the same transaction.
async fn tenants_changes_are_audited(db: &TestDb) {
    let repo = db.repo();
    let t = photo_db::Tenant {
        tenant: tenant("acme"),
        display_name: Some("Acme".into()),
        status: TenantStatus::Active,
        created_at: photo_db::now_ms(),
        updated_at: photo_db::now_ms(),
    };
    let created = audit("boot", "tenant.created", "acme");
    assert!(repo.create_tenant(&t, &created).await.unwrap());
    assert!(
        !repo.create_tenant(&t, &created).await.unwrap(),
        "a second create is refused"
    );
    assert_eq!(
        repo.get_tenant(&tenant("acme")).await.unwrap(),
        Some(t.clone())
    );
    assert_eq!(repo.get_tenant(&tenant("nope")).await.unwrap(), None);

    // A key for an unknown tenant creates it; for a known one it does not.
    repo.create_api_key(
        &key("ccccccccccc1", "zeta", now()),
        &audit("boot", "key.created", "ccccccccccc1"),
    )
    .await
    .unwrap();
    repo.create_api_key(
        &key("ccccccccccc2", "acme", now()),
        &audit("boot", "key.created", "ccccccccccc2"),
    )
    .await
    .unwrap();
    let ids: Vec<String> = repo
        .list_tenants(None)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.tenant.to_string())
        .collect();
    assert_eq!(ids, ["acme", "zeta"]);
    assert_eq!(
        repo.list_tenants(Some(&tenant("zeta")))
            .await
            .unwrap()
            .len(),
        1
    );

    let suspend = TenantChange {
        status: Some(TenantStatus::Suspended),
        ..Default::default()
    };
    let at = photo_db::now_ms();
    let up = audit("boot", "tenant.suspended", "acme");
    let (now_t, changed) = repo
        .update_tenant(&tenant("acme"), &suspend, at, &up)
        .await
        .unwrap()
        .unwrap();
    assert!(changed);
    assert_eq!(now_t.status, TenantStatus::Suspended);
    assert_eq!(now_t.updated_at, at);
    assert_eq!(repo.get_tenant(&tenant("acme")).await.unwrap(), Some(now_t));
    // The same change again: nothing to record.
    let (_, changed) = repo
        .update_tenant(&tenant("acme"), &suspend, at, &up)
        .await
        .unwrap()
        .unwrap();
    assert!(!changed);
    assert!(
        repo.update_tenant(&tenant("nope"), &suspend, at, &up)
            .await
            .unwrap()
            .is_none()
    );
    let log = repo
        .list_audit(Some(&tenant("acme")), None, 100)
        .await
        .unwrap();
    let acts: Vec<&str> = log.iter().map(|e| e.entry.action.as_str()).collect();
    assert_eq!(acts, ["tenant.suspended", "key.created", "tenant.created"]);
    assert_eq!(
        log[0].entry.detail["changes"]["status"],
        json!({"from": "active", "to": "suspended"})
    );
    assert_eq!(
        log[0].entry.detail["name"], "ci",
        "the caller's detail is kept"
    );
    let zeta = repo
        .list_audit(Some(&tenant("zeta")), None, 100)
        .await
        .unwrap();
    let acts: Vec<&str> = zeta.iter().map(|e| e.entry.action.as_str()).collect();
    assert_eq!(acts, ["key.created", "tenant.created"]);
    assert_eq!(zeta[1].entry.detail["implicit"], true);
}

async fn api_keys_insert_find_touch_count(db: &TestDb) {
    let repo = db.repo();
    let now = now();
    assert_eq!(repo.count_api_keys().await.unwrap(), 0);
    let k1 = key("pk_one", "t1", now);
    let k2 = ApiKeyRecord {
        scopes: vec!["admin".into()],
        expires_at: None,
        ..key("pk_two", "t2", now)
    };
    repo.insert_api_key(&k1).await.unwrap();
    repo.insert_api_key(&k2).await.unwrap();
    assert!(
        repo.insert_api_key(&k1).await.is_err(),
        "duplicate key id refused"
    );
    assert_eq!(repo.count_api_keys().await.unwrap(), 2);

    assert_eq!(repo.find_api_key("pk_one").await.unwrap(), Some(k1.clone()));
    assert_eq!(repo.find_api_key("pk_two").await.unwrap(), Some(k2.clone()));
    assert_eq!(repo.find_api_key("pk_nope").await.unwrap(), None);

    let used = now + Duration::seconds(5);
    repo.touch_api_key("pk_one", used).await.unwrap();
    let found = repo.find_api_key("pk_one").await.unwrap().unwrap();
    assert_eq!(found.last_used_at, Some(used));
    assert_eq!(
        repo.find_api_key("pk_two")
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        None,
        "only the touched key changes"
    );
    repo.touch_api_key("pk_nope", used).await.unwrap();
    assert_eq!(repo.count_api_keys().await.unwrap(), 2);
}

// ---------------------------------------------------------------- uploads

fn new_upload(t: &TenantId, now: DateTime<Utc>, expires_at: DateTime<Utc>) -> NewUpload {
    let id = UploadId::new();
    NewUpload {
        upload_id: id,
        tenant: t.clone(),
        key: ObjectKey::raw_upload(t, id),
        declared: ContentType::Png,
        max_bytes: 10_000_000,
        filename: Some("cat.png".into()),
        created_at: now,
        url_expires_at: now + Duration::minutes(15),
        expires_at,
        file_path: None,
        file_overwrite: false,
        eager_jobs: Vec::new(),
    }
}

async fn uploads_tenancy_and_lifecycle(db: &TestDb) {
    let repo = db.repo();
    let now = now();
    let t1 = tenant("t1");
    let t2 = tenant("t2");
    let nu = new_upload(&t1, now, now + Duration::hours(24));
    let id = nu.upload_id;
    repo.insert_upload(&nu).await.unwrap();

    let u = repo.get_upload(Some(&t1), id).await.unwrap().unwrap();
    assert_eq!(u.upload_id, id);
    assert_eq!(u.tenant, t1);
    assert_eq!(u.key, nu.key);
    assert_eq!(u.declared, ContentType::Png);
    assert_eq!(u.max_bytes, 10_000_000);
    assert_eq!(u.filename.as_deref(), Some("cat.png"));
    assert_eq!(u.status, UploadStatus::Pending);
    assert_eq!(u.created_at, now);
    assert_eq!(u.url_expires_at, nu.url_expires_at);
    assert_eq!(
        u.expires_at.timestamp_millis(),
        nu.expires_at.timestamp_millis()
    );
    assert!(u.size.is_none() && u.uploaded_at.is_none() && u.completed_at.is_none());
    assert!(repo.get_upload(Some(&t2), id).await.unwrap().is_none());
    assert_eq!(
        repo.get_upload(None, id).await.unwrap().map(|u| u.tenant),
        Some(t1.clone())
    );
    assert!(
        repo.get_upload(None, UploadId::new())
            .await
            .unwrap()
            .is_none()
    );

    // complete_upload only from `uploaded`.
    let ready = UploadOutcome::Ready {
        content_type: ContentType::Png,
        size: 4321,
        width: 640,
        height: 480,
        promoted_key: None,
    };
    assert!(
        repo.complete_upload(id, &ready, now)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        repo.get_upload(None, id).await.unwrap().unwrap().status,
        UploadStatus::Pending
    );

    let at = now + Duration::seconds(1);
    assert!(repo.mark_uploaded(id, 4321, at).await.unwrap());
    let u = repo.get_upload(None, id).await.unwrap().unwrap();
    assert_eq!(u.status, UploadStatus::Uploaded);
    assert_eq!(u.size, Some(4321));
    assert_eq!(u.uploaded_at, Some(at));
    assert!(
        repo.mark_uploaded(id, 4321, at).await.unwrap(),
        "re-upload before completion"
    );
    assert!(!repo.mark_uploaded(UploadId::new(), 1, at).await.unwrap());

    let done_at = now + Duration::seconds(2);
    let u = repo
        .complete_upload(id, &ready, done_at)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.status, UploadStatus::Ready);
    assert_eq!(u.content_type, Some(ContentType::Png));
    assert_eq!(
        (u.size, u.width, u.height),
        (Some(4321), Some(640), Some(480))
    );
    assert_eq!(u.completed_at, Some(done_at));
    assert!(u.reject_code.is_none() && u.reason.is_none());
    assert!(
        repo.complete_upload(id, &ready, done_at)
            .await
            .unwrap()
            .is_none(),
        "second completion"
    );
    assert!(
        !repo.mark_uploaded(id, 1, done_at).await.unwrap(),
        "no re-upload after completion"
    );
    let stored = repo.get_upload(Some(&t1), id).await.unwrap().unwrap();
    assert_eq!(stored.status, UploadStatus::Ready);
    assert_eq!(stored.size, Some(4321), "unchanged by refused calls");

    // A rejected one.
    let nu2 = new_upload(&t2, now, now + Duration::hours(24));
    repo.insert_upload(&nu2).await.unwrap();
    assert!(repo.mark_uploaded(nu2.upload_id, 10, now).await.unwrap());
    let rejected = UploadOutcome::Rejected {
        code: "not_an_image".into(),
        reason: "bytes are not a PNG".into(),
    };
    let u2 = repo
        .complete_upload(nu2.upload_id, &rejected, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u2.status, UploadStatus::Rejected);
    let u2 = repo
        .get_upload(Some(&t2), nu2.upload_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u2.status, UploadStatus::Rejected);
    assert_eq!(u2.reject_code.as_deref(), Some("not_an_image"));
    assert_eq!(u2.reason.as_deref(), Some("bytes are not a PNG"));
    assert!(u2.content_type.is_none() && u2.width.is_none());
    assert!(
        repo.complete_upload(nu2.upload_id, &ready, now)
            .await
            .unwrap()
            .is_none()
    );
}

async fn expired_uploads_sweep(db: &TestDb) {
    let repo = db.repo();
    let now = now();
    let t1 = tenant("t1");
    let old = new_upload(&t1, now, now - Duration::hours(2));
    let past = new_upload(&t1, now, now - Duration::hours(1));
    let future = new_upload(&t1, now, now + Duration::hours(1));
    for u in [&future, &past, &old] {
        repo.insert_upload(u).await.unwrap();
    }
    // A completed upload expires too (its raw object is swept).
    assert!(repo.mark_uploaded(past.upload_id, 5, now).await.unwrap());

    let ids = |v: Vec<photo_db::Upload>| v.into_iter().map(|u| u.upload_id).collect::<Vec<_>>();
    assert_eq!(
        ids(repo.expired_uploads(now, 100).await.unwrap()),
        vec![old.upload_id, past.upload_id],
        "only past-expiry rows, oldest first"
    );
    assert_eq!(
        ids(repo.expired_uploads(now, 1).await.unwrap()),
        vec![old.upload_id]
    );

    repo.mark_upload_expired(old.upload_id).await.unwrap();
    assert_eq!(
        repo.get_upload(None, old.upload_id)
            .await
            .unwrap()
            .unwrap()
            .status,
        UploadStatus::Expired
    );
    assert_eq!(
        ids(repo.expired_uploads(now, 100).await.unwrap()),
        vec![past.upload_id]
    );
    repo.mark_upload_expired(past.upload_id).await.unwrap();
    assert!(repo.expired_uploads(now, 100).await.unwrap().is_empty());
    assert_eq!(
        ids(repo
            .expired_uploads(now + Duration::hours(2), 100)
            .await
            .unwrap()),
        vec![future.upload_id]
    );
}

// ---------------------------------------------------------------- jobs

async fn job_round_trip_and_tenancy(db: &TestDb) {
    let repo = db.repo();
    let now = now();
    let t1 = tenant("t1");
    let up = UploadId::new();
    let nj = NewJob {
        upload_id: Some(up),
        s3_key: Some(ObjectKey::raw_upload(&t1, up)),
        filename: Some("cat.png".into()),
        content_type: Some(ContentType::Png),
        ..new_job(&t1, 5)
    };
    let inserted = repo.insert_job(&nj, now).await.unwrap();
    let j = repo.get_job(&t1, nj.job_id).await.unwrap().unwrap();
    for j in [&inserted, &j] {
        assert_eq!(j.job_id, nj.job_id);
        assert_eq!(j.tenant, t1);
        assert_eq!(j.job_type, JobType::Thumbnail);
        assert_eq!(j.spec, thumb_spec());
        assert_eq!(j.upload_id, Some(up));
        assert_eq!(j.s3_key, nj.s3_key);
        assert_eq!(j.filename.as_deref(), Some("cat.png"));
        assert_eq!(j.content_type, Some(ContentType::Png));
        assert_eq!(j.status, JobStatus::Submitted);
        assert_eq!(j.attempts, 0);
        assert_eq!(j.max_attempts, 5);
        assert!(j.error_code.is_none() && j.error_message.is_none());
        assert!(j.outputs.is_empty());
        assert_eq!(j.created_at, now);
        assert_eq!(j.updated_at, now);
        assert_eq!(j.run_at.timestamp_millis(), now.timestamp_millis());
        assert!(j.started_at.is_none() && j.completed_at.is_none());
        assert!(j.lease_owner.is_none());
    }
    assert!(
        repo.get_job(&tenant("t2"), nj.job_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(repo.get_job(&t1, JobId::new()).await.unwrap().is_none());
    assert_eq!(
        repo.get_job_any_tenant(nj.job_id)
            .await
            .unwrap()
            .map(|j| j.tenant),
        Some(t1.clone())
    );
    assert!(
        repo.insert_job(&nj, now).await.is_err(),
        "duplicate job id refused"
    );

    let ev = repo.job_events(nj.job_id).await.unwrap();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].status, "submitted");
    assert_eq!(ev[0].attempt, 0);
    assert!(ev[0].message.is_none());

    // Transform specs round-trip too.
    let tj = new_job_with(JobId::new(), &t1, transform_spec(), 3);
    repo.insert_job(&tj, now).await.unwrap();
    let got = repo.get_job(&t1, tj.job_id).await.unwrap().unwrap();
    assert_eq!(got.job_type, JobType::Transform);
    assert_eq!(got.spec, transform_spec());
}

async fn list_jobs_filters_and_pages(db: &TestDb) {
    let repo = db.repo();
    let base = now() - Duration::hours(1);
    let t1 = tenant("t1");
    let t2 = tenant("t2");
    let mut ids: Vec<JobId> = (0..25).map(|_| JobId::new()).collect();
    ids.sort();
    for (i, id) in ids.iter().enumerate() {
        let spec = if i % 2 == 0 {
            thumb_spec()
        } else {
            transform_spec()
        };
        repo.insert_job(
            &new_job_with(*id, &t1, spec, 3),
            base + Duration::seconds(i as i64),
        )
        .await
        .unwrap();
    }
    // Another tenant's jobs, newer than all of t1's.
    for i in 0..3 {
        repo.insert_job(&new_job(&t2, 3), base + Duration::seconds(100 + i))
            .await
            .unwrap();
    }
    // The three oldest (all t1's) get started.
    let mut started = Vec::new();
    for _ in 0..3 {
        let c = repo
            .claim_job("w", Duration::minutes(5), base + Duration::seconds(200))
            .await
            .unwrap()
            .unwrap();
        started.push(c.job.job_id);
    }
    assert_eq!(started, ids[..3].to_vec());

    let list = |f: JobFilter| {
        let repo = repo.clone();
        let t1 = t1.clone();
        async move {
            repo.list_jobs(&t1, &f)
                .await
                .unwrap()
                .into_iter()
                .map(|j| j.job_id)
                .collect::<Vec<_>>()
        }
    };
    let desc = |v: &[JobId]| v.iter().rev().copied().collect::<Vec<_>>();

    let all = list(JobFilter {
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(all, desc(&ids), "only t1's, newest first");

    let st = list(JobFilter {
        status: Some(JobStatus::Started),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(st, desc(&ids[..3]));
    let sub = list(JobFilter {
        status: Some(JobStatus::Submitted),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(sub, desc(&ids[3..]));

    let tr = list(JobFilter {
        job_type: Some(JobType::Transform),
        limit: 100,
        ..Default::default()
    })
    .await;
    let expect_tr: Vec<JobId> = ids.iter().skip(1).step_by(2).copied().collect();
    assert_eq!(tr.len(), 12);
    assert_eq!(tr, desc(&expect_tr));

    let after = list(JobFilter {
        created_after: Some(base + Duration::seconds(10)),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(after, desc(&ids[10..]), "created_after is inclusive");
    let before = list(JobFilter {
        created_before: Some(base + Duration::seconds(5)),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(before, desc(&ids[..5]), "created_before is exclusive");
    // Sub-second bounds.
    let window = list(JobFilter {
        created_after: Some(base + ms(4_500)),
        created_before: Some(base + ms(8_001)),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(window, desc(&ids[5..=8]));
    let combined = list(JobFilter {
        created_after: Some(base + Duration::seconds(2)),
        created_before: Some(base + Duration::seconds(9)),
        job_type: Some(JobType::Thumbnail),
        status: Some(JobStatus::Submitted),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(combined, vec![ids[8], ids[6], ids[4]]);

    // Cursor pagination.
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = Vec::new();
    loop {
        let page = list(JobFilter {
            before_id: cursor,
            limit: 10,
            ..Default::default()
        })
        .await;
        pages.push(page.len());
        let Some(last) = page.last() else { break };
        cursor = Some(*last);
        seen.extend(page);
        assert!(pages.len() < 10, "pagination does not terminate");
    }
    assert_eq!(pages, vec![10, 10, 5, 0]);
    assert_eq!(seen, desc(&ids), "all 25 exactly once, newest first");
}

// ---------------------------------------------------------------- the queue

async fn claim_takes_oldest_due_job(db: &TestDb) {
    let repo = db.repo();
    let t0 = now();
    let t1 = tenant("t1");
    let a = repo.insert_job(&new_job(&t1, 3), t0).await.unwrap();
    let b = repo
        .insert_job(&new_job(&t1, 3), t0 + ms(10))
        .await
        .unwrap();
    let future = repo
        .insert_job(&new_job(&t1, 3), t0 + Duration::hours(1))
        .await
        .unwrap();
    let now = t0 + Duration::seconds(1);

    let c1 = repo
        .claim_job("worker-a", Duration::seconds(30), now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c1.job.job_id, a.job_id, "oldest first");
    assert_eq!(c1.token.job_id, a.job_id);
    assert_eq!(c1.job.status, JobStatus::Started);
    assert_eq!(c1.job.attempts, 1);
    assert_eq!(c1.job.lease_owner.as_deref(), Some("worker-a"));
    assert_eq!(c1.job.started_at, Some(now));
    let stored = job(&repo, a.job_id).await;
    assert_eq!(stored.status, JobStatus::Started);
    assert_eq!(stored.attempts, 1);
    assert_eq!(stored.lease_owner.as_deref(), Some("worker-a"));

    let c2 = repo
        .claim_job("worker-b", Duration::seconds(30), now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c2.job.job_id, b.job_id);
    assert_ne!(c1.token.token, c2.token.token);
    assert_eq!(c2.job.lease_owner.as_deref(), Some("worker-b"));

    assert!(
        repo.claim_job("worker-c", Duration::seconds(30), now)
            .await
            .unwrap()
            .is_none(),
        "the future job is not due"
    );
    assert_eq!(job(&repo, future.job_id).await.status, JobStatus::Submitted);
    // Finish the first two so their leases cannot expire and be re-claimed below.
    assert!(repo.complete_job(&c1.token, &[], now).await.unwrap());
    assert!(repo.complete_job(&c2.token, &[], now).await.unwrap());
    let c3 = repo
        .claim_job("worker-c", Duration::seconds(30), t0 + Duration::hours(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c3.job.job_id, future.job_id, "due once its time came");

    let ev = repo.job_events(a.job_id).await.unwrap();
    let ev: Vec<(&str, u32)> = ev.iter().map(|e| (e.status.as_str(), e.attempt)).collect();
    assert_eq!(ev, vec![("submitted", 0), ("started", 1), ("completed", 1)]);
}

async fn expired_lease_is_fenced(db: &TestDb) {
    let repo = db.repo();
    let t0 = now();
    let j = repo
        .insert_job(&new_job(&tenant("t1"), 3), t0)
        .await
        .unwrap();
    let now = t0 + ms(100);
    let a = repo
        .claim_job("a", Duration::seconds(1), now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.job.job_id, j.job_id);
    assert!(
        repo.claim_job("b", Duration::seconds(1), now + ms(500))
            .await
            .unwrap()
            .is_none(),
        "lease still held"
    );
    let b = repo
        .claim_job("b", Duration::seconds(30), now + Duration::seconds(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.job.job_id, j.job_id);
    assert_eq!(b.job.attempts, 2);
    assert_eq!(b.job.lease_owner.as_deref(), Some("b"));
    assert_eq!(b.job.started_at, Some(now), "first start kept");
    assert_ne!(a.token, b.token);

    // A's token no longer counts.
    let late = now + Duration::seconds(3);
    assert!(
        !repo
            .heartbeat(&a.token, late + Duration::seconds(60))
            .await
            .unwrap()
    );
    assert!(
        !repo
            .complete_job(&a.token, &[output(j.job_id)], late)
            .await
            .unwrap()
    );
    let fail = Failure {
        code: "boom".into(),
        message: "A failed".into(),
        retry_at: Some(late + Duration::seconds(10)),
    };
    assert_eq!(repo.fail_job(&a.token, &fail, late).await.unwrap(), None);
    let permanent = Failure {
        retry_at: None,
        ..fail.clone()
    };
    assert_eq!(
        repo.fail_job(&a.token, &permanent, late).await.unwrap(),
        None
    );
    assert!(!repo.release_job(&a.token, late).await.unwrap());
    let forged = ClaimToken {
        job_id: j.job_id,
        token: String::new(),
    };
    assert!(!repo.complete_job(&forged, &[], late).await.unwrap());

    let s = job(&repo, j.job_id).await;
    assert_eq!(s.status, JobStatus::Started);
    assert_eq!(s.attempts, 2);
    assert_eq!(s.lease_owner.as_deref(), Some("b"));
    assert!(s.outputs.is_empty() && s.error_code.is_none() && s.error_message.is_none());
    assert!(s.completed_at.is_none());
    // B's lease (30s from now+2s) was not extended by A's heartbeat: still held at +20s, ...
    assert!(
        repo.claim_job("c", Duration::seconds(1), now + Duration::seconds(20))
            .await
            .unwrap()
            .is_none()
    );

    let outs = vec![output(j.job_id)];
    let done = now + Duration::seconds(4);
    assert!(repo.complete_job(&b.token, &outs, done).await.unwrap());
    assert!(
        !repo.complete_job(&b.token, &outs, done).await.unwrap(),
        "completes once"
    );
    let s = job(&repo, j.job_id).await;
    assert_eq!(s.status, JobStatus::Completed);
    assert_eq!(s.outputs, outs);
    assert_eq!(s.completed_at, Some(done));
    assert!(s.lease_owner.is_none());
    assert_eq!(event_count(&repo, j.job_id, "completed").await, 1);
    // Nothing is claimable any more, even long after.
    assert!(
        repo.claim_job("c", Duration::seconds(1), now + Duration::hours(1))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(job(&repo, j.job_id).await.status, JobStatus::Completed);
}

async fn heartbeat_extends_lease(db: &TestDb) {
    let repo = db.repo();
    let t0 = now();
    let j = repo
        .insert_job(&new_job(&tenant("t1"), 3), t0)
        .await
        .unwrap();
    let a = repo
        .claim_job("a", Duration::seconds(1), t0)
        .await
        .unwrap()
        .unwrap();
    assert!(
        repo.heartbeat(&a.token, t0 + ms(1800)).await.unwrap(),
        "heartbeat at t0+800ms"
    );
    assert!(
        repo.claim_job("b", Duration::seconds(1), t0 + ms(1500))
            .await
            .unwrap()
            .is_none(),
        "extended lease still held"
    );
    let b = repo
        .claim_job("b", Duration::seconds(1), t0 + ms(1900))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        b.job.job_id, j.job_id,
        "claimable once the extension ran out"
    );
    assert_eq!(b.job.attempts, 2);
    assert!(!repo.heartbeat(&a.token, t0 + ms(5000)).await.unwrap());
    assert!(repo.heartbeat(&b.token, t0 + ms(5000)).await.unwrap());
}

async fn fail_job_retries_then_dies(db: &TestDb) {
    let repo = db.repo();
    let t0 = now();
    let j = repo
        .insert_job(&new_job(&tenant("t1"), 2), t0)
        .await
        .unwrap();
    let c = repo
        .claim_job("a", Duration::seconds(30), t0)
        .await
        .unwrap()
        .unwrap();
    let retry_at = t0 + Duration::seconds(10);
    let f1 = Failure {
        code: "storage_unavailable".into(),
        message: "first attempt failed".into(),
        retry_at: Some(retry_at),
    };
    assert_eq!(
        repo.fail_job(&c.token, &f1, t0 + ms(100)).await.unwrap(),
        Some(JobStatus::Retrying)
    );
    let s = job(&repo, j.job_id).await;
    assert_eq!(s.status, JobStatus::Retrying);
    assert_eq!(s.attempts, 1);
    assert_eq!(s.run_at.timestamp_millis(), retry_at.timestamp_millis());
    assert_eq!(s.error_code.as_deref(), Some("storage_unavailable"));
    assert!(s.completed_at.is_none() && s.lease_owner.is_none());
    assert_eq!(
        repo.fail_job(&c.token, &f1, t0 + ms(100)).await.unwrap(),
        None,
        "token spent"
    );

    assert!(
        repo.claim_job("b", Duration::seconds(30), t0 + Duration::seconds(5))
            .await
            .unwrap()
            .is_none(),
        "not before retry_at"
    );
    let c2 = repo
        .claim_job("b", Duration::seconds(30), t0 + Duration::seconds(11))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c2.job.job_id, j.job_id);
    assert_eq!(c2.job.attempts, 2);
    assert_eq!(c2.job.status, JobStatus::Started);

    let f2 = Failure {
        code: "storage_unavailable".into(),
        message: "second attempt failed".into(),
        retry_at: Some(t0 + Duration::seconds(60)),
    };
    let dead_at = t0 + Duration::seconds(12);
    assert_eq!(
        repo.fail_job(&c2.token, &f2, dead_at).await.unwrap(),
        Some(JobStatus::Dead)
    );
    let s = job(&repo, j.job_id).await;
    assert_eq!(s.status, JobStatus::Dead);
    assert_eq!(s.error_code.as_deref(), Some("storage_unavailable"));
    assert_eq!(s.error_message.as_deref(), Some("second attempt failed"));
    assert_eq!(s.completed_at, Some(dead_at));
    assert!(
        repo.claim_job("c", Duration::seconds(30), t0 + Duration::hours(1))
            .await
            .unwrap()
            .is_none(),
        "dead jobs are not claimed"
    );

    let ev = repo.job_events(j.job_id).await.unwrap();
    let ev: Vec<(&str, u32, Option<&str>)> = ev
        .iter()
        .map(|e| (e.status.as_str(), e.attempt, e.message.as_deref()))
        .collect();
    assert_eq!(
        ev,
        vec![
            ("submitted", 0, None),
            ("started", 1, None),
            ("retrying", 1, Some("first attempt failed")),
            ("started", 2, None),
            ("dead", 2, Some("second attempt failed")),
        ]
    );
}

async fn permanent_failure_fails_at_once(db: &TestDb) {
    let repo = db.repo();
    let t0 = now();
    let j = repo
        .insert_job(&new_job(&tenant("t1"), 5), t0)
        .await
        .unwrap();
    let c = repo
        .claim_job("a", Duration::seconds(30), t0)
        .await
        .unwrap()
        .unwrap();
    let f = Failure {
        code: "unsupported_image".into(),
        message: "not an image".into(),
        retry_at: None,
    };
    let at = t0 + ms(50);
    assert_eq!(
        repo.fail_job(&c.token, &f, at).await.unwrap(),
        Some(JobStatus::Failed)
    );
    let s = job(&repo, j.job_id).await;
    assert_eq!(s.status, JobStatus::Failed);
    assert_eq!(s.attempts, 1);
    assert_eq!(s.error_code.as_deref(), Some("unsupported_image"));
    assert_eq!(s.error_message.as_deref(), Some("not an image"));
    assert_eq!(s.completed_at, Some(at));
    assert!(
        repo.claim_job("b", Duration::seconds(30), t0 + Duration::hours(1))
            .await
            .unwrap()
            .is_none()
    );
}

async fn lease_lost_on_last_attempt_is_dead(db: &TestDb) {
    let repo = db.repo();
    let t0 = now();
    let t1 = tenant("t1");
    let j = repo.insert_job(&new_job(&t1, 1), t0).await.unwrap();
    let a = repo
        .claim_job("a", Duration::seconds(1), t0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.job.job_id, j.job_id);
    assert!(
        repo.claim_job("b", Duration::seconds(1), t0 + Duration::seconds(2))
            .await
            .unwrap()
            .is_none(),
        "no attempts left: not re-claimed"
    );
    let s = job(&repo, j.job_id).await;
    assert_eq!(s.status, JobStatus::Dead);
    assert_eq!(s.error_code.as_deref(), Some("worker_lost"));
    assert!(s.error_message.is_some());
    assert_eq!(s.attempts, 1);
    assert_eq!(s.completed_at, Some(t0 + Duration::seconds(2)));
    assert!(s.lease_owner.is_none());
    assert!(
        !repo
            .complete_job(&a.token, &[], t0 + Duration::seconds(3))
            .await
            .unwrap(),
        "the lost worker cannot complete a dead job"
    );
    assert_eq!(event_count(&repo, j.job_id, "dead").await, 1);

    // With another job queued, the claim that buries the first returns the other.
    let j2 = repo.insert_job(&new_job(&t1, 1), t0).await.unwrap();
    let j3 = repo.insert_job(&new_job(&t1, 2), t0 + ms(1)).await.unwrap();
    let c2 = repo
        .claim_job("a", Duration::seconds(1), t0 + Duration::seconds(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c2.job.job_id, j2.job_id);
    let c3 = repo
        .claim_job("b", Duration::seconds(1), t0 + Duration::seconds(20))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c3.job.job_id, j3.job_id, "j2 buried, j3 claimed");
    assert_eq!(job(&repo, j2.job_id).await.status, JobStatus::Dead);
}

async fn release_job_gives_the_attempt_back(db: &TestDb) {
    let repo = db.repo();
    let t0 = now();
    let j = repo
        .insert_job(&new_job(&tenant("t1"), 3), t0)
        .await
        .unwrap();
    let a = repo
        .claim_job("a", Duration::seconds(30), t0)
        .await
        .unwrap()
        .unwrap();
    let at = t0 + Duration::seconds(1);
    assert!(repo.release_job(&a.token, at).await.unwrap());
    assert!(!repo.release_job(&a.token, at).await.unwrap(), "once");
    let s = job(&repo, j.job_id).await;
    assert_eq!(s.status, JobStatus::Submitted);
    assert_eq!(s.attempts, 0);
    assert!(s.lease_owner.is_none());
    assert!(!repo.complete_job(&a.token, &[], at).await.unwrap());

    let b = repo
        .claim_job("b", Duration::seconds(30), at)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.job.job_id, j.job_id);
    assert_eq!(b.job.attempts, 1);
    assert!(repo.complete_job(&b.token, &[], at).await.unwrap());
}

// ---------------------------------------------------------------- the Temporal engine

async fn sql_workers_never_claim_temporal_jobs(db: &TestDb) {
    let repo = db.repo();
    let t0 = now();
    let t1 = tenant("t1");
    let tj = repo.insert_job(&temporal_job(&t1, 3), t0).await.unwrap();
    assert_eq!(tj.engine, JobEngine::Temporal);
    let route = tj.temporal.clone().unwrap();
    assert_eq!(route.workflow_id, format!("photo-job-{}", tj.job_id));
    assert_eq!(route.task_queue, "image-tasks");
    let sj = repo.insert_job(&new_job(&t1, 3), t0 + ms(1)).await.unwrap();
    assert_eq!(sj.engine, JobEngine::Sql);
    assert!(sj.temporal.is_none());
    let c = repo
        .claim_job("w", Duration::seconds(1), t0 + ms(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        c.job.job_id, sj.job_id,
        "the SQL job, though the Temporal one is older"
    );
    assert!(
        repo.claim_job("w", Duration::seconds(1), t0 + ms(10))
            .await
            .unwrap()
            .is_none()
    );
    assert!(repo.complete_job(&c.token, &[], t0 + ms(20)).await.unwrap());
    // A Temporal attempt whose lease ran out on its last attempt is Temporal's to judge: the
    // SQL claim neither takes it over nor buries it.
    let last = repo.insert_job(&temporal_job(&t1, 1), t0).await.unwrap();
    repo.start_attempt(last.job_id, 1, "a", Duration::seconds(1), t0)
        .await
        .unwrap()
        .unwrap();
    assert!(
        repo.claim_job("w", Duration::seconds(1), t0 + Duration::seconds(30))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(job(&repo, last.job_id).await.status, JobStatus::Started);
    // And start_attempt refuses SQL jobs.
    let other = repo.insert_job(&new_job(&t1, 3), t0).await.unwrap();
    assert!(
        repo.start_attempt(other.job_id, 1, "a", Duration::seconds(1), t0)
            .await
            .unwrap()
            .is_none()
    );
}

async fn temporal_attempts_are_fenced_like_claims(db: &TestDb) {
    let repo = db.repo();
    let t0 = now();
    let j = repo
        .insert_job(&temporal_job(&tenant("t1"), 3), t0)
        .await
        .unwrap();
    let a1 = repo
        .start_attempt(j.job_id, 1, "host:1:w", Duration::seconds(5), t0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a1.job.status, JobStatus::Started);
    assert_eq!(a1.job.attempts, 1);
    assert_eq!(a1.job.lease_owner.as_deref(), Some("host:1:w"));
    assert_eq!(a1.job.started_at, Some(t0));
    assert!(
        repo.heartbeat(&a1.token, t0 + Duration::seconds(10))
            .await
            .unwrap()
    );
    // The worker of attempt 1 vanished; Temporal runs attempt 2 elsewhere.
    let t2 = t0 + Duration::seconds(20);
    let a2 = repo
        .start_attempt(j.job_id, 2, "host:2:w", Duration::seconds(5), t2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a2.job.attempts, 2);
    assert_eq!(a2.job.started_at, Some(t0), "first start kept");
    assert!(!repo.heartbeat(&a1.token, t2).await.unwrap(), "stale token");
    assert!(!repo.complete_job(&a1.token, &[], t2).await.unwrap());
    assert!(
        repo.start_attempt(j.job_id, 1, "late", Duration::seconds(5), t2)
            .await
            .unwrap()
            .is_none(),
        "an earlier attempt never comes back"
    );
    // Retryable failure → retrying, exactly as a SQL worker records it.
    let st = repo
        .fail_job(
            &a2.token,
            &Failure {
                code: "storage_error".into(),
                message: "boom".into(),
                retry_at: Some(t2 + Duration::seconds(2)),
            },
            t2,
        )
        .await
        .unwrap();
    assert_eq!(st, Some(JobStatus::Retrying));
    let a3 = repo
        .start_attempt(j.job_id, 3, "host:3:w", Duration::seconds(5), t2 + ms(2500))
        .await
        .unwrap()
        .unwrap();
    let out = output(j.job_id);
    assert!(
        repo.complete_job(&a3.token, std::slice::from_ref(&out), t2 + ms(3000))
            .await
            .unwrap()
    );
    let done = job(&repo, j.job_id).await;
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(done.attempts, 3);
    assert_eq!(done.outputs, vec![out]);
    assert!(
        repo.start_attempt(j.job_id, 4, "x", Duration::seconds(5), t2 + ms(4000))
            .await
            .unwrap()
            .is_none(),
        "terminal: refused"
    );
    let statuses: Vec<String> = repo
        .job_events(j.job_id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(
        statuses,
        [
            "submitted",
            "started",
            "started",
            "retrying",
            "started",
            "completed"
        ]
    );
    assert!(
        !repo
            .mark_dead(j.job_id, "worker_lost", "x", t2 + ms(5000))
            .await
            .unwrap(),
        "mark_dead leaves a terminal job alone"
    );
}

async fn mark_dead_is_the_last_word(db: &TestDb) {
    let repo = db.repo();
    let t0 = now();
    let j = repo
        .insert_job(&temporal_job(&tenant("t1"), 2), t0)
        .await
        .unwrap();
    let a = repo
        .start_attempt(j.job_id, 2, "w", Duration::seconds(1), t0)
        .await
        .unwrap()
        .unwrap();
    let at = t0 + Duration::seconds(3);
    assert!(
        repo.mark_dead(j.job_id, "worker_lost", "lost on every attempt", at)
            .await
            .unwrap()
    );
    let d = job(&repo, j.job_id).await;
    assert_eq!(d.status, JobStatus::Dead);
    assert_eq!(d.error_code.as_deref(), Some("worker_lost"));
    assert_eq!(d.completed_at, Some(at));
    assert!(d.lease_owner.is_none());
    assert!(!repo.complete_job(&a.token, &[], at).await.unwrap());
    assert_eq!(event_count(&repo, j.job_id, "dead").await, 1);
}

async fn the_outbox_lists_undispatched_temporal_jobs(db: &TestDb) {
    let repo = db.repo();
    let t0 = now();
    let t1 = tenant("t1");
    let a = repo.insert_job(&temporal_job(&t1, 3), t0).await.unwrap();
    let b = repo
        .insert_job(&temporal_job(&t1, 3), t0 + ms(10))
        .await
        .unwrap();
    repo.insert_job(&new_job(&t1, 3), t0).await.unwrap();
    let ids = |v: Vec<Job>| v.into_iter().map(|j| j.job_id).collect::<Vec<_>>();
    assert_eq!(
        ids(repo
            .undispatched_temporal_jobs(t0 + ms(5), 10)
            .await
            .unwrap()),
        [a.job_id],
        "only temporal jobs created by then"
    );
    assert_eq!(
        ids(repo
            .undispatched_temporal_jobs(t0 + ms(20), 10)
            .await
            .unwrap()),
        [a.job_id, b.job_id]
    );
    repo.mark_dispatched(a.job_id, t0 + ms(30)).await.unwrap();
    assert_eq!(
        ids(repo
            .undispatched_temporal_jobs(t0 + ms(40), 10)
            .await
            .unwrap()),
        [b.job_id]
    );
    assert_eq!(
        repo.undispatched_temporal_jobs(t0 + ms(40), 0)
            .await
            .unwrap()
            .len(),
        0
    );
}

async fn job_counts_match(db: &TestDb) {
    let repo = db.repo();
    let t0 = now();
    let t1 = tenant("t1");
    assert!(repo.job_counts().await.unwrap().is_empty());
    for i in 0..6 {
        repo.insert_job(&new_job(&t1, 2), t0 + ms(i)).await.unwrap();
    }
    let now = t0 + Duration::seconds(1);
    let mut claims = Vec::new();
    for _ in 0..4 {
        claims.push(
            repo.claim_job("w", Duration::seconds(60), now)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert!(repo.complete_job(&claims[0].token, &[], now).await.unwrap());
    let permanent = Failure {
        code: "bad".into(),
        message: "bad".into(),
        retry_at: None,
    };
    assert_eq!(
        repo.fail_job(&claims[1].token, &permanent, now)
            .await
            .unwrap(),
        Some(JobStatus::Failed)
    );
    let retry = Failure {
        retry_at: Some(now + Duration::seconds(5)),
        ..permanent
    };
    assert_eq!(
        repo.fail_job(&claims[2].token, &retry, now).await.unwrap(),
        Some(JobStatus::Retrying)
    );
    let counts: HashMap<JobStatus, u64> = repo.job_counts().await.unwrap().into_iter().collect();
    let expect: HashMap<JobStatus, u64> = [
        (JobStatus::Submitted, 2),
        (JobStatus::Started, 1),
        (JobStatus::Completed, 1),
        (JobStatus::Failed, 1),
        (JobStatus::Retrying, 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(counts, expect);
}

async fn concurrent_workers_complete_each_job_once(db: &TestDb) {
    const JOBS: usize = 200;
    let repo = db.repo();
    let other = db.reopen().await.into_repo();
    let t1 = tenant("t1");
    let t0 = now() - Duration::seconds(10);
    let mut ids = Vec::new();
    for i in 0..JOBS {
        let j = repo
            .insert_job(&new_job(&t1, 3), t0 + ms(i as i64))
            .await
            .unwrap();
        ids.push(j.job_id);
    }

    // Every claim ever returned, with its worker.
    let claimed: Arc<Mutex<Vec<(JobId, String)>>> = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..12 {
        // Eight workers share one pool; four more use a second pool on the same database, like
        // another process would.
        let r = if w < 8 { repo.clone() } else { other.clone() };
        let claimed = claimed.clone();
        tasks.push(tokio::spawn(async move {
            let worker = format!("worker-{w}");
            let mut done = 0usize;
            while let Some(c) = r
                .claim_job(&worker, Duration::minutes(5), now())
                .await
                .unwrap()
            {
                assert_eq!(c.job.attempts, 1, "never re-claimed");
                assert_eq!(c.job.lease_owner.as_deref(), Some(worker.as_str()));
                claimed.lock().unwrap().push((c.job.job_id, worker.clone()));
                let outs = [output(c.job.job_id)];
                assert!(r.complete_job(&c.token, &outs, now()).await.unwrap());
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, JOBS);

    let claimed = claimed.lock().unwrap().clone();
    assert_eq!(claimed.len(), JOBS);
    let unique: HashSet<JobId> = claimed.iter().map(|(id, _)| *id).collect();
    assert_eq!(unique.len(), JOBS, "no job handed to two workers");
    assert_eq!(unique, ids.iter().copied().collect::<HashSet<_>>());
    let workers: HashSet<&str> = claimed.iter().map(|(_, w)| w.as_str()).collect();
    assert!(workers.len() > 1, "work was shared: {workers:?}");

    for id in &ids {
        assert_eq!(event_count(&repo, *id, "completed").await, 1, "{id}");
        assert_eq!(event_count(&repo, *id, "started").await, 1, "{id}");
        let j = job(&repo, *id).await;
        assert_eq!(j.status, JobStatus::Completed);
        assert_eq!(j.outputs, vec![output(*id)]);
    }
    let counts: HashMap<JobStatus, u64> = other.job_counts().await.unwrap().into_iter().collect();
    assert_eq!(counts, HashMap::from([(JobStatus::Completed, JOBS as u64)]));
}

async fn concurrent_first_opens_migrate_once(db: &TestDb) {
    // The API process and its workers may start together on a fresh database.
    for _ in 0..5 {
        let (_guard, url) = db.blank().await;
        let open = || async {
            let d = photo_db::connect(&url, &common::pg_opts()).await.unwrap();
            let ran = d.migrate().await.unwrap();
            (d, ran)
        };
        // SQLite connections run on their own sqlx worker threads, PostgreSQL ones on the
        // multi-threaded runtime, so these really run at once.
        let (a, b, c, d) = tokio::join!(open(), open(), open(), open());
        let ran: usize = [&a, &b, &c, &d].iter().map(|(_, n)| n).sum();
        assert_eq!(
            ran,
            PgRepo::migration_count(),
            "each migration ran exactly once"
        );
        for (d, _) in [&a, &b, &c, &d] {
            assert_eq!(d.migrate().await.unwrap(), 0);
            assert!(TestDb::table_exists_in(d, "job_logs").await);
        }
        let n = common::scalar(&a.0, "SELECT COUNT(*) FROM schema_migrations").await;
        assert_eq!(n, PgRepo::migration_count() as i64);
        for (d, _) in [a, b, c, d] {
            if let Database::Postgres(r) = d {
                r.close().await;
            }
        }
    }
}

/// Many claimers, each with its own pool (like workers on separate hosts), race for one queue:
/// every job is claimed exactly once. On PostgreSQL this is `FOR UPDATE SKIP LOCKED`.
async fn many_claimers_never_share_a_job(db: &TestDb) {
    const CLAIMERS: usize = 8;
    const PER_CLAIMER: usize = 200;
    const JOBS: usize = CLAIMERS * PER_CLAIMER;
    let repo = db.repo();
    let t1 = tenant("t1");
    let t0 = now() - Duration::seconds(10);
    let mut ids = HashSet::new();
    for i in 0..JOBS {
        let j = repo
            .insert_job(&new_job(&t1, 3), t0 + ms(i as i64))
            .await
            .unwrap();
        ids.insert(j.job_id);
    }
    let mut pools = Vec::new();
    for _ in 0..CLAIMERS {
        pools.push(db.reopen().await);
    }
    let start = Instant::now();
    let barrier = Arc::new(tokio::sync::Barrier::new(CLAIMERS));
    let mut tasks = Vec::new();
    for (w, pool) in pools.iter().enumerate() {
        let r = pool.clone().into_repo();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let worker = format!("claimer-{w}");
            let mut mine = Vec::new();
            barrier.wait().await;
            // Claims are held (never completed here): a job must not be handed out twice
            // while its first claim is live.
            while let Some(c) = r
                .claim_job(&worker, Duration::minutes(5), now())
                .await
                .unwrap()
            {
                assert_eq!(c.job.attempts, 1, "never re-claimed");
                mine.push(c);
            }
            mine
        }));
    }
    let mut all = Vec::new();
    let mut per_claimer = Vec::new();
    for t in tasks {
        let mine = t.await.unwrap();
        per_claimer.push(mine.len());
        all.extend(mine);
    }
    let took = start.elapsed();
    eprintln!(
        "{}: {CLAIMERS} claimers took {JOBS} jobs in {took:?} ({:.0} claims/s); per claimer \
         {per_claimer:?}",
        db.url().split(':').next().unwrap_or("?"),
        JOBS as f64 / took.as_secs_f64()
    );
    assert_eq!(all.len(), JOBS, "every job claimed, none twice");
    let unique: HashSet<JobId> = all.iter().map(|c| c.job.job_id).collect();
    assert_eq!(unique, ids, "each job exactly once");
    assert!(
        per_claimer.iter().filter(|n| **n > 0).count() > 1,
        "claims were spread: {per_claimer:?}"
    );
    let counts: HashMap<JobStatus, u64> = repo.job_counts().await.unwrap().into_iter().collect();
    assert_eq!(counts, HashMap::from([(JobStatus::Started, JOBS as u64)]));
    // Every token still fences its own job only.
    let (a, b) = (&all[0], &all[1]);
    let crossed = ClaimToken {
        job_id: a.job.job_id,
        token: b.token.token.clone(),
    };
    assert!(!repo.complete_job(&crossed, &[], now()).await.unwrap());
    assert!(repo.complete_job(&a.token, &[], now()).await.unwrap());
    for p in pools {
        if let Database::Postgres(r) = p {
            r.close().await;
        }
    }
}

// ---------------------------------------------------------------- cancel and retry

async fn cancel_revokes_the_claim_and_only_unfinished_jobs(db: &TestDb) {
    let repo = db.repo();
    let t1 = tenant("t1");
    // Queued: cancelled, never claimable.
    let queued = repo.insert_job(&new_job(&t1, 3), now()).await.unwrap();
    assert!(
        repo.cancel_job(&tenant("t2"), queued.job_id, now())
            .await
            .unwrap()
            .is_none(),
        "another tenant cannot cancel it"
    );
    let c = repo
        .cancel_job(&t1, queued.job_id, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.status, JobStatus::Cancelled);
    assert!(c.completed_at.is_some());
    assert!(
        repo.claim_job("w", ms(30_000), now())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        repo.cancel_job(&t1, queued.job_id, now())
            .await
            .unwrap()
            .is_none(),
        "a cancelled job is finished"
    );

    // Running: the claim's token stops working for heartbeat, complete and fail.
    let running = repo.insert_job(&new_job(&t1, 3), now()).await.unwrap();
    let claim = repo
        .claim_job("w", ms(30_000), now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.job.job_id, running.job_id);
    let c = repo
        .cancel_job(&t1, running.job_id, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((c.status, c.attempts), (JobStatus::Cancelled, 1));
    assert!(c.lease_owner.is_none());
    assert!(
        !repo
            .heartbeat(&claim.token, now() + ms(30_000))
            .await
            .unwrap()
    );
    assert!(
        !repo
            .complete_job(&claim.token, &[output(running.job_id)], now())
            .await
            .unwrap()
    );
    let f = Failure {
        code: "timeout".into(),
        message: "late".into(),
        retry_at: Some(now()),
    };
    assert_eq!(repo.fail_job(&claim.token, &f, now()).await.unwrap(), None);
    assert!(!repo.release_job(&claim.token, now()).await.unwrap());
    let after = job(&repo, running.job_id).await;
    assert_eq!(after.status, JobStatus::Cancelled);
    assert!(after.outputs.is_empty());
    let history: Vec<String> = repo
        .job_events(running.job_id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(history, ["submitted", "started", "cancelled"]);

    // Temporal: a cancelled job's next attempt refuses to start, and it leaves the outbox.
    let tj = repo.insert_job(&temporal_job(&t1, 3), now()).await.unwrap();
    repo.cancel_job(&t1, tj.job_id, now())
        .await
        .unwrap()
        .unwrap();
    assert!(
        repo.start_attempt(tj.job_id, 1, "w", ms(30_000), now())
            .await
            .unwrap()
            .is_none()
    );
    let outbox = repo
        .undispatched_temporal_jobs(now() + ms(1000), 10)
        .await
        .unwrap();
    assert!(
        outbox.iter().all(|j| j.job_id != tj.job_id),
        "not started after a cancel"
    );

    // Finished jobs are not cancellable.
    let done = repo.insert_job(&new_job(&t1, 3), now()).await.unwrap();
    let claim = repo
        .claim_job("w", ms(30_000), now())
        .await
        .unwrap()
        .unwrap();
    assert!(
        repo.complete_job(&claim.token, &[output(done.job_id)], now())
            .await
            .unwrap()
    );
    assert!(
        repo.cancel_job(&t1, done.job_id, now())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(job(&repo, done.job_id).await.status, JobStatus::Completed);
}

async fn retry_requeues_failed_and_dead_jobs_only(db: &TestDb) {
    let repo = db.repo();
    let t1 = tenant("t1");
    let dead = repo.insert_job(&new_job(&t1, 1), now()).await.unwrap();
    let claim = repo
        .claim_job("w", ms(30_000), now())
        .await
        .unwrap()
        .unwrap();
    let f = Failure {
        code: "storage_error".into(),
        message: "down".into(),
        retry_at: Some(now()),
    };
    assert_eq!(
        repo.fail_job(&claim.token, &f, now()).await.unwrap(),
        Some(JobStatus::Dead)
    );
    assert!(
        repo.retry_job(&tenant("t2"), dead.job_id, None, now())
            .await
            .unwrap()
            .is_none(),
        "another tenant cannot retry it"
    );
    let r = repo
        .retry_job(&t1, dead.job_id, None, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.status, r.attempts), (JobStatus::Submitted, 0));
    assert!(r.error_code.is_none() && r.error_message.is_none() && r.completed_at.is_none());
    assert!(
        repo.retry_job(&t1, dead.job_id, None, now())
            .await
            .unwrap()
            .is_none(),
        "a queued job is not retryable"
    );
    let again = repo
        .claim_job("w", ms(30_000), now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.job.job_id, again.job.attempts), (dead.job_id, 1));
    assert!(
        repo.complete_job(&again.token, &[output(dead.job_id)], now())
            .await
            .unwrap()
    );
    assert!(
        repo.retry_job(&t1, dead.job_id, None, now())
            .await
            .unwrap()
            .is_none(),
        "a completed job is not retryable"
    );
    let history: Vec<String> = repo
        .job_events(dead.job_id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(
        history,
        [
            "submitted",
            "started",
            "dead",
            "submitted",
            "started",
            "completed"
        ]
    );

    // A Temporal job gets its new workflow id and goes back to the outbox.
    let tj = repo.insert_job(&temporal_job(&t1, 1), now()).await.unwrap();
    repo.mark_dispatched(tj.job_id, now()).await.unwrap();
    let c = repo
        .start_attempt(tj.job_id, 1, "w", ms(30_000), now())
        .await
        .unwrap()
        .unwrap();
    let f = Failure {
        code: "corrupt_image".into(),
        message: "bad".into(),
        retry_at: None,
    };
    assert_eq!(
        repo.fail_job(&c.token, &f, now()).await.unwrap(),
        Some(JobStatus::Failed)
    );
    let wf = format!("photo-job-{}-r1", tj.job_id);
    let r = repo
        .retry_job(&t1, tj.job_id, Some(&wf), now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.temporal.as_ref().unwrap().workflow_id, wf);
    let outbox = repo
        .undispatched_temporal_jobs(now() + ms(1000), 10)
        .await
        .unwrap();
    assert!(
        outbox.iter().any(|j| j.job_id == tj.job_id),
        "back in the outbox"
    );
    assert!(
        repo.start_attempt(tj.job_id, 1, "w", ms(30_000), now())
            .await
            .unwrap()
            .is_some(),
        "the new workflow's first attempt starts"
    );
}

async fn idempotency_keys_reserve_replay_expire(db: &TestDb) {
    let repo = db.repo();
    let (t1, t2) = (tenant("t1"), tenant("t2"));
    let k = photo_db::IdempotencyScope {
        tenant: &t1,
        scope: "POST /jobs",
        key: "k-1",
    };
    let t = now();
    let stale = t - ms(120_000);
    let exp = t + ms(60_000);
    assert_eq!(
        repo.idempotency_reserve(&k, "h1", t, stale, exp)
            .await
            .unwrap(),
        None
    );
    // Taken: in progress, with the first request's hash.
    let r = repo
        .idempotency_reserve(&k, "h1", t, stale, exp)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.request_sha256.as_str(), r.status_code), ("h1", None));
    let r = repo
        .idempotency_reserve(&k, "h2", t, stale, exp)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        r.request_sha256, "h1",
        "another body sees the first request's hash"
    );
    // Other tenants and routes have their own keys.
    for other in [
        photo_db::IdempotencyScope {
            tenant: &t2,
            ..k.clone()
        },
        photo_db::IdempotencyScope {
            scope: "POST /uploads/init",
            ..k.clone()
        },
    ] {
        assert_eq!(
            repo.idempotency_reserve(&other, "h9", t, stale, exp)
                .await
                .unwrap(),
            None
        );
    }
    repo.idempotency_complete(&k, 202, "{\"a\":1}")
        .await
        .unwrap();
    let r = repo
        .idempotency_reserve(&k, "h1", t, stale, exp)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.status_code, r.response_body.as_deref()),
        (Some(202), Some("{\"a\":1}"))
    );
    // A finished key is not released by a failing request; an unfinished one is.
    repo.idempotency_release(&k).await.unwrap();
    assert!(
        repo.idempotency_reserve(&k, "h1", t, stale, exp)
            .await
            .unwrap()
            .is_some()
    );
    let k2 = photo_db::IdempotencyScope {
        key: "k-2",
        ..k.clone()
    };
    assert_eq!(
        repo.idempotency_reserve(&k2, "h1", t, stale, exp)
            .await
            .unwrap(),
        None
    );
    repo.idempotency_release(&k2).await.unwrap();
    assert_eq!(
        repo.idempotency_reserve(&k2, "h1", t, stale, exp)
            .await
            .unwrap(),
        None
    );
    // A reservation whose request died is taken over once stale.
    let later = t + ms(200_000);
    assert_eq!(
        repo.idempotency_reserve(&k2, "h3", later, later - ms(120_000), later + ms(60_000))
            .await
            .unwrap(),
        None
    );
    // Expired keys are replaced, and swept.
    let after = t + ms(61_000);
    assert_eq!(
        repo.idempotency_reserve(&k, "h2", after, after - ms(120_000), after + ms(60_000))
            .await
            .unwrap(),
        None,
        "the expired key is free again"
    );
    let n = repo.idempotency_sweep(t + ms(10_000_000)).await.unwrap();
    assert_eq!(n, 4, "k, k2 and the two other-scope keys");
    assert_eq!(
        repo.idempotency_reserve(&k, "h1", t, stale, exp)
            .await
            .unwrap(),
        None
    );
}

async fn concurrent_reservations_of_one_key_have_one_winner(db: &TestDb) {
    let t1 = tenant("t1");
    let repos: Vec<Arc<dyn Repo>> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(db.reopen().await.into_repo());
        }
        v
    };
    let t = now();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let repo = repos[i % repos.len()].clone();
        let t1 = t1.clone();
        tasks.push(tokio::spawn(async move {
            let k = photo_db::IdempotencyScope {
                tenant: &t1,
                scope: "POST /jobs",
                key: "same",
            };
            repo.idempotency_reserve(&k, "h", t, t - ms(120_000), t + ms(60_000))
                .await
                .unwrap()
                .is_none()
        }));
    }
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1);
}

async fn a_reader_resuming_after_the_last_seq_misses_no_event_under_concurrent_writers(
    db: &TestDb,
) {
    // Writers on their own pools (like worker processes) insert and move jobs while a reader
    // pages through `events_after` from the last seq it saw, as an SSE client does. Without
    // events committing in seq order, a seq taken early and committed late would be skipped.
    let t1 = tenant("t1");
    let mut writers = Vec::new();
    for w in 0..4 {
        let repo = db.reopen().await.into_repo();
        let t1 = t1.clone();
        writers.push(tokio::spawn(async move {
            for _ in 0..40 {
                repo.insert_job(&new_job(&t1, 3), now()).await.unwrap();
                if let Some(c) = repo
                    .claim_job(&format!("w{w}"), ms(30_000), now())
                    .await
                    .unwrap()
                {
                    repo.complete_job(&c.token, &[], now()).await.unwrap();
                }
            }
        }));
    }
    let reader = db.repo();
    let mut last = 0;
    let mut seen = Vec::new();
    loop {
        let done = writers.iter().all(tokio::task::JoinHandle::is_finished);
        let page = reader.events_after(&t1, None, last, 50).await.unwrap();
        if let Some(e) = page.last() {
            last = e.seq;
        }
        seen.extend(page.into_iter().map(|e| e.seq));
        if done
            && reader
                .events_after(&t1, None, last, 1)
                .await
                .unwrap()
                .is_empty()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    for w in writers {
        w.await.unwrap();
    }
    let all: Vec<i64> = reader
        .events_after(&t1, None, 0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.seq)
        .collect();
    assert!(all.len() >= 160 * 2, "{} events", all.len());
    assert_eq!(
        seen, all,
        "the resuming reader saw every event once, in order"
    );
    // Another tenant's stream is empty; one job's stream is that job's history.
    assert!(
        reader
            .events_after(&tenant("t2"), None, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

// ---------------------------------------------------------------- batch events, results, presets

fn batch_hook(t: &TenantId) -> Webhook {
    Webhook {
        webhook_id: format!("wh-{t}"),
        tenant: t.clone(),
        url: "https://hooks.example.com/photo".into(),
        event_types: vec!["batch.completed".into(), "batch.failed".into()],
        secret: "s".into(),
        created_at: now(),
    }
}

/// The batch deliveries of `t`'s batch webhook, by batch id: (event type, payload).
async fn batch_deliveries(
    repo: &Arc<dyn Repo>,
    t: &TenantId,
) -> HashMap<String, Vec<(String, serde_json::Value)>> {
    let mut out: HashMap<String, Vec<(String, serde_json::Value)>> = HashMap::new();
    for d in repo
        .list_deliveries(t, &format!("wh-{t}"), 1000)
        .await
        .unwrap()
        .unwrap()
    {
        let p: serde_json::Value = serde_json::from_str(&d.payload).unwrap();
        let bid = p["data"]["batch_id"].as_str().unwrap().to_owned();
        out.entry(bid).or_default().push((d.event_type, p));
    }
    out
}

async fn a_batch_finishes_once_when_its_last_jobs_end_concurrently(db: &TestDb) {
    const ROUNDS: usize = 6;
    const JOBS: usize = 8;
    let repo = db.repo();
    let other = db.reopen().await.into_repo();
    let t1 = tenant("t1");
    repo.insert_webhook(&batch_hook(&t1)).await.unwrap();
    let mut expected = HashMap::new();
    for round in 0..ROUNDS {
        let bid = BatchId::new();
        let jobs: Vec<NewJob> = (0..JOBS).map(|_| new_job(&t1, 1)).collect();
        repo.insert_batch(&t1, bid, &jobs, now()).await.unwrap();
        let mut claims = Vec::new();
        for _ in 0..JOBS {
            claims.push(
                repo.claim_job("w", ms(60_000), now())
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        // Every job of the batch ends at the same moment, on two pools (like two worker
        // processes); in odd rounds one of them fails.
        let gate = Arc::new(tokio::sync::Barrier::new(JOBS));
        let mut tasks = Vec::new();
        for (i, c) in claims.into_iter().enumerate() {
            let r = if i % 2 == 0 {
                repo.clone()
            } else {
                other.clone()
            };
            let gate = gate.clone();
            tasks.push(tokio::spawn(async move {
                gate.wait().await;
                if round % 2 == 1 && i == 3 {
                    let f = Failure {
                        code: "corrupt_image".into(),
                        message: "bad".into(),
                        retry_at: None,
                    };
                    assert_eq!(
                        r.fail_job(&c.token, &f, now()).await.unwrap(),
                        Some(JobStatus::Failed)
                    );
                } else {
                    assert!(r.complete_job(&c.token, &[], now()).await.unwrap());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let (b, _) = repo.get_batch(&t1, bid).await.unwrap().unwrap();
        let status = if round % 2 == 1 {
            "failed"
        } else {
            "completed"
        };
        assert!(b.finished_at.is_some(), "round {round}: finished");
        assert_eq!(b.finished_status.as_deref(), Some(status));
        expected.insert(bid.to_string(), status);
    }
    // The fan-out, twice (it is idempotent), then one delivery per batch.
    repo.webhook_fanout(now(), 10_000).await.unwrap();
    other.webhook_fanout(now(), 10_000).await.unwrap();
    let got = batch_deliveries(&repo, &t1).await;
    assert_eq!(got.len(), ROUNDS, "{got:?}");
    for (bid, status) in &expected {
        let ds = &got[bid];
        assert_eq!(ds.len(), 1, "exactly one event for batch {bid}: {ds:?}");
        let (ty, p) = &ds[0];
        assert_eq!(ty, &format!("batch.{status}"));
        assert_eq!(p["type"], format!("batch.{status}"));
        assert_eq!(p["data"]["status"], *status);
        assert_eq!(p["data"]["total"], JOBS);
        let failed = usize::from(*status == "failed");
        assert_eq!(
            p["data"]["counts"],
            json!({"completed": JOBS - failed, "failed": failed, "dead": 0, "cancelled": 0})
        );
    }
    // Batch events are not job events: the streams and histories show none.
    let events = repo.events_after(&t1, None, 0, 100_000).await.unwrap();
    assert_eq!(
        events.len(),
        ROUNDS * JOBS * 3,
        "submitted, started, completed/failed"
    );
    assert!(events.iter().all(|e| !expected.contains_key(&e.job_id)));
}

async fn a_cancelled_batch_finishes_once_and_a_retry_does_not_reopen_it(db: &TestDb) {
    let repo = db.repo();
    let t1 = tenant("t1");
    repo.insert_webhook(&batch_hook(&t1)).await.unwrap();
    // Cancelling a batch whose other jobs finished finishes it, with the counts of both.
    let bid = BatchId::new();
    let jobs: Vec<NewJob> = (0..3).map(|_| new_job(&t1, 1)).collect();
    repo.insert_batch(&t1, bid, &jobs, now()).await.unwrap();
    let c = repo
        .claim_job("w", ms(60_000), now())
        .await
        .unwrap()
        .unwrap();
    assert!(repo.complete_job(&c.token, &[], now()).await.unwrap());
    assert!(
        repo.get_batch(&t1, bid)
            .await
            .unwrap()
            .unwrap()
            .0
            .finished_at
            .is_none()
    );
    let cancelled = repo.cancel_batch(&t1, bid, now()).await.unwrap().unwrap();
    assert_eq!(cancelled.len(), 2);
    let (b, _) = repo.get_batch(&t1, bid).await.unwrap().unwrap();
    assert_eq!(b.finished_status.as_deref(), Some("completed"));
    assert!(b.cancelled_at.is_some());

    // A batch whose job failed finishes `failed`; retrying that job (and completing it) does
    // not make a second event.
    let bid2 = BatchId::new();
    repo.insert_batch(&t1, bid2, &[new_job(&t1, 1)], now())
        .await
        .unwrap();
    let c = repo
        .claim_job("w", ms(60_000), now())
        .await
        .unwrap()
        .unwrap();
    let f = Failure {
        code: "corrupt_image".into(),
        message: "bad".into(),
        retry_at: None,
    };
    repo.fail_job(&c.token, &f, now()).await.unwrap();
    let finished = repo.get_batch(&t1, bid2).await.unwrap().unwrap().0;
    assert_eq!(finished.finished_status.as_deref(), Some("failed"));
    assert!(
        repo.retry_job(&t1, c.job.job_id, None, now())
            .await
            .unwrap()
            .is_some()
    );
    let c = repo
        .claim_job("w", ms(60_000), now())
        .await
        .unwrap()
        .unwrap();
    assert!(repo.complete_job(&c.token, &[], now()).await.unwrap());
    let after = repo.get_batch(&t1, bid2).await.unwrap().unwrap().0;
    assert_eq!(after.finished_at, finished.finished_at, "set once");
    assert_eq!(after.finished_status.as_deref(), Some("failed"));

    repo.webhook_fanout(now(), 10_000).await.unwrap();
    let got = batch_deliveries(&repo, &t1).await;
    assert_eq!(got.len(), 2);
    let (ty, p) = &got[&bid.to_string()][0];
    assert_eq!(ty, "batch.completed");
    assert_eq!(
        p["data"]["counts"],
        json!({"completed": 1, "failed": 0, "dead": 0, "cancelled": 2})
    );
    assert_eq!(got[&bid2.to_string()].len(), 1);
    assert_eq!(got[&bid2.to_string()][0].0, "batch.failed");
}

async fn a_job_result_is_recorded_with_its_completion(db: &TestDb) {
    let repo = db.repo();
    let t1 = tenant("t1");
    let j = repo.insert_job(&new_job(&t1, 1), now()).await.unwrap();
    let c = repo
        .claim_job("w", ms(60_000), now())
        .await
        .unwrap()
        .unwrap();
    let report = json!({"sha256": "ab", "width": 3, "exif": {"make": "X"}});
    assert!(
        repo.complete_job_with_result(&c.token, &[], Some(&report), now())
            .await
            .unwrap()
    );
    assert_eq!(job(&repo, j.job_id).await.result, Some(report));
    // Only failed/dead jobs retry; a completed one keeps its result.
    assert!(
        repo.retry_job(&t1, j.job_id, None, now())
            .await
            .unwrap()
            .is_none()
    );
    let j2 = repo.insert_job(&new_job(&t1, 1), now()).await.unwrap();
    let c = repo
        .claim_job("w", ms(60_000), now())
        .await
        .unwrap()
        .unwrap();
    assert!(repo.complete_job(&c.token, &[], now()).await.unwrap());
    assert_eq!(job(&repo, j2.job_id).await.result, None);
}

async fn a_ready_upload_queues_its_eager_jobs_once(db: &TestDb) {
    let repo = db.repo();
    let t1 = tenant("t1");
    let mut up = new_upload(&t1, now(), now() + Duration::hours(1));
    up.eager_jobs = vec![thumb_spec(), transform_spec()];
    repo.insert_upload(&up).await.unwrap();
    assert_eq!(
        repo.get_upload(Some(&t1), up.upload_id)
            .await
            .unwrap()
            .unwrap()
            .eager_jobs,
        up.eager_jobs
    );
    assert!(repo.mark_uploaded(up.upload_id, 10, now()).await.unwrap());
    let ready = UploadOutcome::Ready {
        content_type: ContentType::Png,
        size: 10,
        width: 4,
        height: 3,
        promoted_key: None,
    };
    let jobs_for = |_: ()| -> Vec<NewJob> {
        up.eager_jobs
            .iter()
            .map(|s| NewJob {
                upload_id: Some(up.upload_id),
                ..new_job_with(JobId::new(), &t1, s.clone(), 3)
            })
            .collect()
    };
    // Two completions race: one moves the upload and queues its jobs, the other changes nothing.
    let (a, b) = (jobs_for(()), jobs_for(()));
    let other = db.reopen().await.into_repo();
    let (ra, rb) = tokio::join!(
        repo.complete_upload_with_jobs(up.upload_id, &ready, &a, now()),
        other.complete_upload_with_jobs(up.upload_id, &ready, &b, now()),
    );
    let winner = match (ra.unwrap(), rb.unwrap()) {
        (Some(w), None) => {
            assert_eq!(
                w.eager_job_ids,
                a.iter().map(|j| j.job_id).collect::<Vec<_>>()
            );
            w
        }
        (None, Some(w)) => {
            assert_eq!(
                w.eager_job_ids,
                b.iter().map(|j| j.job_id).collect::<Vec<_>>()
            );
            w
        }
        other => panic!("exactly one completion wins: {other:?}"),
    };
    assert_eq!(winner.status, UploadStatus::Ready);
    let stored = repo
        .get_upload(Some(&t1), up.upload_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.eager_job_ids, winner.eager_job_ids);
    let listed = repo
        .list_jobs(
            &t1,
            &JobFilter {
                limit: 100,
                ..JobFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 2, "queued once");
    for j in &listed {
        assert_eq!(j.upload_id, Some(up.upload_id));
        assert!(winner.eager_job_ids.contains(&j.job_id));
    }
    // A rejected upload queues nothing.
    let mut up2 = new_upload(&t1, now(), now() + Duration::hours(1));
    up2.eager_jobs = vec![thumb_spec()];
    repo.insert_upload(&up2).await.unwrap();
    assert!(repo.mark_uploaded(up2.upload_id, 10, now()).await.unwrap());
    let rejected = UploadOutcome::Rejected {
        code: "corrupt_image".into(),
        reason: "no".into(),
    };
    let r = repo
        .complete_upload_with_jobs(up2.upload_id, &rejected, &[], now())
        .await
        .unwrap()
        .unwrap();
    assert!(r.eager_job_ids.is_empty());
}

on_both!(
    a_batch_finishes_once_when_its_last_jobs_end_concurrently,
    a_cancelled_batch_finishes_once_and_a_retry_does_not_reopen_it,
    a_job_result_is_recorded_with_its_completion,
    a_ready_upload_queues_its_eager_jobs_once,
    migrations_are_idempotent_and_reversible,
    job_logs_has_the_design_columns,
    api_keys_insert_find_touch_count,
    api_keys_admin_and_audit,
    tenants_changes_are_audited,
    uploads_tenancy_and_lifecycle,
    expired_uploads_sweep,
    job_round_trip_and_tenancy,
    list_jobs_filters_and_pages,
    claim_takes_oldest_due_job,
    expired_lease_is_fenced,
    heartbeat_extends_lease,
    fail_job_retries_then_dies,
    permanent_failure_fails_at_once,
    lease_lost_on_last_attempt_is_dead,
    release_job_gives_the_attempt_back,
    sql_workers_never_claim_temporal_jobs,
    temporal_attempts_are_fenced_like_claims,
    mark_dead_is_the_last_word,
    the_outbox_lists_undispatched_temporal_jobs,
    job_counts_match,
    concurrent_workers_complete_each_job_once,
    concurrent_first_opens_migrate_once,
    many_claimers_never_share_a_job,
    cancel_revokes_the_claim_and_only_unfinished_jobs,
    retry_requeues_failed_and_dead_jobs_only,
    idempotency_keys_reserve_replay_expire,
    concurrent_reservations_of_one_key_have_one_winner,
    a_reader_resuming_after_the_last_seq_misses_no_event_under_concurrent_writers,
);

// ---------------------------------------------------------------- PostgreSQL only

/// Behaviour only the PostgreSQL repository has: wake-ups, pool limits, outages.
mod postgres_only {
    use super::*;

    fn repo_of(db: &TestDb) -> PgRepo {
        match &db.db {
            Database::Postgres(r) => r.clone(),
            Database::Sqlite(_) => unreachable!("a PostgreSQL test"),
        }
    }

    /// Kills every server connection to the test database except the caller's, as a restart
    /// or failover does (SQLSTATE 57P01 for the killed sessions).
    async fn kill_connections(name: &str) -> i64 {
        let mut admin = common::admin().await;
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()) AS k",
        )
        .bind(name)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        n
    }

    fn db_name(db: &TestDb) -> String {
        match &db.kind {
            common::Kind::Postgres(pg) => pg.name.clone(),
            common::Kind::Sqlite { .. } => unreachable!(),
        }
    }

    /// Starts the repository's listener and waits until it is subscribed (it wakes waiters once
    /// connected), then lets pending wake-ups pass.
    async fn listening(repo: &PgRepo) {
        let t = Instant::now();
        repo.wait_for_work(std::time::Duration::from_secs(10)).await;
        assert!(
            t.elapsed() < std::time::Duration::from_secs(9),
            "the listener never connected"
        );
        quiet(repo).await;
    }

    /// Consumes wake-ups already on their way (earlier inserts, a reconnect) until a short wait
    /// runs its full length.
    async fn quiet(repo: &PgRepo) {
        let short = std::time::Duration::from_millis(200);
        for _ in 0..50 {
            let t = Instant::now();
            repo.wait_for_work(short).await;
            if t.elapsed() >= short {
                return;
            }
        }
        panic!("wake-ups never stop");
    }

    /// A wait that an insert from another connection cuts short: returns after the insert
    /// (not before: the wait is real) and long before `max`.
    async fn assert_woken_by_insert(waiter: &PgRepo, inserter: Arc<dyn Repo>) {
        quiet(waiter).await;
        let max = std::time::Duration::from_secs(10);
        let delay = std::time::Duration::from_millis(500);
        let insert = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            inserter
                .insert_job(&new_job(&tenant("t1"), 3), now())
                .await
                .unwrap();
        });
        let t = Instant::now();
        waiter.wait_for_work(max).await;
        let took = t.elapsed();
        insert.await.unwrap();
        assert!(
            took >= delay - std::time::Duration::from_millis(50),
            "woke before the insert ({took:?}): the wait did not wait"
        );
        assert!(took < max / 2, "not woken by the insert: waited {took:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn wait_for_work_wakes_on_insert_from_another_connection() {
        let db = TestDb::postgres().await;
        let waiter = repo_of(&db);
        let other = db.reopen().await.into_repo();
        listening(&waiter).await;
        assert_woken_by_insert(&waiter, other.clone()).await;

        // A job handed back by release_job and a retry scheduled by fail_job wake too.
        for hand_back in ["release", "retry"] {
            let c = other
                .claim_job("w", Duration::seconds(30), now())
                .await
                .unwrap()
                .unwrap();
            quiet(&waiter).await;
            let t = Instant::now();
            let (_, handed_back) = tokio::join!(
                waiter.wait_for_work(std::time::Duration::from_secs(10)),
                async {
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    if hand_back == "release" {
                        other.release_job(&c.token, now()).await.unwrap()
                    } else {
                        let f = Failure {
                            code: "storage_unavailable".into(),
                            message: "try again".into(),
                            retry_at: Some(now()),
                        };
                        other.fail_job(&c.token, &f, now()).await.unwrap()
                            == Some(JobStatus::Retrying)
                    }
                }
            );
            let took = t.elapsed();
            assert!(handed_back, "{hand_back}");
            assert!(
                took >= std::time::Duration::from_millis(250)
                    && took < std::time::Duration::from_secs(5),
                "{hand_back}: woke after {took:?}"
            );
        }

        // With nothing happening, the wait lasts its full time.
        quiet(&waiter).await;
        let t = Instant::now();
        waiter
            .wait_for_work(std::time::Duration::from_millis(700))
            .await;
        assert!(t.elapsed() >= std::time::Duration::from_millis(650));
        db.finish().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn pool_and_listener_recover_after_the_server_drops_connections() {
        let db = TestDb::postgres().await;
        let repo = repo_of(&db);
        let other = db.reopen().await.into_repo();
        listening(&repo).await;
        repo.health().await.unwrap();
        other.health().await.unwrap();

        let killed = kill_connections(&db_name(&db)).await;
        assert!(
            killed >= 3,
            "pools and listener were connected: killed {killed}"
        );

        // Dead pooled connections are noticed before use and replaced.
        repo.health().await.unwrap();
        let j = other
            .insert_job(&new_job(&tenant("t1"), 3), now())
            .await
            .unwrap();
        assert_eq!(
            repo.get_job_any_tenant(j.job_id)
                .await
                .unwrap()
                .map(|j| j.job_id),
            Some(j.job_id)
        );
        // The listener reconnected and re-subscribed by itself.
        listening(&repo).await;
        assert_woken_by_insert(&repo, other).await;
        db.finish().await;
    }

    /// A TCP proxy to the test server that can be cut (listener and every connection closed,
    /// as when the server goes away: new connections are refused) and brought back on the
    /// same port.
    struct Proxy {
        port: u16,
        target: std::net::SocketAddr,
        task: Option<tokio::task::JoinHandle<()>>,
    }

    impl Proxy {
        async fn start(port: u16, target: std::net::SocketAddr) -> Self {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap();
            let port = listener.local_addr().unwrap().port();
            let task = tokio::spawn(async move {
                // Dropping the set (when this task is aborted) closes every connection.
                let mut conns = tokio::task::JoinSet::new();
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        return;
                    };
                    conns.spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                }
            });
            Self {
                port,
                target,
                task: Some(task),
            }
        }

        async fn cut(&mut self) {
            if let Some(t) = self.task.take() {
                t.abort();
                let _ = t.await;
            }
        }

        async fn restore(&mut self) {
            *self = Self::start(self.port, self.target).await;
        }
    }

    /// `url` with its host and port replaced by 127.0.0.1:`port`.
    fn via_port(url: &str, port: u16) -> String {
        let (scheme, rest) = url.split_once("://").unwrap();
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let userinfo = authority
            .rsplit_once('@')
            .map(|(u, _)| format!("{u}@"))
            .unwrap_or_default();
        format!("{scheme}://{userinfo}127.0.0.1:{port}{path}")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn server_outage_is_unavailable_then_recovers_by_itself() {
        let db = TestDb::postgres().await;
        let direct = db.reopen().await.into_repo();
        let admin: sqlx::postgres::PgConnectOptions = common::admin_url().parse().unwrap();
        let target = tokio::net::lookup_host((admin.get_host(), admin.get_port()))
            .await
            .unwrap()
            .next()
            .unwrap();
        let mut proxy = Proxy::start(0, target).await;
        let opts = PgOptions {
            max_connections: 4,
            acquire_timeout: std::time::Duration::from_secs(1),
            statement_timeout: std::time::Duration::from_secs(5),
        };
        let repo = PgRepo::connect_url(&via_port(&db.url(), proxy.port), &opts)
            .await
            .unwrap();
        listening(&repo).await;
        repo.health().await.unwrap();

        proxy.cut().await;
        for _ in 0..3 {
            let t = Instant::now();
            let e = repo.health().await.unwrap_err();
            assert!(e.is_unavailable(), "down is 'unavailable': {e:?}");
            assert!(
                t.elapsed() < std::time::Duration::from_secs(3),
                "failed after {:?}; acquire timeout 1s",
                t.elapsed()
            );
        }
        let e = repo
            .insert_job(&new_job(&tenant("t1"), 3), now())
            .await
            .unwrap_err();
        assert!(e.is_unavailable(), "{e:?}");

        proxy.restore().await;
        // Back without reopening anything.
        let t = Instant::now();
        while repo.health().await.is_err() {
            assert!(
                t.elapsed() < std::time::Duration::from_secs(10),
                "the pool did not recover"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let j = repo
            .insert_job(&new_job(&tenant("t1"), 3), now())
            .await
            .unwrap();
        assert!(direct.get_job_any_tenant(j.job_id).await.unwrap().is_some());
        // The listener came back too (after its reconnect backoff).
        listening(&repo).await;
        assert_woken_by_insert(&repo, direct).await;
        repo.close().await;
        proxy.cut().await;
        db.finish().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn unreachable_server_is_unavailable_within_the_acquire_timeout() {
        let opts = PgOptions {
            max_connections: 2,
            acquire_timeout: std::time::Duration::from_secs(2),
            statement_timeout: std::time::Duration::from_secs(1),
        };
        let t = Instant::now();
        let e = PgRepo::connect_url("postgres://postgres@127.0.0.1:1/photo", &opts)
            .await
            .unwrap_err();
        let took = t.elapsed();
        assert!(
            e.is_unavailable(),
            "connection refused is 'unavailable': {e:?}"
        );
        assert!(
            took < std::time::Duration::from_secs(4),
            "gave up after {took:?}, acquire timeout 2s"
        );
        let e = photo_db::open("postgresql+asyncpg://postgres@127.0.0.1:1/photo", &opts)
            .await
            .unwrap_err();
        assert!(e.is_unavailable(), "{e:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn statement_timeout_and_pool_exhaustion_are_unavailable() {
        let db = TestDb::postgres().await;
        let opts = PgOptions {
            max_connections: 1,
            acquire_timeout: std::time::Duration::from_millis(500),
            statement_timeout: std::time::Duration::from_millis(200),
        };
        let url = db.url().replacen("postgres://", "postgresql+asyncpg://", 1);
        let repo = PgRepo::connect_url(&url, &opts).await.unwrap();
        repo.health().await.unwrap();
        let setting: String = sqlx::query_scalar("SHOW statement_timeout")
            .fetch_one(repo.pool())
            .await
            .unwrap();
        assert_eq!(setting, "200ms");

        let e: photo_db::DbError = sqlx::query("SELECT pg_sleep(2)")
            .execute(repo.pool())
            .await
            .unwrap_err()
            .into();
        assert!(e.is_timeout() && e.is_unavailable(), "{e:?}");

        // The only connection is busy: the next query gives up after the acquire timeout.
        let busy = repo.pool().acquire().await.unwrap();
        let t = Instant::now();
        let e = repo.health().await.unwrap_err();
        assert!(e.is_unavailable() && e.is_timeout(), "{e:?}");
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
        drop(busy);
        repo.health().await.unwrap();
        repo.close().await;
        db.finish().await;
    }

    /// `sslmode` in the URL is honoured: with `require` the session is encrypted (rustls), with
    /// `disable` it is not. Debian's PostgreSQL serves TLS with its snakeoil certificate.
    #[tokio::test]
    async fn tls_is_used_when_the_url_asks_for_it() {
        let db = TestDb::postgres().await;
        let ssl_of = |mode: &'static str| {
            let base = db.url();
            let sep = if base.contains('?') { '&' } else { '?' };
            let url = format!("{base}{sep}sslmode={mode}");
            async move {
                let repo = PgRepo::connect_url(&url, &PgOptions::default())
                    .await
                    .unwrap();
                let ssl: bool =
                    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                        .fetch_one(repo.pool())
                        .await
                        .unwrap();
                repo.close().await;
                ssl
            }
        };
        assert!(
            ssl_of("require").await,
            "sslmode=require gives an encrypted session"
        );
        assert!(
            !ssl_of("disable").await,
            "sslmode=disable gives a plain one"
        );
        db.finish().await;
    }
}
