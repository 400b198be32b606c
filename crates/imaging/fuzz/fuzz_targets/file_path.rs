//! File-API paths and the key builder on arbitrary input: a path that parses has no way out
//! of its folder, and a file key never leaves `tenants/{tenant}/files/`, whatever it is built
//! from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use photo_core::key::validate_segment;
use photo_core::{FilePath, ObjectKey, TenantId};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Fields separated by NUL: tenant, path, name, id, ext.
    let mut f = text.split('\0');
    let tenant = f.next().unwrap_or("");
    let path = f.next().unwrap_or("");
    let name = f.next().unwrap_or("");
    let id = f.next().unwrap_or("");
    let ext = f.next().unwrap_or("");

    for candidate in [path, &text] {
        if let Ok(p) = FilePath::parse(candidate) {
            let s = p.as_str();
            assert!(!s.is_empty() && s.len() <= photo_core::file_path::MAX_PATH_LEN);
            for seg in s.split('/') {
                assert!(validate_segment(seg).is_ok(), "{s:?}");
                assert!(seg != "." && seg != ".." && !seg.contains('\\'));
                assert!(!seg.chars().any(char::is_control));
            }
            assert_eq!(FilePath::parse(s).as_ref(), Ok(&p), "parsing is idempotent");
            for a in p.ancestors() {
                let a = FilePath::parse(a).expect("an ancestor of a valid path is valid");
                assert!(p.is_inside(&a));
            }
            if let Ok(j) = FilePath::join(Some(&p), name) {
                assert!(j.is_inside(&p));
                assert_eq!(j.parent(), s);
                assert_eq!(j.name(), name);
            }
        }
    }
    if let Ok(t) = TenantId::parse(tenant) {
        match ObjectKey::tenant_file(&t, id, ext) {
            Ok(k) => {
                assert!(k.belongs_to(&t));
                let segs: Vec<&str> = k.segments().collect();
                assert_eq!(segs.len(), 4, "{k}");
                assert_eq!(segs[2], "files");
                assert_eq!(segs[3], format!("{id}.{ext}"));
                assert!(!id.contains(['/', '.', '%', '\\']) && !ext.contains(['/', '.', '%', '\\']));
                assert_eq!(ObjectKey::parse(k.as_str()).as_ref(), Ok(&k));
            }
            Err(_) => assert!(
                id.is_empty()
                    || ext.is_empty()
                    || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    || !ext.bytes().all(|b| b.is_ascii_alphanumeric())
                    || id.len() + ext.len() + 1 > photo_core::key::MAX_SEGMENT_LEN
            ),
        }
    }
});
