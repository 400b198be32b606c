//! The tenant file tree on both databases: placement, conflicts, listing order and pages,
//! copy/move/delete of folders, tenant isolation and the object deletion queue.
#![expect(clippy::unwrap_used)]

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use photo_core::{ContentType, FilePath, ObjectKey, TenantId};
use photo_db::{FileConflict, FileError, FileRecord, NewFile, Repo, Transfer};

#[macro_use]
#[allow(dead_code, unfulfilled_lint_expectations)]
mod common;
use common::TestDb;

fn tenant(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

fn p(s: &str) -> FilePath {
    FilePath::parse(s).unwrap()
}

fn key(t: &TenantId, id: &str) -> ObjectKey {
    ObjectKey::tenant_file(t, id, "jpg").unwrap()
}

fn new_file(t: &TenantId, path: &str, id: &str) -> NewFile {
    NewFile {
        tenant: t.clone(),
        path: p(path),
        object_key: key(t, id),
        size: 1234,
        content_type: ContentType::Jpeg,
        etag: format!("etag-{id}"),
        width: Some(4),
        height: Some(3),
        metadata: BTreeMap::from([("camera".to_owned(), "x100".to_owned())]),
    }
}

fn tr<'a>(t: &'a TenantId, from: &str, to: &str, overwrite: bool, limit: u64) -> Transfer<'a> {
    // Leaked: a few small paths per test, and `Transfer` borrows them.
    Transfer {
        tenant: t,
        from: Box::leak(Box::new(p(from))),
        to: Box::leak(Box::new(p(to))),
        overwrite,
        limit,
    }
}

fn conflict<T: std::fmt::Debug>(r: Result<T, FileError>) -> FileConflict {
    match r {
        Err(FileError::Conflict(c)) => c,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

async fn put(repo: &dyn Repo, f: &NewFile, now: DateTime<Utc>) -> FileRecord {
    repo.file_put(f, false, now, now).await.unwrap()
}

async fn all_paths(repo: &dyn Repo, t: &TenantId) -> Vec<String> {
    repo.file_list(t, None, true, None, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.path.to_string())
        .collect()
}

async fn put_creates_parents_and_refuses_conflicts(db: &TestDb) {
    let repo = db.repo();
    let repo = repo.as_ref();
    let now = Utc::now();
    let t = tenant("t1");
    let rec = put(repo, &new_file(&t, "a/b/c.jpg", "1"), now).await;
    assert_eq!(rec.size, 1234);
    assert_eq!(rec.metadata["camera"], "x100");
    assert_eq!(rec.object_key, Some(key(&t, "1")));
    assert_eq!(all_paths(repo, &t).await, vec!["a", "a/b", "a/b/c.jpg"]);
    let folder = repo.file_get(&t, &p("a/b")).await.unwrap().unwrap();
    assert!(folder.is_folder && folder.object_key.is_none());

    // Existing file without overwrite; a folder in the way; a file as a parent.
    assert_eq!(
        conflict(
            repo.file_put(&new_file(&t, "a/b/c.jpg", "2"), false, now, now)
                .await
        ),
        FileConflict::Exists("a/b/c.jpg".into())
    );
    assert_eq!(
        conflict(
            repo.file_put(&new_file(&t, "a/b", "2"), true, now, now)
                .await
        ),
        FileConflict::IsFolder("a/b".into())
    );
    assert_eq!(
        conflict(
            repo.file_put(&new_file(&t, "a/b/c.jpg/d.jpg", "2"), false, now, now)
                .await
        ),
        FileConflict::NotFolder("a/b/c.jpg".into())
    );
    // Overwrite replaces the row and queues the old object.
    let later = now + Duration::seconds(5);
    let rec2 = repo
        .file_put(&new_file(&t, "a/b/c.jpg", "2"), true, later, later)
        .await
        .unwrap();
    assert_eq!(rec2.object_key, Some(key(&t, "2")));
    assert_eq!(
        rec2.created_at.timestamp_millis(),
        rec.created_at.timestamp_millis()
    );
    assert!(rec2.updated_at > rec.updated_at);
    let due = repo.file_gc_due(later, 100).await.unwrap();
    assert_eq!(due, vec![key(&t, "1")]);
    assert!(
        repo.file_gc_due(now, 100).await.unwrap().is_empty(),
        "not due before its time"
    );

    // Folder creation: idempotent, and refused over a file.
    assert!(repo.folder_create(&t, &p("x/y"), now).await.unwrap());
    assert!(!repo.folder_create(&t, &p("x/y"), now).await.unwrap());
    assert_eq!(
        conflict(repo.folder_create(&t, &p("a/b/c.jpg"), now).await),
        FileConflict::NotFolder("a/b/c.jpg".into())
    );
}

async fn tenants_never_see_each_other(db: &TestDb) {
    let repo = db.repo();
    let repo = repo.as_ref();
    let now = Utc::now();
    let (a, b) = (tenant("ta"), tenant("tb"));
    put(repo, &new_file(&b, "secret/x.jpg", "b1"), now).await;
    assert!(
        repo.file_get(&a, &p("secret/x.jpg"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(all_paths(repo, &a).await.is_empty());
    assert_eq!(
        conflict(repo.file_delete(&a, &p("secret/x.jpg"), now).await),
        FileConflict::NotFound
    );
    assert_eq!(
        conflict(
            repo.file_move(&tr(&a, "secret", "mine", false, 100), now, now)
                .await
        ),
        FileConflict::NotFound
    );
    assert_eq!(
        conflict(repo.folder_delete_step(&a, &p("secret"), 10, now).await),
        FileConflict::NotFound
    );
    // The same path in A is A's own, independent of B's.
    put(repo, &new_file(&a, "secret/x.jpg", "a1"), now).await;
    let fb = repo
        .file_get(&b, &p("secret/x.jpg"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fb.object_key, Some(key(&b, "b1")));
}

async fn listing_is_ordered_and_paginates(db: &TestDb) {
    let repo = db.repo();
    let repo = repo.as_ref();
    let now = Utc::now();
    let t = tenant("t1");
    // Names that sort differently in byte order and in a locale's order.
    let names = [
        "B.jpg",
        "a.jpg",
        "a-b.jpg",
        "a/b.jpg",
        "ab.jpg",
        "\u{e9}.jpg",
        "Z.jpg",
    ];
    for (i, n) in names.iter().enumerate() {
        put(
            repo,
            &new_file(&t, &format!("f/{n}"), &format!("k{i}")),
            now,
        )
        .await;
    }
    let mut want: Vec<&str> = vec![
        "B.jpg",
        "Z.jpg",
        "a",
        "a-b.jpg",
        "a.jpg",
        "ab.jpg",
        "\u{e9}.jpg",
    ];
    want.sort_by(|x, y| x.as_bytes().cmp(y.as_bytes()));
    let mut got = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = repo
            .file_list(&t, Some(&p("f")), false, after.as_deref(), 2)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|f| f.path.name().to_owned());
        got.extend(page.iter().map(|f| f.path.name().to_owned()));
    }
    assert_eq!(got, want);
    // Recursive: by full path, everything below, nothing outside.
    put(repo, &new_file(&t, "f0.jpg", "outside"), now).await;
    put(repo, &new_file(&t, "f-x/y.jpg", "outside2"), now).await;
    let rec: Vec<String> = repo
        .file_list(&t, Some(&p("f")), true, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.path.to_string())
        .collect();
    assert_eq!(rec.len(), names.len() + 1, "{rec:?}");
    assert!(rec.iter().all(|x| x.starts_with("f/")));
    let mut sorted = rec.clone();
    sorted.sort_by(|x, y| x.as_bytes().cmp(y.as_bytes()));
    assert_eq!(rec, sorted);
    let page2 = repo
        .file_list(&t, Some(&p("f")), true, Some(&rec[3]), 100)
        .await
        .unwrap();
    assert_eq!(page2.len(), rec.len() - 4);
}

async fn folders_copy_move_and_delete_as_units(db: &TestDb) {
    let repo = db.repo();
    let repo = repo.as_ref();
    let now = Utc::now();
    let t = tenant("t1");
    for i in 0..30 {
        put(
            repo,
            &new_file(&t, &format!("src/d{}/f{i}.jpg", i % 3), &format!("o{i}")),
            now,
        )
        .await;
    }
    repo.folder_create(&t, &p("src/empty"), now).await.unwrap();
    let before = all_paths(repo, &t).await;
    assert_eq!(before.len(), 1 + 3 + 30 + 1);

    // Limits and refusals change nothing.
    assert_eq!(
        conflict(
            repo.file_copy(&tr(&t, "src", "dst", false, 10), now, now)
                .await
        ),
        FileConflict::TooMany {
            count: 35,
            limit: 10
        }
    );
    assert_eq!(
        conflict(
            repo.file_move(&tr(&t, "src", "src/d0/in", false, 100), now, now)
                .await
        ),
        FileConflict::IntoItself
    );
    repo.folder_create(&t, &p("taken"), now).await.unwrap();
    assert_eq!(
        conflict(
            repo.file_move(&tr(&t, "src", "taken", true, 100), now, now)
                .await
        ),
        FileConflict::Exists("taken".into())
    );
    assert_eq!(all_paths(repo, &t).await.len(), before.len() + 1);

    // Copy: the same tree under the new name, objects shared.
    assert_eq!(
        repo.file_copy(&tr(&t, "src", "x/cp", false, 100), now, now)
            .await
            .unwrap(),
        35
    );
    let f = repo
        .file_get(&t, &p("x/cp/d1/f4.jpg"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f.object_key, Some(key(&t, "o4")));
    assert!(
        repo.file_get(&t, &p("x/cp/empty"))
            .await
            .unwrap()
            .unwrap()
            .is_folder
    );
    let listed = repo
        .file_list(&t, Some(&p("x/cp")), false, None, 100)
        .await
        .unwrap();
    assert_eq!(listed.len(), 4, "d0 d1 d2 empty");

    // Move: gone from the source, all at the destination, parents rewritten.
    assert_eq!(
        repo.file_move(&tr(&t, "src", "moved", false, 100), now, now)
            .await
            .unwrap(),
        35
    );
    assert!(repo.file_get(&t, &p("src")).await.unwrap().is_none());
    assert!(
        repo.file_list(&t, Some(&p("src")), true, None, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let moved = repo
        .file_list(&t, Some(&p("moved/d2")), false, None, 100)
        .await
        .unwrap();
    assert_eq!(moved.len(), 10);

    // Delete the original in small steps: resumable, and the copy keeps the shared objects.
    let mut steps = 0;
    let mut files = 0;
    loop {
        let s = repo
            .folder_delete_step(&t, &p("moved"), 7, now)
            .await
            .unwrap();
        steps += 1;
        files += s.files;
        if s.done {
            break;
        }
    }
    assert_eq!(files, 30);
    assert!(steps >= 5);
    assert!(repo.file_get(&t, &p("moved")).await.unwrap().is_none());
    let due = repo.file_gc_due(now, 1000).await.unwrap();
    assert!(
        due.is_empty(),
        "every object is still used by the copy: {due:?}"
    );

    // A file moved onto a file with overwrite: the replaced object is queued.
    put(repo, &new_file(&t, "one.jpg", "one"), now).await;
    put(repo, &new_file(&t, "two.jpg", "two"), now).await;
    assert_eq!(
        conflict(
            repo.file_move(&tr(&t, "one.jpg", "two.jpg", false, 100), now, now)
                .await
        ),
        FileConflict::Exists("two.jpg".into())
    );
    repo.file_move(&tr(&t, "one.jpg", "two.jpg", true, 100), now, now)
        .await
        .unwrap();
    let two = repo.file_get(&t, &p("two.jpg")).await.unwrap().unwrap();
    assert_eq!(two.object_key, Some(key(&t, "one")));
    assert_eq!(
        repo.file_gc_due(now, 1000).await.unwrap(),
        vec![key(&t, "two")]
    );
    repo.file_gc_forget(&key(&t, "two")).await.unwrap();
    assert!(repo.file_gc_due(now, 1000).await.unwrap().is_empty());
}

async fn write_intents_expire_unless_a_row_lands(db: &TestDb) {
    let repo = db.repo();
    let repo = repo.as_ref();
    let now = Utc::now();
    let t = tenant("t1");
    let soon = now + Duration::hours(1);
    repo.file_object_intent(&key(&t, "landed"), soon)
        .await
        .unwrap();
    repo.file_object_intent(&key(&t, "abandoned"), soon)
        .await
        .unwrap();
    put(repo, &new_file(&t, "ok.jpg", "landed"), now).await;
    assert!(repo.file_gc_due(now, 10).await.unwrap().is_empty());
    assert_eq!(
        repo.file_gc_due(soon, 10).await.unwrap(),
        vec![key(&t, "abandoned")],
        "the landed write's intent was cleared with its row"
    );
    // Deleting the file queues its object.
    repo.file_delete(&t, &p("ok.jpg"), soon).await.unwrap();
    let mut due = repo.file_gc_due(soon, 10).await.unwrap();
    due.sort();
    assert_eq!(due, vec![key(&t, "abandoned"), key(&t, "landed")]);
    assert_eq!(
        conflict(repo.file_delete(&t, &p("ok.jpg"), soon).await),
        FileConflict::NotFound
    );
}

/// Concurrent uploads into one new folder, and to one new path: each succeeds or is a
/// conflict, never a database error (PostgreSQL ran them concurrently and answered 500).
async fn concurrent_puts_create_a_folder_once_and_conflict_cleanly(db: &TestDb) {
    let repo = db.repo();
    let t = tenant("acme");
    let now = Utc::now();
    let puts = (0..16).map(|i| {
        let repo = repo.clone();
        let f = new_file(&t, &format!("new/deep/f{i}.jpg"), &format!("k{i}"));
        tokio::spawn(async move { repo.file_put(&f, false, now, now).await })
    });
    for h in puts.collect::<Vec<_>>() {
        h.await.unwrap().unwrap();
    }
    let same = (0..8).map(|i| {
        let repo = repo.clone();
        let f = new_file(&t, "new/same.jpg", &format!("s{i}"));
        tokio::spawn(async move { repo.file_put(&f, false, now, now).await })
    });
    let mut won = 0;
    for h in same.collect::<Vec<_>>() {
        match h.await.unwrap() {
            Ok(_) => won += 1,
            Err(FileError::Conflict(FileConflict::Exists(_))) => {}
            Err(e) => panic!("a concurrent put failed: {e:?}"),
        }
    }
    assert_eq!(won, 1, "exactly one of the puts to one path lands");
    let paths = all_paths(repo.as_ref(), &t).await;
    assert_eq!(
        paths.iter().filter(|p| p.starts_with("new/deep/")).count(),
        16
    );
    assert_eq!(
        paths.iter().filter(|p| p.as_str() == "new/deep").count(),
        1,
        "{paths:?}"
    );
}

on_both!(
    put_creates_parents_and_refuses_conflicts,
    tenants_never_see_each_other,
    listing_is_ordered_and_paginates,
    folders_copy_move_and_delete_as_units,
    write_intents_expire_unless_a_row_lands,
    concurrent_puts_create_a_folder_once_and_conflict_cleanly,
);
