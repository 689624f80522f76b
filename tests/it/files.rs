//! Note files over real HTTP against the real binary: uploads by signed URL issued by the
//! apiserver, streamed to the fsserver's disk and checked byte for byte (sha256) on the way
//! back; ranges and caching headers; memory that stays flat during a 200 MiB upload; every
//! kind of bad upload refused with nothing partial left; and an fsserver on its own
//! (`meeting-appliance fsserver …`) that serves the apiserver's uploads with only the secret.

use crate::support;

use meeting_appliance::ids::{FileId, MeetingId};
use meeting_appliance::proto::files::{FileGrant, FileOp};
use meeting_appliance::tokens::Keys;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use support::api::call;
use support::files::{
    RssSampler, get_hashed, grant, pattern_bytes, put_pattern, put_stream, put_then_hang_up, raw,
    request, rss_kib, sha256_hex, split_url, tree, upload,
};
use support::media::sign_in_from_log;
use support::{Appliance, FakeAllocator, free_port, wait_until};

const MIB: u64 = 1024 * 1024;

fn now() -> i64 {
    meeting_appliance::util::now()
}

/// An all-in-one box without fixed ports (tests run side by side).
fn start(extra: &[&str], envs: &[(&str, &str)]) -> Appliance {
    let mut args = vec!["--udpPort", "0", "--port", "0", "--sfuWorkers", "1"];
    args.extend_from_slice(extra);
    Appliance::start(&args, envs)
}

async fn instant_meeting(base: &str, token: &str) -> i64 {
    let a = call(
        "POST",
        &format!("{base}/api/v1/meetings"),
        Some(token),
        Some(json!({})),
    )
    .await;
    assert!(a.status == 201 || a.status == 200, "{:?}", a.body);
    a.body["id"].as_i64().expect("meeting id")
}

/// Follows the stable file path to the fsserver: the 302's Location.
async fn location(base: &str, token: &str, meeting: i64, file: &str) -> String {
    let url = format!("{base}/api/v1/meetings/{meeting}/files/{file}");
    let auth = format!("Bearer {token}");
    let r =
        tokio::task::spawn_blocking(move || request("GET", &url, &[("Authorization", &auth)], b""))
            .await
            .expect("thread");
    assert_eq!(r.status, 302, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    r.header("location").expect("Location").to_string()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking thread")
}

fn files_dir(app: &Appliance) -> std::path::PathBuf {
    app.data_dir().join("files")
}

fn tmp_is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("tmp")).is_ok_and(|mut d| d.next().is_none())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_ranges_caching_and_flat_memory_for_200_mib() {
    let app = start(&[], &[]);
    let base = app.base_url();
    let ann = sign_in_from_log(&app, "ann@corp.test").await;
    let id = instant_meeting(&base, &ann).await;

    // 0 B, 1 MiB and 200 MiB: what comes back is what went in.
    let mut stored = Vec::new();
    for (len, seed) in [(0, 1), (MIB, 2), (200 * MIB, 3)] {
        let (s, g) = grant(
            &base,
            &ann,
            id,
            json!({"name": format!("blob-{len}.bin"), "content_type": "application/octet-stream", "size": len}),
        )
        .await;
        assert_eq!(s, 201, "{g:?}");
        let url = g["upload_url"].as_str().expect("upload_url").to_string();
        assert!(
            url.starts_with(&format!("{base}/fs/v1/files/{id}/")),
            "{url}"
        );
        let big = len >= 100 * MIB;
        let pid = app.pid();
        let before = rss_kib(pid).expect("rss");
        let sampler = big.then(|| RssSampler::start(pid));
        let (put, sent_sha, took) =
            blocking(move || put_pattern(&url, "application/octet-stream", len, seed)).await;
        assert_eq!(put.status, 201, "{:?}", String::from_utf8_lossy(&put.body));
        let answer = put.json();
        assert_eq!(answer["sha256"], sent_sha.as_str());
        assert_eq!(answer["size"], len);
        if let Some(sampler) = sampler {
            let (peak, samples) = sampler.stop();
            let mbps = len as f64 / MIB as f64 / took.as_secs_f64();
            eprintln!(
                "MEASURED upload {} MiB in {:.2}s = {mbps:.1} MiB/s; appliance RSS before {} MiB, peak during upload {} MiB ({samples} samples)",
                len / MIB,
                took.as_secs_f64(),
                before / 1024,
                peak / 1024
            );
            assert!(samples > 10, "RSS was sampled during the upload");
            assert!(
                peak < before + 64 * 1024,
                "RSS grew from {before} KiB to {peak} KiB during a {len}-byte upload: not streamed"
            );
            assert!(
                peak * 1024 < len / 2,
                "RSS {peak} KiB is far below the file size"
            );
        }
        let f = support::files::commit(&base, &ann, id, &g["id"], &answer["receipt"]).await;
        assert_eq!(
            (f["size"].as_u64(), f["sha256"].as_str()),
            (Some(len), Some(sent_sha.as_str()))
        );
        let file = f["id"].as_str().expect("id").to_string();
        let loc = location(&base, &ann, id, &file).await;
        let pid = app.pid();
        let sampler = big.then(|| RssSampler::start(pid));
        let (resp, got_len, got_sha, took) = blocking(move || get_hashed(&loc, &[])).await;
        assert_eq!(resp.status, 200);
        assert_eq!(
            (got_len, got_sha.as_str()),
            (len, sent_sha.as_str()),
            "identical bytes back"
        );
        if let Some(sampler) = sampler {
            let (peak, _) = sampler.stop();
            eprintln!(
                "MEASURED download {} MiB in {:.2}s = {:.1} MiB/s; appliance RSS peak during download {} MiB",
                len / MIB,
                took.as_secs_f64(),
                len as f64 / MIB as f64 / took.as_secs_f64(),
                peak / 1024
            );
            assert!(
                peak < before + 64 * 1024,
                "download streamed too: {peak} KiB"
            );
        }
        stored.push((file, len, seed, sent_sha));
    }

    // Ranges, ETag, caching and safety headers, on the 1 MiB file.
    let (file, len, seed, sha) = stored[1].clone();
    let data = pattern_bytes(seed, len as usize);
    let loc = location(&base, &ann, id, &file).await;
    let etag = format!("\"{sha}\"");
    let l = loc.clone();
    let full = blocking(move || request("GET", &l, &[], b"")).await;
    assert_eq!(full.status, 200);
    assert_eq!(full.body, data);
    assert_eq!(full.header("etag"), Some(etag.as_str()));
    assert_eq!(full.header("accept-ranges"), Some("bytes"));
    assert_eq!(full.header("x-content-type-options"), Some("nosniff"));
    assert!(
        full.header("content-disposition")
            .is_some_and(|d| d.starts_with("attachment;") && d.contains("blob-1048576.bin")),
        "{:?}",
        full.headers
    );
    let cc = full.header("cache-control").expect("cache-control");
    assert!(
        cc.contains("private") && cc.contains("immutable") && cc.contains("max-age="),
        "{cc}"
    );
    for (range, want, status) in [
        ("bytes=1000-1999", Some((1000usize, 1999usize)), 206),
        (
            "bytes=-100",
            Some((len as usize - 100, len as usize - 1)),
            206,
        ),
        ("bytes=1048000-", Some((1048000, len as usize - 1)), 206),
        ("bytes=1048576-", None, 416),
    ] {
        let (l, r) = (loc.clone(), range.to_string());
        let a = blocking(move || request("GET", &l, &[("Range", &r)], b"")).await;
        assert_eq!(a.status, status, "{range}");
        match want {
            Some((s, e)) => {
                assert_eq!(a.body, &data[s..=e], "{range}");
                assert_eq!(
                    a.header("content-range"),
                    Some(format!("bytes {s}-{e}/{len}").as_str())
                );
            }
            None => assert_eq!(
                a.header("content-range"),
                Some(format!("bytes */{len}").as_str())
            ),
        }
    }
    // A range for another version of the file is ignored (If-Range).
    let l = loc.clone();
    let a = blocking(move || {
        request(
            "GET",
            &l,
            &[("Range", "bytes=0-9"), ("If-Range", "\"other\"")],
            b"",
        )
    })
    .await;
    assert_eq!((a.status, a.body.len()), (200, len as usize));
    let (l, e) = (loc.clone(), etag.clone());
    let a = blocking(move || request("GET", &l, &[("If-None-Match", &e)], b"")).await;
    assert_eq!((a.status, a.body.len()), (304, 0));
    let (addr, path) = split_url(&loc);
    let a = blocking(move || {
        raw(&addr, &format!("HEAD {path} HTTP/1.1\r\nHost: x"), b"").expect("HEAD")
    })
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-length"), Some("1048576"));

    // Inline only for allowlisted images whose bytes are images.
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(pattern_bytes(9, 2000));
    let p = upload(&base, &ann, id, "shot.png", "image/png", png.clone()).await;
    let fake = upload(
        &base,
        &ann,
        id,
        "page.png",
        "image/png",
        b"<html><script>alert(1)</script>".to_vec(),
    )
    .await;
    for (f, inline, bytes) in [
        (&p, true, png),
        (&fake, false, b"<html><script>alert(1)</script>".to_vec()),
    ] {
        let l = location(&base, &ann, id, f["id"].as_str().expect("id")).await;
        let a = blocking(move || request("GET", &l, &[], b"")).await;
        assert_eq!(a.body, bytes);
        let cd = a.header("content-disposition").expect("disposition");
        assert_eq!(cd.starts_with("inline;"), inline, "{cd}");
        assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(a.header("content-type"), Some("image/png"));
    }

    // Listing, and deleting through the apiserver.
    let list = call(
        "GET",
        &format!("{base}/api/v1/meetings/{id}/files"),
        Some(&ann),
        None,
    )
    .await;
    assert_eq!(list.status, 200);
    let mut names: Vec<&str> = list
        .body
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "blob-0.bin",
            "blob-1048576.bin",
            "blob-209715200.bin",
            "page.png",
            "shot.png"
        ]
    );
    let big_file = stored[2].0.clone();
    let a = call(
        "DELETE",
        &format!("{base}/api/v1/meetings/{id}/files/{big_file}"),
        Some(&ann),
        None,
    )
    .await;
    assert_eq!(a.status, 204, "{:?}", a.body);
    assert!(
        !files_dir(&app)
            .join(format!("meetings/{id}/{big_file}"))
            .exists()
    );
    let a = call(
        "GET",
        &format!("{base}/api/v1/meetings/{id}/files/{big_file}"),
        Some(&ann),
        None,
    )
    .await;
    assert_eq!(a.status, 404);
    // A guest in the meeting reads too, through download URLs that expire within minutes.
    let code = call(
        "GET",
        &format!("{base}/api/v1/meetings/{id}"),
        Some(&ann),
        None,
    )
    .await
    .body["code"]
        .as_str()
        .expect("code")
        .to_string();
    let g = call(
        "POST",
        &format!("{base}/api/v1/join/{code}"),
        None,
        Some(json!({"display_name": "Gus"})),
    )
    .await;
    let gtok = g.body["token"].as_str().expect("join token").to_string();
    // A join answer alone opens nothing: the guest must be in the meeting.
    let list_url = format!("{base}/api/v1/meetings/{id}/files");
    let as_guest = |t: String| {
        let u = list_url.clone();
        async move {
            support::api::client()
                .get(u)
                .header("X-Join-Token", t)
                .send()
                .await
                .expect("guest list")
                .status()
                .as_u16()
        }
    };
    assert_eq!(as_guest(gtok.clone()).await, 403);
    let _present = support::api::enter(&g.body).await;
    support::api::eventually("the guest's entry", || async {
        as_guest(gtok.clone()).await == 200
    })
    .await;
    let r = support::api::client()
        .get(format!("{base}/api/v1/meetings/{id}/files"))
        .header("X-Join-Token", &gtok)
        .send()
        .await
        .expect("guest list");
    assert_eq!(r.status().as_u16(), 200);
    let list: Value = r.json().await.expect("json");
    let url = list[0]["download_url"].as_str().expect("download_url");
    let token = url.split("?t=").nth(1).expect("grant");
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.split('.').next().expect("body"),
        )
        .expect("base64"),
    )
    .expect("claims");
    let left = claims["exp"].as_i64().expect("exp") - now();
    assert!((0..=300).contains(&left), "a guest's URL lives {left}s");
    // A stranger sees nothing.
    let eve = sign_in_from_log(&app, "eve@corp.test").await;
    let a = call(
        "GET",
        &format!("{base}/api/v1/meetings/{id}/files"),
        Some(&eve),
        None,
    )
    .await;
    assert_eq!(a.status, 404);
    let a = call(
        "POST",
        &format!("{base}/api/v1/meetings/{id}/files"),
        Some(&eve),
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(a.status, 404);
    assert!(tmp_is_empty(&files_dir(&app)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_and_leave_nothing_behind() {
    let secret = "files-test-secret-0123456789";
    let app = start(
        &["--secret", secret],
        &[
            ("MEETING_FS__MAX_FILE_SIZE", "1048576"),
            ("MEETING_FS__MEETING_QUOTA", "2621440"),
        ],
    );
    let keys = Keys::derive(secret);
    let base = app.base_url();
    let dir = files_dir(&app);
    let ann = sign_in_from_log(&app, "ann@corp.test").await;
    let a_id = instant_meeting(&base, &ann).await;
    let bob = sign_in_from_log(&app, "bob@corp.test").await;
    let b_id = instant_meeting(&base, &bob).await;
    let new_grant = |name: &'static str| {
        let (base, ann) = (base.clone(), ann.clone());
        async move {
            let (s, g) = grant(&base, &ann, a_id, json!({"name": name})).await;
            assert_eq!(s, 201, "{g:?}");
            (
                g["id"].as_str().expect("id").to_string(),
                g["upload_url"].as_str().expect("url").to_string(),
                g,
            )
        }
    };
    let on_disk = |file: &str| dir.join(format!("meetings/{a_id}/{file}")).exists();

    // Too large: declared to the apiserver, declared to the fsserver, or only found out while
    // streaming (chunked, no length).
    let (s, g) = grant(&base, &ann, a_id, json!({"name": "big", "size": 2 * MIB})).await;
    assert_eq!((s, g["error"].as_str()), (413, Some("file_too_large")));
    let (file, url, _) = new_grant("big.bin").await;
    let u = url.clone();
    let r = blocking(move || put_stream(&u, Some(MIB + 1), MIB + 1, 1))
        .await
        .expect("an answer");
    assert_eq!((r.status, r.error_code().as_str()), (413, "file_too_large"));
    let u = url.clone();
    match blocking(move || put_stream(&u, None, MIB + 64 * 1024, 2)).await {
        Ok(r) => assert_eq!((r.status, r.error_code().as_str()), (413, "file_too_large")),
        Err(e) => eprintln!("the server hung up before its answer could be read: {e}"),
    }
    assert!(!on_disk(&file));
    wait_until(Duration::from_secs(10), "an empty temp area", || {
        tmp_is_empty(&dir).then_some(())
    });
    // Exactly the limit is fine.
    let u = url.clone();
    let r = blocking(move || put_stream(&u, None, MIB, 3))
        .await
        .expect("answer");
    assert_eq!(r.status, 201, "{:?}", r.json());
    let r1 = r.json();
    support::files::commit(&base, &ann, a_id, &json!(file), &r1["receipt"]).await;

    // A grant works once: a second upload to it does not replace the first.
    let u = url.clone();
    let again = blocking(move || put_stream(&u, Some(10), 10, 4))
        .await
        .expect("answer");
    assert_eq!(
        (again.status, again.error_code().as_str()),
        (409, "file_exists")
    );
    let loc = location(&base, &ann, a_id, &file).await;
    let (_, n, sha, _) = blocking(move || get_hashed(&loc, &[])).await;
    assert_eq!(
        (n, sha.as_str()),
        (MIB, r1["sha256"].as_str().expect("sha"))
    );

    // Quota (2.5 MiB per meeting): 1 MiB stored; a second fits; a third not. The apiserver
    // refuses a declared size at once; the fsserver refuses while streaming.
    let (file2, url2, _) = new_grant("second.bin").await;
    let (file3, url3, _) = new_grant("third.bin").await;
    let r = blocking(move || put_stream(&url2, Some(MIB), MIB, 5))
        .await
        .expect("answer");
    assert_eq!(r.status, 201);
    support::files::commit(&base, &ann, a_id, &json!(file2), &r.json()["receipt"]).await;
    let (s, g) = grant(&base, &ann, a_id, json!({"name": "x", "size": MIB})).await;
    assert_eq!((s, g["error"].as_str()), (413, Some("quota_exceeded")));
    let u3 = url3.clone();
    let r = blocking(move || put_stream(&u3, None, MIB, 6)).await;
    match r {
        Ok(r) => assert_eq!((r.status, r.error_code().as_str()), (413, "quota_exceeded")),
        Err(e) => eprintln!("the server hung up before its answer could be read: {e}"),
    }
    assert!(!on_disk(&file3));
    // Another meeting has its own quota.
    let (s, g) = grant(&base, &bob, b_id, json!({"name": "b.bin", "size": MIB})).await;
    assert_eq!(s, 201, "{g:?}");

    // Expired, tampered, another meeting's, another operation's, another server's URLs.
    let forged = |op, meeting: i64, file: &str, exp: i64, fs: &str| {
        FileGrant {
            op,
            meeting: MeetingId(meeting),
            file: FileId(file.to_string()),
            fs: fs.to_string(),
            exp,
            max_size: Some(MIB),
            name: Some("f".into()),
            content_type: None,
            uploader: None,
        }
        .url(&base, keys.files_key())
    };
    let own = app.addr().to_string();
    let fresh = FileId::random().0;
    let (file4, url4, _) = new_grant("fourth.bin").await;
    let tok = url4.split("?t=").nth(1).expect("token").to_string();
    let (body, sig) = tok.split_once('.').expect("dot");
    let mut flipped = sig.as_bytes().to_vec();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    let payload = String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, body)
            .expect("b64"),
    )
    .expect("utf8")
    .replace("\"max_size\":1048576", "\"max_size\":9999999999");
    let bigger = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "expired",
            forged(FileOp::Put, a_id, &fresh, now() - 5, &own),
            403,
            "url_expired",
        ),
        (
            "bad signature",
            format!(
                "{base}/fs/v1/files/{a_id}/{file4}?t={body}.{}",
                String::from_utf8(flipped).expect("ascii")
            ),
            403,
            "invalid_url",
        ),
        (
            "raised limit",
            format!("{base}/fs/v1/files/{a_id}/{file4}?t={bigger}.{sig}"),
            403,
            "invalid_url",
        ),
        (
            "no grant",
            format!("{base}/fs/v1/files/{a_id}/{file4}"),
            403,
            "invalid_url",
        ),
        (
            "another meeting's path",
            format!("{base}/fs/v1/files/{b_id}/{file4}?t={tok}"),
            403,
            "invalid_url",
        ),
        (
            "another file's path",
            format!("{base}/fs/v1/files/{a_id}/{fresh}?t={tok}"),
            403,
            "invalid_url",
        ),
        (
            "a download grant",
            forged(FileOp::Get, a_id, &fresh, now() + 60, &own),
            403,
            "invalid_url",
        ),
        (
            "another fsserver",
            forged(FileOp::Put, a_id, &fresh, now() + 60, "fs2.corp.test:443"),
            403,
            "wrong_server",
        ),
        (
            "another secret",
            FileGrant {
                op: FileOp::Put,
                meeting: MeetingId(a_id),
                file: FileId(fresh.clone()),
                fs: own.clone(),
                exp: now() + 60,
                max_size: None,
                name: None,
                content_type: None,
                uploader: None,
            }
            .url(&base, Keys::derive("another-secret-xyz").files_key()),
            403,
            "invalid_url",
        ),
    ];
    for (what, url, status, code) in cases {
        let r = blocking(move || request("PUT", &url, &[], b"0123456789")).await;
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (status, code),
            "{what}: {:?}",
            r.json()
        );
    }
    // A download grant for meeting A's stored file does not open it under meeting B.
    let get_a = forged(FileOp::Get, a_id, &file, now() + 60, &own);
    let moved = get_a.replace(&format!("/files/{a_id}/"), &format!("/files/{b_id}/"));
    let r = blocking(move || request("GET", &moved, &[], b"")).await;
    assert_eq!((r.status, r.error_code().as_str()), (403, "invalid_url"));
    let r = blocking(move || request("GET", &get_a, &[], b"")).await;
    assert_eq!(r.status, 200, "the same grant on its own path works");

    // `../` and absolute paths: ids only, names are metadata.
    let (addr, _) = split_url(&base);
    for path in [
        format!("/fs/v1/files/{a_id}/..%2F..%2F..%2Fescape?t={tok}"),
        format!("/fs/v1/files/{a_id}/../../../escape?t={tok}"),
        format!("/fs/v1/files/..%2F{a_id}/{file4}?t={tok}"),
        format!("/fs/v1/files/%2Fetc%2Fpasswd/{file4}?t={tok}"),
        format!("/fs/v1/files/{a_id}/%2Fetc%2Fescape?t={tok}"),
        format!("/fs/v1/files/-{a_id}/{file4}?t={tok}"),
    ] {
        let a = addr.clone();
        let p = path.clone();
        let r = blocking(move || {
            raw(
                &a,
                &format!("PUT {p} HTTP/1.1\r\nHost: x\r\nContent-Length: 6"),
                b"escape",
            )
            .expect("an answer")
        })
        .await;
        assert_eq!(r.status, 404, "{path}: {:?}", r.json());
    }
    let sneaky = upload(
        &base,
        &ann,
        a_id,
        "../../../escape.txt",
        "text/plain",
        b"tiny".to_vec(),
    )
    .await;
    assert_eq!(sneaky["name"], "escape.txt");
    let abs = upload(
        &base,
        &ann,
        a_id,
        "/tmp/escape-abs.txt",
        "text/plain",
        b"tiny".to_vec(),
    )
    .await;
    assert_eq!(abs["name"], "escape-abs.txt");
    let loc = location(&base, &ann, a_id, sneaky["id"].as_str().expect("id")).await;
    let r = blocking(move || request("GET", &loc, &[], b"")).await;
    assert!(
        r.header("content-disposition")
            .is_some_and(|d| d.contains("filename=\"escape.txt\""))
    );
    let escaped: Vec<String> = tree(app.data_dir())
        .into_iter()
        .filter(|p| p.contains("escape"))
        .collect();
    assert!(
        escaped.is_empty(),
        "nothing is stored under a client's name: {escaped:?}"
    );
    let outside = app.data_dir().parent().expect("parent");
    assert!(!outside.join("escape.txt").exists() && !outside.join("escape").exists());
    assert!(!Path::new("/tmp/escape-abs.txt").exists());

    // A client that goes away mid-upload: nothing published, temp area emptied, quota freed.
    let (file5, url5, _) = new_grant("hangup.bin").await;
    blocking(move || put_then_hang_up(&url5, MIB, 300 * 1024, 7)).await;
    wait_until(
        Duration::from_secs(10),
        "the temp area to be emptied after a hang-up",
        || tmp_is_empty(&dir).then_some(()),
    );
    assert!(!on_disk(&file5));
    // 2 MiB + 8 B stored of 2.5 MiB: 400 KiB must fit again once the hang-up let go of its bytes.
    let last = upload(
        &base,
        &ann,
        a_id,
        "last.bin",
        "application/octet-stream",
        pattern_bytes(8, 400 * 1024),
    )
    .await;
    assert_eq!(last["size"], 400 * 1024);

    // Every refusal is counted on /metrics.
    let metrics = reqwest::get(app.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let count = |needle: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.contains(needle))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {needle} in {metrics}"))
    };
    for reason in ["grant", "too_large", "quota", "exists"] {
        let n = count(&format!("fs_refused_requests_total{{reason=\"{reason}\"}}"));
        assert!(n >= 1.0, "{reason}: {n}");
    }
    assert!(count("fs_files_stored_total") >= 5.0);
    // What is on disk is exactly what the apiserver lists; the temp area is empty.
    let listed: Value = call(
        "GET",
        &format!("{base}/api/v1/meetings/{a_id}/files"),
        Some(&ann),
        None,
    )
    .await
    .body;
    let mut want: Vec<String> = listed
        .as_array()
        .expect("list")
        .iter()
        .flat_map(|f| {
            let id = f["id"].as_str().expect("id");
            [
                format!("meetings/{a_id}/{id}"),
                format!("meetings/{a_id}/{id}.json"),
            ]
        })
        .collect();
    want.sort();
    let on_disk: Vec<String> = tree(&dir)
        .into_iter()
        .filter(|p| p.starts_with(&format!("meetings/{a_id}/")))
        .collect();
    assert_eq!(on_disk, want);
    assert!(tmp_is_empty(&dir));
    for (f, bytes) in [
        (&sneaky, b"tiny".to_vec()),
        (&last, pattern_bytes(8, 400 * 1024)),
    ] {
        assert_eq!(f["sha256"].as_str(), Some(sha256_hex(&bytes).as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_fsserver_alone_serves_uploads_the_apiserver_issued() {
    let secret = "split-deployment-secret-42";
    let fs_port = free_port();
    let fs_addr = format!("127.0.0.1:{fs_port}");
    let fs_dir = tempfile::tempdir().expect("tmp");
    let fs_dir_s = fs_dir.path().to_str().expect("utf8").to_string();
    let fs = Appliance::start(
        &[
            "fsserver",
            "--secret",
            secret,
            "--domainaddress",
            &fs_addr,
            "--listen",
            &fs_addr,
            "--directory",
            &fs_dir_s,
            "--apiserver",
            "127.0.0.1:9",
        ],
        &[],
    );
    assert!(
        !fs.log_lines().iter().any(|l| l.contains("database")),
        "an fsserver alone uses no database"
    );
    let alloc = FakeAllocator::start();
    alloc.set_response(
        200,
        &format!(r#"{{"sfu": "127.0.0.1:9", "turn": "127.0.0.1:9", "fs": "{fs_addr}"}}"#),
    );
    let alloc_url = alloc.url("/alloc");
    let api = Appliance::start(
        &[
            "apiserver",
            "--secret",
            secret,
            "--allocateserver",
            &alloc_url,
        ],
        &[],
    );
    let base = api.base_url();
    let ann = sign_in_from_log(&api, "ann@corp.test").await;
    let id = instant_meeting(&base, &ann).await;

    let len = 3 * MIB + 17;
    let (s, g) = grant(
        &base,
        &ann,
        id,
        json!({"name": "minutes.pdf", "content_type": "application/pdf", "size": len}),
    )
    .await;
    assert_eq!(s, 201, "{g:?}");
    let url = g["upload_url"].as_str().expect("url").to_string();
    assert!(
        url.starts_with(&format!("http://{fs_addr}/fs/v1/files/{id}/")),
        "{url}"
    );
    let (put, sha, _) = blocking(move || put_pattern(&url, "application/pdf", len, 11)).await;
    assert_eq!(put.status, 201, "{:?}", put.json());
    let f = support::files::commit(&base, &ann, id, &g["id"], &put.json()["receipt"]).await;
    let file = f["id"].as_str().expect("id").to_string();
    assert!(fs_dir.path().join(format!("meetings/{id}/{file}")).exists());
    let loc = location(&base, &ann, id, &file).await;
    assert!(loc.starts_with(&format!("http://{fs_addr}/")), "{loc}");
    let (resp, n, got, _) = blocking(move || get_hashed(&loc, &[])).await;
    assert_eq!((resp.status, n, got.as_str()), (200, len, sha.as_str()));
    assert!(
        fs.log_lines().iter().any(|l| l.contains("file stored")),
        "the separate fsserver stored it"
    );
    // The apiserver alone serves no files itself.
    let b = base.clone();
    let r = blocking(move || {
        request(
            "GET",
            &format!("{b}/fs/v1/files/{id}/{}?t=x", FileId::random().0),
            &[],
            b"",
        )
    })
    .await;
    assert_eq!(r.status, 404);
    // Deleting through the apiserver reaches the fsserver.
    let a = call(
        "DELETE",
        &format!("{base}/api/v1/meetings/{id}/files/{file}"),
        Some(&ann),
        None,
    )
    .await;
    assert_eq!(a.status, 204, "{:?}", a.body);
    assert!(!fs_dir.path().join(format!("meetings/{id}/{file}")).exists());
    assert!(tmp_is_empty(fs_dir.path()));
    let fs_health = call("GET", &format!("http://{fs_addr}/healthz"), None, None).await;
    assert_eq!(fs_health.status, 200);
}
