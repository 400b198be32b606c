//! The tenant file API over HTTP, against the real binary: on the embedded default (SQLite +
//! local disk) and, with `PHOTO_API_TEST_BACKEND=production`, on PostgreSQL + the S3 test server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Opts, Server, expect_problem, jpeg, png, png_header_claiming};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn hex_sha256(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Where the tenant's file objects are (local directory or the S3 test server's bucket dir).
fn file_objects(s: &Server) -> Vec<String> {
    common::files_under(&common::processed_object_path(
        &s.data_dir,
        "tenants/default/files",
    ))
}

async fn upload(s: &Server, query: &str, name: &str, bytes: Vec<u8>) -> reqwest::Response {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned());
    let form = reqwest::multipart::Form::new()
        .text("metadata", r#"{"camera":"x100","album":"trip"}"#)
        .part("file", part);
    s.http
        .post(s.url(&format!("/files/upload{query}")))
        .bearer_auth(&s.key)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

async fn upload_ok(s: &Server, query: &str, name: &str, bytes: Vec<u8>) -> Value {
    let r = upload(s, query, name, bytes).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

async fn upload_many(s: &Server, folder: &str, files: Vec<(String, Vec<u8>)>) -> Value {
    let mut form = reqwest::multipart::Form::new();
    for (name, bytes) in files {
        form = form.part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(name),
        );
    }
    let r = s
        .http
        .post(s.url(&format!("/files/upload-multiple?folder={folder}")))
        .bearer_auth(&s.key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    r.json().await.unwrap()
}

async fn send(
    s: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = s.http.request(method, s.url(path)).bearer_auth(&s.key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

/// Every entry of a listing, following the cursor; checks each page's size.
async fn list_all(s: &Server, folder: &str, recursive: bool, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = format!("/files/list?folder={folder}&recursive={recursive}&limit={limit}");
        if let Some(c) = &cursor {
            q.push_str(&format!("&cursor={c}"));
        }
        let r = s.get(&q).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let page: Value = r.json().await.unwrap();
        let entries = page["entries"].as_array().unwrap();
        assert!(entries.len() <= limit);
        out.extend(entries.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(entries.len(), limit, "only the last page is short");
                cursor = Some(c.to_owned());
            }
            None => return out,
        }
    }
}

fn paths(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_owned())
        .collect()
}

async fn sweep(s: &Server) {
    let out = common::command(&s.data_dir).arg("sweep").output().unwrap();
    assert!(
        out.status.success(),
        "sweep: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn upload_download_metadata_and_conditional_requests() {
    let s = Server::start().await;
    // A PNG named .jpg: the sniffed type is what is stored and served.
    let bytes = png(64, 48);
    let f = upload_ok(&s, "?folder=photos/2024", "cat.jpg", bytes.clone()).await;
    assert_eq!(f["path"], "photos/2024/cat.jpg");
    assert_eq!(f["kind"], "file");
    assert_eq!(f["content_type"], "image/png");
    assert_eq!(f["size"], bytes.len());
    assert_eq!(
        (f["width"].as_u64(), f["height"].as_u64()),
        (Some(64), Some(48))
    );
    assert_eq!(f["sha256"], hex_sha256(&bytes));
    assert_eq!(f["metadata"]["camera"], "x100");
    let etag = format!("\"{}\"", hex_sha256(&bytes));
    assert_eq!(f["etag"], etag);

    let m: Value = s
        .get("/files/metadata/photos/2024/cat.jpg")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(m["sha256"], f["sha256"]);
    assert_eq!(m["metadata"]["album"], "trip");
    let folder: Value = s
        .get("/files/metadata/photos/2024")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(folder["kind"], "folder");

    let r = s.get("/files/download/photos/2024/cat.jpg").await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["content-length"], bytes.len().to_string().as_str());
    assert_eq!(h["etag"], etag.as_str());
    assert_eq!(h["accept-ranges"], "bytes");
    assert!(h.contains_key("last-modified"));
    assert!(
        h["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"cat.jpg\"")
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(r.bytes().await.unwrap().as_ref(), bytes.as_slice());

    let get_with = |hs: Vec<(&'static str, String)>| {
        let mut req = s
            .http
            .get(s.url("/files/download/photos/2024/cat.jpg"))
            .bearer_auth(&s.key);
        for (k, v) in hs {
            req = req.header(k, v);
        }
        req.send()
    };
    let r = get_with(vec![("if-none-match", etag.clone())])
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"], etag.as_str());
    assert!(r.bytes().await.unwrap().is_empty());
    let r = get_with(vec![("if-none-match", "\"other\"".into())])
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let r = get_with(vec![("range", "bytes=10-19".into())])
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 10-19/{}", bytes.len()).as_str()
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), &bytes[10..20]);
    let r = get_with(vec![("range", "bytes=-7".into())]).await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &bytes[bytes.len() - 7..]);
    let r = get_with(vec![("range", format!("bytes={}-", bytes.len()))])
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{}", bytes.len()).as_str()
    );
    expect_problem(r, 416, "range_not_satisfiable").await;
    // A stale If-Range gets the whole file.
    let r = get_with(vec![
        ("range", "bytes=0-3".into()),
        ("if-range", "\"stale\"".into()),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), bytes.len());

    // Folders are not files, and the reverse.
    expect_problem(
        s.get("/files/download/photos/2024").await,
        409,
        "is_a_folder",
    )
    .await;
    expect_problem(
        s.get("/files/list?folder=photos/2024/cat.jpg").await,
        409,
        "not_a_folder",
    )
    .await;
    expect_problem(
        s.get("/files/download/photos/2024/nope.jpg").await,
        404,
        "not_found",
    )
    .await;
    let r = send(
        &s,
        reqwest::Method::DELETE,
        "/files/delete/photos/2024",
        None,
    )
    .await;
    expect_problem(r, 409, "is_a_folder").await;
    // Authentication is required on every file route.
    let r = s
        .http
        .get(s.url("/files/download/photos/2024/cat.jpg"))
        .send()
        .await
        .unwrap();
    expect_problem(r, 401, "unauthenticated").await;
}

#[tokio::test]
async fn overwrite_is_explicit_and_replaced_bytes_are_collected() {
    let s = Server::start_with(Opts::default().env("PHOTO_API_FILES_GC_DELAY", "0s")).await;
    let first = jpeg(32, 32);
    let second = png(20, 10);
    upload_ok(&s, "", "a.jpg", first.clone()).await;
    let r = upload(&s, "", "a.jpg", second.clone()).await;
    let p = expect_problem(r, 409, "already_exists").await;
    assert!(p["detail"].as_str().unwrap().contains("a.jpg"));
    let r = s.get("/files/download/a.jpg").await;
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        first.as_slice(),
        "unchanged"
    );
    assert_eq!(file_objects(&s).len(), 1, "the refused body left nothing");

    let f = upload_ok(&s, "?overwrite=true", "a.jpg", second.clone()).await;
    assert_eq!(f["content_type"], "image/png");
    let r = s.get("/files/download/a.jpg").await;
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.bytes().await.unwrap().as_ref(), second.as_slice());
    assert_eq!(
        file_objects(&s).len(),
        2,
        "the old bytes wait for the sweeper"
    );
    sweep(&s).await;
    assert_eq!(
        file_objects(&s).len(),
        1,
        "the sweeper removed the replaced bytes"
    );

    // A folder in the way, and a file in the way of a folder.
    let r = send(
        &s,
        reqwest::Method::POST,
        "/files/folder/create",
        Some(json!({"path": "dir"})),
    )
    .await;
    assert_eq!(r.status(), 201);
    let r = send(
        &s,
        reqwest::Method::POST,
        "/files/folder/create",
        Some(json!({"path": "dir"})),
    )
    .await;
    assert_eq!(r.status(), 200, "idempotent");
    let r = upload(&s, "?overwrite=true", "dir", jpeg(8, 8)).await;
    expect_problem(r, 409, "is_a_folder").await;
    let r = upload(&s, "?folder=a.jpg", "x.jpg", jpeg(8, 8)).await;
    expect_problem(r, 409, "not_a_folder").await;
    let r = send(
        &s,
        reqwest::Method::POST,
        "/files/folder/create",
        Some(json!({"path": "a.jpg/sub"})),
    )
    .await;
    expect_problem(r, 409, "not_a_folder").await;
    let empty = list_all(&s, "dir", false, 10).await;
    assert!(empty.is_empty());
    let root = paths(&list_all(&s, "", false, 10).await);
    assert_eq!(root, vec!["a.jpg", "dir"], "the empty folder shows");

    // Deleting a file: gone at once; its bytes after the grace period (0 here).
    let r = send(&s, reqwest::Method::DELETE, "/files/delete/a.jpg", None).await;
    assert_eq!(r.status(), 200);
    expect_problem(s.get("/files/download/a.jpg").await, 404, "not_found").await;
    sweep(&s).await;
    assert!(file_objects(&s).is_empty());
    let r = send(&s, reqwest::Method::DELETE, "/files/delete/a.jpg", None).await;
    expect_problem(r, 404, "not_found").await;
}

#[tokio::test]
async fn bad_files_and_paths_are_refused_and_nothing_is_stored() {
    let s = Server::start_with(Opts::default().env("PHOTO_API_FILES_MAX_SIZE", "20000")).await;
    let r = upload(
        &s,
        "",
        "notes.jpg",
        b"just some text, not an image".to_vec(),
    )
    .await;
    expect_problem(r, 415, "unsupported_format").await;
    let r = upload(&s, "", "empty.jpg", Vec::new()).await;
    expect_problem(r, 400, "empty_upload").await;
    // Over the limit, but small enough to be sent whole before the server answers.
    let big = common::noisy_jpeg(150, 150);
    assert!(big.len() > 20_000 && big.len() < 200_000, "{}", big.len());
    let r = upload(&s, "", "big.jpg", big).await;
    expect_problem(r, 413, "upload_too_large").await;
    let r = upload(&s, "", "huge.png", png_header_claiming(65_000, 65_000)).await;
    expect_problem(r, 422, "image_too_large").await;
    // JPEG magic, then no header: refused. (Only headers are read here; pixels are decoded
    // only by jobs, in the worker process.)
    let mut headless = jpeg(64, 64);
    headless.truncate(4);
    let r = upload(&s, "", "cut.jpg", headless).await;
    assert_eq!(r.status(), 422, "{}", r.text().await.unwrap());

    // Traversal and encoding tricks, in every place a path comes from.
    for folder in [
        "..", "a/../b", "a//b", "a%5Cb", "a%00b", "%2e%2e", "a/%2E/b", "x%0Ay",
    ] {
        let r = upload(&s, &format!("?folder={folder}"), "ok.jpg", jpeg(8, 8)).await;
        expect_problem(r, 400, "invalid_path").await;
    }
    for name in ["../evil.jpg", "..", "a\\b.jpg", "dir/evil.jpg"] {
        let r = upload(&s, "", name, jpeg(8, 8)).await;
        expect_problem(r, 400, "invalid_path").await;
    }
    let long = "x".repeat(300);
    for path in [
        "a%2F..%2Fb",
        "..%2Ftenants%2Fother%2Fx",
        "a%5Cb",
        "a%00",
        &long,
    ] {
        for route in ["download", "metadata", "presigned-url"] {
            expect_problem(
                s.get(&format!("/files/{route}/{path}")).await,
                400,
                "invalid_path",
            )
            .await;
        }
        let r = send(
            &s,
            reqwest::Method::DELETE,
            &format!("/files/delete/{path}"),
            None,
        )
        .await;
        expect_problem(r, 400, "invalid_path").await;
    }
    // Decoded exactly once: "%252e%252e" is the literal name "%2e%2e", which does not exist.
    expect_problem(s.get("/files/download/%252e%252e").await, 404, "not_found").await;
    let r = send(
        &s,
        reqwest::Method::POST,
        "/files/copy",
        Some(json!({"source": "a", "destination": "../../etc"})),
    )
    .await;
    expect_problem(r, 400, "invalid_path").await;
    let r = send(
        &s,
        reqwest::Method::POST,
        "/files/folder/create",
        Some(json!({"path": "a/./b"})),
    )
    .await;
    expect_problem(r, 400, "invalid_path").await;
    let r = send(
        &s,
        reqwest::Method::DELETE,
        "/files/folder/delete?path=..",
        None,
    )
    .await;
    expect_problem(r, 400, "invalid_path").await;
    let r = send(
        &s,
        reqwest::Method::POST,
        "/files/delete-multiple",
        Some(json!({"paths": []})),
    )
    .await;
    expect_problem(r, 422, "too_many_files").await;
    let many: Vec<String> = (0..1001).map(|i| format!("f{i}")).collect();
    let r = send(
        &s,
        reqwest::Method::POST,
        "/files/delete-multiple",
        Some(json!({"paths": many})),
    )
    .await;
    expect_problem(r, 422, "too_many_files").await;
    let r = s.get("/files/list?limit=0").await;
    expect_problem(r, 422, "invalid_request").await;
    let r = s.get("/files/list?cursor=%%%").await;
    assert_eq!(r.status(), 400);
    // Bad metadata.
    let form = reqwest::multipart::Form::new()
        .text("metadata", r#"{"bad key":"v"}"#)
        .part(
            "file",
            reqwest::multipart::Part::bytes(jpeg(8, 8)).file_name("m.jpg"),
        );
    let r = s
        .http
        .post(s.url("/files/upload"))
        .bearer_auth(&s.key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    expect_problem(r, 422, "invalid_request").await;

    assert!(
        paths(&list_all(&s, "", true, 100).await).is_empty(),
        "no entry was created"
    );
    sweep(&s).await;
    assert!(
        file_objects(&s).is_empty(),
        "no object was left: {:?}",
        file_objects(&s)
    );
    assert!(common::staging_empty(&s.data_dir));
}

#[tokio::test]
async fn upload_multiple_reports_each_file() {
    let s = Server::start().await;
    upload_ok(&s, "?folder=m", "taken.jpg", jpeg(8, 8)).await;
    let res = upload_many(
        &s,
        "m",
        vec![
            ("one.jpg".into(), jpeg(16, 16)),
            ("text.jpg".into(), b"not an image".to_vec()),
            ("taken.jpg".into(), jpeg(16, 16)),
            ("../up.jpg".into(), jpeg(16, 16)),
            ("two.png".into(), png(16, 16)),
        ],
    )
    .await;
    let statuses: Vec<u64> = res["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![201, 415, 409, 400, 201], "{res}");
    assert_eq!(res["succeeded"], 2);
    assert_eq!(res["failed"], 3);
    assert_eq!(res["results"][2]["code"], "already_exists");
    assert_eq!(
        paths(&list_all(&s, "m", false, 10).await),
        vec!["m/one.jpg", "m/taken.jpg", "m/two.png"]
    );
    // delete-multiple: per-path results.
    let r = send(
        &s,
        reqwest::Method::POST,
        "/files/delete-multiple",
        Some(json!({"paths": ["m/one.jpg", "m/missing.jpg", "m/../x", "m", "m/two.png"]})),
    )
    .await;
    assert_eq!(r.status(), 200);
    let res: Value = r.json().await.unwrap();
    let statuses: Vec<u64> = res["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![200, 404, 400, 409, 200], "{res}");
    assert_eq!(
        paths(&list_all(&s, "m", false, 10).await),
        vec!["m/taken.jpg"]
    );
}

/// Small distinct PNGs: 1,500 + 1,000 files.
fn tiny(i: usize) -> Vec<u8> {
    png(1 + (i % 7) as u32, 1 + (i % 5) as u32)
}

#[tokio::test]
async fn thousands_of_files_paginate_and_folders_copy_move_delete_as_units() {
    let s = Server::start_with(Opts::default().env("PHOTO_API_FILES_GC_DELAY", "0s")).await;
    for batch in 0..15 {
        let files = (0..100)
            .map(|i| {
                let n = batch * 100 + i;
                (format!("img-{n:05}.png"), tiny(n))
            })
            .collect();
        let res = upload_many(&s, &format!("big/part{:02}", batch % 3), files).await;
        assert_eq!(res["succeeded"], 100, "{res}");
    }
    for batch in 0..10 {
        let files = (0..100)
            .map(|i| (format!("more-{:05}.png", batch * 100 + i), tiny(i)))
            .collect();
        assert_eq!(upload_many(&s, "more", files).await["succeeded"], 100);
    }
    // 2,500 files (+ 5 folders), page by page in byte order, none twice, none missing.
    let all = list_all(&s, "", true, 333).await;
    let all_paths = paths(&all);
    assert_eq!(all.len(), 2_500 + 5);
    let mut sorted = all_paths.clone();
    sorted.sort();
    assert_eq!(all_paths, sorted);
    assert_eq!(all_paths.iter().collect::<BTreeSet<_>>().len(), all.len());
    let files = all.iter().filter(|e| e["kind"] == "file").count();
    assert_eq!(files, 2_500);
    let top = paths(&list_all(&s, "", false, 1000).await);
    assert_eq!(top, vec!["big", "more"]);
    let more = list_all(&s, "more", false, 1000).await;
    assert_eq!(more.len(), 1_000);

    let objects_before = file_objects(&s).len();
    assert_eq!(objects_before, 2_500);
    // Copy the 1,500-file folder: shared bytes, no new objects.
    let r = send(
        &s,
        reqwest::Method::POST,
        "/files/copy",
        Some(json!({"source": "big", "destination": "archive/big"})),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let copied = list_all(&s, "archive/big", true, 1000).await;
    assert_eq!(copied.iter().filter(|e| e["kind"] == "file").count(), 1_500);
    assert_eq!(file_objects(&s).len(), objects_before);
    let r = s
        .get("/files/download/archive/big/part00/img-00001.png")
        .await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), tiny(1).as_slice());
    // Copying onto an existing folder is refused, and changes nothing.
    let r = send(
        &s,
        reqwest::Method::POST,
        "/files/copy",
        Some(json!({"source": "big", "destination": "more", "overwrite": true})),
    )
    .await;
    expect_problem(r, 409, "already_exists").await;
    let r = send(
        &s,
        reqwest::Method::POST,
        "/files/move",
        Some(json!({"source": "big", "destination": "big/inner"})),
    )
    .await;
    expect_problem(r, 422, "invalid_path").await;

    // Move: every file at the destination, none at the source.
    let r = send(
        &s,
        reqwest::Method::POST,
        "/files/move",
        Some(json!({"source": "archive/big", "destination": "moved"})),
    )
    .await;
    assert_eq!(r.status(), 200);
    let moved: Value = r.json().await.unwrap();
    assert_eq!(moved["entries"], 1_500 + 3 + 1);
    expect_problem(s.get("/files/metadata/archive/big").await, 404, "not_found").await;
    assert_eq!(
        list_all(&s, "moved", true, 1000).await.len(),
        1_503,
        "3 folders + 1,500 files"
    );

    // Delete the original: the moved copy keeps every byte.
    let r = send(
        &s,
        reqwest::Method::DELETE,
        "/files/folder/delete?path=big",
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let d: Value = r.json().await.unwrap();
    assert_eq!(
        (d["deleted_files"].as_u64(), d["deleted_folders"].as_u64()),
        (Some(1_500), Some(4))
    );
    sweep(&s).await;
    assert_eq!(
        file_objects(&s).len(),
        objects_before,
        "the copy still uses them"
    );
    let r = s.get("/files/download/moved/part02/img-01499.png").await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), tiny(1_499).as_slice());
    // Delete the copy too: now the bytes go.
    let r = send(
        &s,
        reqwest::Method::DELETE,
        "/files/folder/delete?path=moved",
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    sweep(&s).await;
    assert_eq!(
        file_objects(&s).len(),
        1_000,
        "only the 'more' folder's bytes remain"
    );
}

#[tokio::test]
async fn a_killed_move_or_folder_delete_leaves_every_file_in_exactly_one_place() {
    let mut s = Server::start().await;
    for batch in 0..15 {
        let files = (0..100)
            .map(|i| (format!("f{:05}.png", batch * 100 + i), tiny(i)))
            .collect();
        upload_many(&s, "a", files).await;
    }
    let names: BTreeSet<String> = (0..1500).map(|i| format!("f{i:05}.png")).collect();
    let (mut from, mut to) = ("a", "b");
    for round in 0..6u64 {
        // Send the move and SIGKILL the server a little later: before, during or after it.
        let http = s.http.clone();
        let url = s.url("/files/move");
        let key = s.key.clone();
        let body = json!({"source": from, "destination": to});
        let req =
            tokio::spawn(async move { http.post(url).bearer_auth(key).json(&body).send().await });
        tokio::time::sleep(Duration::from_millis(round * 15)).await;
        s.kill9();
        let answered = req.await.unwrap().map(|r| r.status().as_u16()).ok();
        let data_dir = s.data_dir.clone();
        let key = s.key.clone();
        s = Server::start_with(Opts {
            data_dir: Some(data_dir),
            key: Some(key),
            env: vec![("API_KEY".into(), s.key.clone())],
            ..Opts::default()
        })
        .await;
        let at_from: BTreeSet<String> = list_all(&s, "", true, 1000)
            .await
            .iter()
            .filter(|e| e["kind"] == "file")
            .map(|e| e["path"].as_str().unwrap().to_owned())
            .collect();
        let in_from = at_from
            .iter()
            .filter(|p| p.starts_with(&format!("{from}/")))
            .count();
        let in_to = at_from
            .iter()
            .filter(|p| p.starts_with(&format!("{to}/")))
            .count();
        assert_eq!(
            at_from.len(),
            1_500,
            "round {round}: no file lost or doubled"
        );
        assert!(
            (in_from, in_to) == (1_500, 0) || (in_from, in_to) == (0, 1_500),
            "round {round}: all at one place, got {in_from} + {in_to} (answer {answered:?})"
        );
        if answered == Some(200) {
            assert_eq!(in_to, 1_500, "an acknowledged move is durable");
        }
        let folder = if in_to == 1_500 { to } else { from };
        let got: BTreeSet<String> = at_from
            .iter()
            .map(|p| p.strip_prefix(&format!("{folder}/")).unwrap().to_owned())
            .collect();
        assert_eq!(got, names);
        if in_to == 1_500 {
            (from, to) = (to, from);
        }
    }
    // A folder delete killed half-way resumes where it stopped.
    let http = s.http.clone();
    let url = s.url(&format!("/files/folder/delete?path={from}"));
    let key = s.key.clone();
    let req = tokio::spawn(async move { http.delete(url).bearer_auth(key).send().await });
    tokio::time::sleep(Duration::from_millis(40)).await;
    s.kill9();
    let _ = req.await;
    let data_dir = s.data_dir.clone();
    s = Server::start_with(Opts {
        data_dir: Some(data_dir),
        key: Some(s.key.clone()),
        env: vec![("API_KEY".into(), s.key.clone())],
        ..Opts::default()
    })
    .await;
    let left = list_all(&s, from, true, 1000).await;
    for e in left.iter().filter(|e| e["kind"] == "file").take(20) {
        let r = s
            .get(&format!("/files/download/{}", e["path"].as_str().unwrap()))
            .await;
        assert_eq!(r.status(), 200, "what is still listed is whole");
    }
    let r = send(
        &s,
        reqwest::Method::DELETE,
        &format!("/files/folder/delete?path={from}"),
        None,
    )
    .await;
    if left.is_empty() {
        expect_problem(r, 404, "not_found").await;
    } else {
        assert_eq!(r.status(), 200);
    }
    assert!(list_all(&s, "", true, 1000).await.is_empty());
}

#[tokio::test]
async fn presigned_download_urls_and_browser_uploads() {
    let s = Server::start_with(
        Opts::default()
            .env("PHOTO_API_FILES_MAX_URL_TTL", "10m")
            .env("PHOTO_API_FILES_GC_DELAY", "0s"),
    )
    .await;
    let bytes = jpeg(40, 30);
    upload_ok(&s, "?folder=p", "x.jpg", bytes.clone()).await;
    let r = s
        .get("/files/presigned-url/p/x.jpg?expires_in=999999999")
        .await;
    assert_eq!(r.status(), 200);
    let u: Value = r.json().await.unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(u["expires_at"].as_str().unwrap()).unwrap();
    let left = expires
        .signed_duration_since(chrono::Utc::now())
        .num_seconds();
    assert!((590..=601).contains(&left), "capped at 10 minutes: {left}");
    // No credentials needed.
    let r = reqwest::get(u["url"].as_str().unwrap()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_eq!(r.bytes().await.unwrap().as_ref(), bytes.as_slice());
    // With a download name, signed into the URL.
    let u: Value = s
        .get("/files/presigned-url/p/x.jpg?attachment=holiday.jpg")
        .await
        .json()
        .await
        .unwrap();
    let url = u["url"].as_str().unwrap();
    let r = reqwest::get(url).await.unwrap();
    assert_eq!(r.status(), 200);
    if let Some(cd) = r.headers().get("content-disposition") {
        assert!(cd.to_str().unwrap().contains("holiday.jpg"));
    } else {
        // The S3 test server does not implement response-content-disposition; AWS does.
        assert!(common::production().is_some(), "the local adapter sets it");
        assert!(url.contains("response-content-disposition"));
    }
    assert_eq!(r.bytes().await.unwrap().as_ref(), bytes.as_slice());
    let tampered = url.replace("holiday", "payload");
    let r = reqwest::get(&tampered).await.unwrap();
    assert_eq!(r.status(), 403);
    expect_problem(s.get("/files/presigned-url/p").await, 409, "is_a_folder").await;
    expect_problem(
        s.get("/files/presigned-url/p/x.jpg?attachment=a/b").await,
        400,
        "invalid_path",
    )
    .await;

    // A browser upload: presigned target, then complete → the file appears.
    let png_bytes = png(30, 20);
    let r = send(
        &s,
        reqwest::Method::POST,
        "/files/presigned-upload?file_path=web/shot.png",
        None,
    )
    .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let init: Value = r.json().await.unwrap();
    assert_eq!(init["content_type"], "image/png");
    assert_eq!(init["file_path"], "web/shot.png");
    let r = s.send_upload(&init, png_bytes.clone(), "image/png").await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    expect_problem(
        s.get("/files/metadata/web/shot.png").await,
        404,
        "not_found",
    )
    .await;
    let r = s
        .http
        .post(s.url(init["complete_url"].as_str().unwrap()))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let done: Value = r.json().await.unwrap();
    assert_eq!(done["file"]["path"], "web/shot.png");
    assert_eq!(done["file"]["sha256"], hex_sha256(&png_bytes));
    let r = s.get("/files/download/web/shot.png").await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), png_bytes.as_slice());
    // Completing again is harmless.
    let r = s
        .http
        .post(s.url(init["complete_url"].as_str().unwrap()))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(list_all(&s, "web", false, 10).await.len(), 1);
    // The path is taken now; a spoofed upload is rejected and never becomes a file.
    let r = send(
        &s,
        reqwest::Method::POST,
        "/files/presigned-upload?file_path=web/shot.png",
        None,
    )
    .await;
    expect_problem(r, 409, "already_exists").await;
    let r = send(
        &s,
        reqwest::Method::POST,
        "/files/presigned-upload?file_path=web/fake.png",
        None,
    )
    .await;
    let init: Value = r.json().await.unwrap();
    let r = s.send_upload(&init, jpeg(8, 8), "image/png").await;
    assert!(r.status().is_success());
    let r = s.complete(init["upload_id"].as_str().unwrap()).await;
    expect_problem(r, 422, "content_type_mismatch").await;
    expect_problem(
        s.get("/files/metadata/web/fake.png").await,
        404,
        "not_found",
    )
    .await;
    let r = send(
        &s,
        reqwest::Method::POST,
        "/files/presigned-upload?file_path=web/doc.pdf",
        None,
    )
    .await;
    expect_problem(r, 422, "unsupported_content_type").await;
    let r = send(
        &s,
        reqwest::Method::POST,
        "/files/presigned-upload?file_path=w/x.png&max_bytes=999999999999",
        None,
    )
    .await;
    expect_problem(r, 422, "max_bytes_too_large").await;
}

/// A `size`-byte JPEG (a real header, then padding after the image), as a stream of 1 MiB
/// chunks; also returns its SHA-256.
fn big_jpeg_stream(size: u64) -> (reqwest::Body, String) {
    let head = jpeg(16, 16);
    let chunk = vec![0x5Au8; 1 << 20];
    let mut h = Sha256::new();
    h.update(&head);
    let mut left = size - head.len() as u64;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        h.update(&chunk[..n]);
        left -= n as u64;
    }
    let digest: String = h.finalize().iter().map(|x| format!("{x:02x}")).collect();
    let mut left = size - head.len() as u64;
    let mut first = Some(head);
    let chunks = std::iter::from_fn(move || {
        if let Some(h) = first.take() {
            return Some(h);
        }
        if left == 0 {
            return None;
        }
        let n = left.min(chunk.len() as u64) as usize;
        left -= n as u64;
        Some(chunk[..n].to_vec())
    });
    let stream = futures_util::stream::iter(chunks.map(Ok::<_, std::io::Error>));
    (reqwest::Body::wrap_stream(stream), digest)
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_one_gib_file_streams_through_in_bounded_memory() {
    const SIZE: u64 = 1 << 30;
    let s = Server::start_with(Opts::default().env("PHOTO_API_FILES_MAX_SIZE", "2GiB")).await;
    let pid = s.child.id();
    upload_ok(&s, "", "warmup.jpg", jpeg(8, 8)).await;
    let _ = s
        .get("/files/download/warmup.jpg")
        .await
        .bytes()
        .await
        .unwrap();
    let before = rss_kib(pid, "VmRSS:");
    let (body, digest) = big_jpeg_stream(SIZE);
    let part = reqwest::multipart::Part::stream_with_length(body, SIZE).file_name("big.jpg");
    let form = reqwest::multipart::Form::new().part("file", part);
    let r = s
        .http
        .post(s.url("/files/upload"))
        .bearer_auth(&s.key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let f: Value = r.json().await.unwrap();
    assert_eq!(f["size"], SIZE);
    assert_eq!(f["sha256"], digest);
    let mut r = s.get("/files/download/big.jpg").await;
    assert_eq!(r.status(), 200);
    let mut h = Sha256::new();
    let mut n = 0u64;
    while let Some(c) = r.chunk().await.unwrap() {
        n += c.len() as u64;
        h.update(&c);
    }
    assert_eq!(n, SIZE);
    let got: String = h.finalize().iter().map(|x| format!("{x:02x}")).collect();
    assert_eq!(got, digest);
    let peak = rss_kib(pid, "VmHWM:");
    let growth_mib = peak.saturating_sub(before) / 1024;
    eprintln!(
        "server RSS before {} MiB, peak {} MiB, growth {growth_mib} MiB",
        before / 1024,
        peak / 1024
    );
    assert!(
        growth_mib < 64,
        "RSS grew by {growth_mib} MiB moving 1 GiB in and out"
    );
    // A GiB per run would pile up in the temporary directory.
    let dir = s.data_dir.clone();
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(p) = common::production() {
        let _ = std::fs::remove_dir_all(p.s3_root(&dir));
    }
}
