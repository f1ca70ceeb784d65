//! The `/v1` API end to end: the real binary, real HTTP, real models and
//! LFW images; every endpoint, the error shape, bad inputs and restarts.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use biomatch_tests::{Server, repo_root};
use serde_json::{Value, json};

fn lfw(name: &str, n: u32) -> String {
    let path = repo_root().join(format!(
        "../shared/datasets/lfw/images/{name}/{name}_{n:04}.jpg"
    ));
    B64.encode(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn face(image: String) -> Value {
    json!({"face": {"image": image}})
}

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        body["error"]["request_id"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[test]
fn enroll_verify_identify_compare_templates_delete_and_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let server = Server::start_in(&data_dir, &[]).unwrap();
    let (bush1, bush2, powell) = (
        lfw("George_W_Bush", 1),
        lfw("George_W_Bush", 2),
        lfw("Colin_Powell", 1),
    );

    // Enroll from an image.
    let (s, b) = server
        .json(
            "POST",
            "/v1/subjects",
            &json!({"subject_id": "001099000001", "face": {"image": bush1}}),
        )
        .unwrap();
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["subject_id"], "001099000001");
    assert!(
        b["templates"][0]["quality"]["detector_score"]
            .as_f64()
            .unwrap()
            > 0.7
    );
    assert_eq!(b["duplicates"], json!([]));
    // The same id again is a conflict.
    let (s, b) = server
        .json(
            "POST",
            "/v1/subjects",
            &json!({"subject_id": "001099000001", "face": {"image": bush1}}),
        )
        .unwrap();
    assert_error(s, &b, 409, "subject_exists");

    // Templates: extract Powell's, enroll it as a template.
    let (s, b) = server
        .json("POST", "/v1/templates", &face(powell.clone()))
        .unwrap();
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["templates"][0]["dim"], 128);
    let template = b["templates"][0]["template"].as_str().unwrap().to_string();
    assert_eq!(B64.decode(&template).unwrap().len(), 128 * 4);
    let (s, b) = server
        .json(
            "POST",
            "/v1/subjects",
            &json!({"subject_id": "001099000002", "face": {"template": template}}),
        )
        .unwrap();
    assert_eq!(s, 201, "{b}");

    // 1:1 verify: genuine matches, impostor does not.
    let (s, b) = server
        .json(
            "POST",
            "/v1/verify",
            &json!({"subject_id": "001099000001", "probe": face(bush2.clone()), "liveness": true}),
        )
        .unwrap();
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["match"], true, "{b}");
    assert!(
        b["liveness"]
            .as_f64()
            .is_some_and(|l| (0.0..=1.0).contains(&l)),
        "{b}"
    );
    let (s, b) = server
        .json(
            "POST",
            "/v1/verify",
            &json!({"subject_id": "001099000002", "probe": face(bush2.clone())}),
        )
        .unwrap();
    assert_eq!(s, 200);
    assert_eq!(b["match"], false, "{b}");
    assert!(b["score"].as_f64().unwrap() < b["threshold"].as_f64().unwrap());

    // 1:N identify: Bush first.
    let (s, b) = server
        .json(
            "POST",
            "/v1/identify",
            &json!({"probe": face(bush2.clone()), "max_candidates": 2}),
        )
        .unwrap();
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["candidates"][0]["subject_id"], "001099000001", "{b}");
    assert_eq!(b["candidates"].as_array().unwrap().len(), 2);
    // `fpir` uses the manifest's calibrated threshold (eval lfw-1n
    // --calibrate wrote 1e-1 and 1e-2); a rarer rate has none: 422.
    let manifest: toml::Table =
        std::fs::read_to_string(biomatch_tests::repo_root().join("models/mobilefacenet.toml"))
            .unwrap()
            .parse()
            .unwrap();
    let calibrated = manifest["thresholds"]["fpir_1e-2"].as_float().unwrap();
    let (s, b) = server
        .json(
            "POST",
            "/v1/identify",
            &json!({"probe": face(bush2.clone()), "fpir": 0.01}),
        )
        .unwrap();
    assert_eq!(s, 200, "{b}");
    assert!(
        (b["threshold"].as_f64().unwrap() - calibrated).abs() < 1e-6,
        "{b}"
    );
    let (s, b) = server
        .json(
            "POST",
            "/v1/identify",
            &json!({"probe": face(bush2.clone()), "fpir": 0.001}),
        )
        .unwrap();
    assert_error(s, &b, 422, "invalid_argument");
    let (_, b) = server
        .json(
            "POST",
            "/v1/identify",
            &json!({"probe": face(bush2.clone()), "threshold": 0.33}),
        )
        .unwrap();
    assert_eq!(b["candidates"].as_array().unwrap().len(), 1, "{b}");

    // Compare without the gallery.
    let (s, b) = server
        .json(
            "POST",
            "/v1/compare",
            &json!({"a": face(bush1.clone()), "b": face(bush2.clone())}),
        )
        .unwrap();
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["match"], true, "{b}");

    // Dedup: Bush again under a new id is refused, or flagged.
    let dedup = |policy: &str| json!({"subject_id": "001099000003", "face": {"image": bush2}, "dedup": {"threshold": 0.33, "policy": policy}});
    let (s, b) = server
        .json("POST", "/v1/subjects", &dedup("reject"))
        .unwrap();
    assert_error(s, &b, 409, "duplicate");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("001099000001")
    );
    let (s, b) = server.json("POST", "/v1/subjects", &dedup("flag")).unwrap();
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["duplicates"][0]["subject_id"], "001099000001", "{b}");

    // Replace, get, delete.
    let (s, b) = server
        .json(
            "PUT",
            "/v1/subjects/001099000003",
            &face(lfw("George_W_Bush", 3)),
        )
        .unwrap();
    assert_eq!(s, 200, "{b}");
    let (s, b) = server
        .send("GET", "/v1/subjects/001099000003", b"")
        .unwrap();
    assert_eq!(s, 200);
    assert_eq!(b["templates"][0]["position"], "face");
    let (s, _) = server
        .send("DELETE", "/v1/subjects/001099000003", b"")
        .unwrap();
    assert_eq!(s, 204);
    let (s, b) = server
        .send("GET", "/v1/subjects/001099000003", b"")
        .unwrap();
    assert_error(s, &b, 404, "unknown_subject");

    // A restart keeps every acknowledged write.
    server
        .terminate(std::time::Duration::from_secs(30))
        .unwrap();

    // Every enroll, verify, identify and delete left an audit row with the
    // request id; none holds an image or a vector.
    {
        use biomatch_engine::gallery::{Gallery, GalleryOptions};
        let gallery = Gallery::open(&data_dir, GalleryOptions::default()).unwrap();
        let entries = gallery.audit_entries(1000).unwrap();
        let ops: Vec<&str> = entries.iter().map(|e| e.entry.operation.as_str()).collect();
        for op in ["enroll", "verify", "identify", "replace", "delete"] {
            assert!(ops.contains(&op), "{op} missing from {ops:?}");
        }
        assert!(
            entries
                .iter()
                .any(|e| e.entry.outcome == "rejected: duplicate"),
            "{ops:?}"
        );
        assert!(
            entries
                .iter()
                .any(|e| e.entry.operation == "verify" && e.entry.outcome == "match")
        );
        for e in &entries {
            assert!(
                e.entry.request_id.as_deref().is_some_and(|r| !r.is_empty()),
                "{e:?}"
            );
            assert!(e.entry.outcome.len() < 64 && e.entry.subjects.iter().all(|s| s.len() <= 128));
        }
    }
    let server = Server::start_in(&data_dir, &[]).unwrap();
    let (s, b) = server
        .send("GET", "/v1/subjects/001099000002", b"")
        .unwrap();
    assert_eq!(s, 200, "{b}");
    let (_, b) = server
        .json(
            "POST",
            "/v1/identify",
            &json!({"probe": face(bush2), "max_candidates": 5}),
        )
        .unwrap();
    assert_eq!(b["candidates"][0]["subject_id"], "001099000001", "{b}");
    assert_eq!(
        b["candidates"].as_array().unwrap().len(),
        2,
        "the deleted subject stays deleted: {b}"
    );
}

/// POSTs headers announcing a 25 MiB JSON body and reads the answer.
fn oversized(url: &str) -> (u16, Value) {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST /v1/subjects HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{{",
        25 << 20
    )
    .unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the end of the JSON body (the server may keep the socket open).
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&response);
        if text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
            break;
        }
    }
    let text = String::from_utf8_lossy(&response).to_string();
    let status: u16 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
    )
}

/// A PNG header claiming 100 000 × 100 000 pixels.
/// A 300 × 300 white PNG: no fingerprint on it.
fn blank_png() -> Vec<u8> {
    let img = image::GrayImage::from_pixel(300, 300, image::Luma([255]));
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png
}

fn bomb() -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        png.extend_from_slice(&body);
        png.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    };
    let mut ihdr = 100_000u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
    png
}

#[test]
fn bad_inputs_get_clear_errors_and_change_nothing() {
    let server = Server::start(&[]).unwrap();
    let enroll = |face: Value| json!({"subject_id": "x1", "face": face});
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "bad base64",
            enroll(json!({"image": "not base64 !!"})),
            400,
            "invalid_request",
        ),
        (
            "not an image",
            enroll(json!({"image": B64.encode(b"hello, world")})),
            422,
            "unsupported_image",
        ),
        (
            "truncated jpeg",
            enroll(
                json!({"image": B64.encode(&B64.decode(lfw("Colin_Powell", 1)).unwrap()[..3000])}),
            ),
            422,
            "malformed_image",
        ),
        (
            "decompression bomb",
            enroll(json!({"image": B64.encode(bomb())})),
            413,
            "image_too_large",
        ),
        (
            "wrong dimension",
            enroll(json!({"template": vec![0.1f32; 64]})),
            422,
            "invalid_template",
        ),
        (
            "NaN",
            enroll(
                json!({"template": B64.encode([f32::NAN; 128].iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())}),
            ),
            422,
            "invalid_template",
        ),
        (
            "image and template",
            enroll(json!({"image": "", "template": [0.0]})),
            422,
            "invalid_argument",
        ),
        (
            "finger image that is not an image",
            json!({"subject_id": "x1", "fingers": [{"position": "right_index", "image": "AAAA"}]}),
            422,
            "unsupported_image",
        ),
        (
            "blank finger image",
            json!({"subject_id": "x1", "fingers": [{"image": B64.encode(blank_png())}]}),
            422,
            "no_finger",
        ),
        (
            "garbage minutiae record",
            json!({"subject_id": "x1", "fingers": [{"record": B64.encode(b"FMR\0 20\0garbage")}]}),
            422,
            "invalid_record",
        ),
        (
            "face as a finger position",
            json!({"subject_id": "x1", "fingers": [{"position": "face", "record": "AAAA"}]}),
            422,
            "invalid_argument",
        ),
        (
            "finger image and record",
            json!({"subject_id": "x1", "fingers": [{"image": "AAAA", "record": "AAAA"}]}),
            422,
            "invalid_argument",
        ),
        (
            "nothing to enroll",
            json!({"subject_id": "x1"}),
            422,
            "invalid_argument",
        ),
        (
            "unknown field",
            json!({"subject_id": "x1", "face": {"image": "AAAA"}, "colour": "red"}),
            422,
            "invalid_request",
        ),
        (
            "bad subject id",
            json!({"subject_id": "has space", "face": {"template": vec![0.1f32; 128]}}),
            422,
            "invalid_argument",
        ),
    ];
    for (what, body, status, code) in cases {
        let (s, b) = server.json("POST", "/v1/subjects", &body).unwrap();
        assert_eq!(s, status, "{what}: {b}");
        assert_error(s, &b, status, code);
    }
    let (s, b) = server
        .send("POST", "/v1/subjects", b"{\"subject_id\": ")
        .unwrap();
    assert_error(s, &b, 400, "invalid_request");
    // An oversized body is refused from its Content-Length, before it is
    // read (a raw request: the server answers without waiting for 25 MiB).
    let (s, b) = oversized(&server.url);
    assert_error(s, &b, 413, "body_too_large");
    let (s, b) = server
        .json(
            "POST",
            "/v1/verify",
            &json!({"subject_id": "nobody", "probe": {"face": {"template": vec![0.1f32; 128]}}}),
        )
        .unwrap();
    assert_error(s, &b, 404, "unknown_subject");
    let (s, b) = server.send("GET", "/v1/nothing-here", b"").unwrap();
    assert_error(s, &b, 404, "not_found");
    let (s, b) = server
        .json(
            "POST",
            "/v1/identify",
            &json!({"probe": {"face": {"template": vec![0.1f32; 128]}}, "max_candidates": 100000}),
        )
        .unwrap();
    assert_error(s, &b, 422, "invalid_argument");
    // Nothing above was stored.
    let (_, health) = server.get("/health").unwrap();
    assert_eq!(health["gallery"]["subjects"], 0, "{health}");
}

fn hash(key: &str) -> String {
    let mut child = biomatch_tests::biomatch()
        .args(["keys", "hash"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{key}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn api_keys_and_roles_are_enforced() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("biomatch.toml");
    let (registration, search) = ("registration-key-0123456789", "search-key-0123456789abcdef");
    std::fs::write(
        &config,
        format!(
            "[[auth.keys]]\nid = \"registration\"\nsha256 = \"{}\"\nroles = [\"enroll\", \"verify\"]\n\n\
             [[auth.keys]]\nid = \"search\"\nsha256 = \"{}\"\nroles = [\"identify\"]\n",
            hash(registration),
            hash(search)
        ),
    )
    .unwrap();
    assert!(
        !std::fs::read_to_string(&config)
            .unwrap()
            .contains(registration),
        "only digests are stored"
    );
    let data_dir = tmp.path().join("data");
    let server =
        Server::start_with(&data_dir, &["--config", config.to_str().unwrap()], &[]).unwrap();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let call = |key: Option<&str>, path: &str, body: &Value| {
        let mut req = agent
            .post(format!("{}{path}", server.url))
            .content_type("application/json");
        if let Some(k) = key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        let mut resp = req.send(body.to_string()).unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap();
        (
            status,
            serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)),
        )
    };
    let enroll = json!({"subject_id": "k1", "face": {"template": vec![0.1f32; 128]}});
    let (s, b) = call(None, "/v1/subjects", &enroll);
    assert_error(s, &b, 401, "unauthorized");
    let (s, b) = call(Some("wrong-key-wrong-key"), "/v1/subjects", &enroll);
    assert_error(s, &b, 401, "unauthorized");
    let (s, b) = call(Some(search), "/v1/subjects", &enroll);
    assert_error(s, &b, 403, "forbidden");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("enroll"),
        "{b}"
    );
    let (s, b) = call(Some(registration), "/v1/subjects", &enroll);
    assert_eq!(s, 201, "{b}");
    let probe = json!({"probe": {"face": {"template": vec![0.1f32; 128]}}});
    let (s, b) = call(Some(registration), "/v1/identify", &probe);
    assert_error(s, &b, 403, "forbidden");
    let (s, b) = call(Some(search), "/v1/identify", &probe);
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["candidates"][0]["subject_id"], "k1");
    // Health stays open for load balancers.
    assert_eq!(server.get("/health").unwrap().0, 200);
    server
        .terminate(std::time::Duration::from_secs(30))
        .unwrap();
    // The audit rows name the key ids.
    let gallery = biomatch_engine::gallery::Gallery::open(&data_dir, Default::default()).unwrap();
    let actors: Vec<String> = gallery
        .audit_entries(10)
        .unwrap()
        .into_iter()
        .map(|e| e.entry.actor)
        .collect();
    assert!(
        actors.contains(&"registration".to_string()) && actors.contains(&"search".to_string()),
        "{actors:?}"
    );
}

#[test]
fn ready_metrics_stats_and_overload() {
    let server = Server::start(&[("BIOMATCH__SERVER__MAX_CONCURRENT_REQUESTS", "1")]).unwrap();
    assert_eq!(server.get("/ready").unwrap(), (200, json!({"ready": true})));
    let (s, doc) = server.get("/openapi.json").unwrap();
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let image = lfw("Colin_Powell", 1);
    // Many concurrent image requests against one permit: some are turned away.
    let statuses: Vec<(u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    (0..3)
                        .map(|_| {
                            server
                                .json("POST", "/v1/templates", &face(image.clone()))
                                .unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(statuses.iter().any(|(s, _)| *s == 200));
    let refused: Vec<&Value> = statuses
        .iter()
        .filter(|(s, _)| *s == 503)
        .map(|(_, b)| b)
        .collect();
    assert!(
        !refused.is_empty(),
        "18 concurrent requests on 1 permit were all admitted"
    );
    assert_error(503, refused[0], 503, "overloaded");

    let (s, stats) = server.send("GET", "/v1/stats", b"").unwrap();
    assert_eq!(s, 200, "{stats}");
    assert_eq!(stats["face_collection"], "face-mobilefacenet");
    let (s, text) = server.send("GET", "/metrics", b"").unwrap();
    assert_eq!(s, 200);
    let text = text.as_str().unwrap();
    for needle in [
        "biomatch_http_request_duration_seconds_bucket{route=\"POST /v1/templates\",le=\"+Inf\"}",
        "biomatch_http_requests_total{route=\"POST /v1/templates\",status=\"503\"}",
        "biomatch_inference_duration_seconds_count{stage=\"detect\"}",
        "biomatch_gallery_subjects 0",
        "biomatch_simd_backend_info{backend=",
        "biomatch_model_queue_depth{model=\"embedder\"}",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
}

#[test]
fn slow_requests_time_out_with_503() {
    let server = Server::start(&[("BIOMATCH__SERVER__REQUEST_TIMEOUT_MS", "1")]).unwrap();
    let (s, b) = server
        .json("POST", "/v1/templates", &face(lfw("Colin_Powell", 1)))
        .unwrap();
    assert_error(s, &b, 503, "timeout");
}
