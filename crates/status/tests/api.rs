//! The status API over real HTTP against a real SQLite store filled through the store's
//! own write API: filters, reasons, errors, metrics, the HTML page's escaping, logs and
//! graceful shutdown.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::time::Duration;

use cacheon_status::Mode;
use cacheon_store::Store;
use common::{host_recorder, ids, start, start_on, start_with, HOSTILE};
use serde_json::{json, Value};

#[tokio::test]
async fn submissions_filter_exactly() {
    let s = start().await;
    let cases: &[(&str, &[&str])] = &[
        (
            "",
            &[
                "Frank:15", "Erin:14", "Dave:13", "Carol:12", "Bob:11", "Alice:10",
            ],
        ),
        ("?state=pending", &["Frank:15"]),
        ("?state=queued", &["Erin:14"]),
        ("?state=rejected", &["Dave:13", "Bob:11"]),
        ("?state=scored", &["Alice:10"]),
        ("?state=withdrawn", &[]),
        ("?hotkey=Carol", &["Carol:12"]),
        ("?hotkey=Nobody", &[]),
        ("?uid=1", &["Alice:10"]),
        ("?uid=5", &["Erin:14"]),
        ("?uid=4", &[]),
        ("?state=scored&uid=1", &["Alice:10"]),
        ("?state=scored&uid=2", &[]),
        ("?state=rejected&hotkey=Bob&uid=2", &["Bob:11"]),
        ("?limit=2", &["Frank:15", "Erin:14"]),
        (
            "?state=&hotkey=&uid=&limit=",
            &[
                "Frank:15", "Erin:14", "Dave:13", "Carol:12", "Bob:11", "Alice:10",
            ],
        ),
        ("?unknown=1&state=queued", &["Erin:14"]),
    ];
    for (q, want) in cases {
        let (status, body) = s.json(&format!("/submissions{q}")).await;
        assert_eq!(status, 200, "{q}");
        assert_eq!(ids(&body), *want, "{q}");
    }

    // Reasons a miner can read.
    let (status, bob) = s.json("/submissions/Bob:11").await;
    assert_eq!(status, 200);
    assert_eq!(bob["state"], "rejected");
    assert_eq!(bob["reason"], "malformed:not_json");
    assert_eq!(bob["image"], Value::Null);
    let (_, carol) = s.json("/submissions/Carol:12").await;
    assert_eq!(
        (carol["state"].as_str(), carol["reason"].as_str()),
        (Some("disqualified"), Some("gate_failed"))
    );
    let (_, dave) = s.json("/submissions?hotkey=Dave").await;
    assert_eq!(dave[0]["reason"], "not_registered");
    let (_, alice) = s.json("/submissions/Alice:10").await;
    assert_eq!(alice["score"], 0.3);
    assert_eq!(alice["image"], "alice/fast");
}

#[tokio::test]
async fn bad_parameters_are_json_400_naming_the_parameter() {
    let s = start().await;
    for (path, name) in [
        ("/submissions?state=bogus", "`state`"),
        ("/submissions?state=PENDING", "`state`"),
        ("/submissions?state=%FF%FE", "`state`"),
        ("/submissions?uid=abc", "`uid`"),
        ("/submissions?uid=70000", "`uid`"),
        ("/submissions?uid=-1", "`uid`"),
        ("/submissions?hotkey=%3Cscript%3E", "`hotkey`"),
        ("/submissions?limit=0", "`limit`"),
        ("/submissions?limit=ten", "`limit`"),
        ("/submissions?state=pending&state=queued", "`state`"),
        ("/king/history?limit=-5", "`limit`"),
        ("/rounds?limit=1e3", "`limit`"),
        ("/rounds/abc", "round id"),
        ("/rounds/0", "round id"),
        ("/rounds/abc/logs/x", "round id"),
        ("/rounds/2/logs/bad%20label", "log label"),
        ("/rounds/2/logs/..%2F..%2Fetc", "log label"),
    ] {
        let (status, body) = s.json(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        let msg = body["error"].as_str().unwrap();
        assert!(msg.contains(name), "{path}: {msg}");
    }
    // Over the maximum is capped, not refused.
    let (status, body) = s.json("/king/history?limit=999999").await;
    assert_eq!((status, body.as_array().unwrap().len()), (200, 1));
}

#[tokio::test]
async fn unknown_things_are_json_404() {
    let s = start().await;
    for path in [
        "/submissions/Nobody:1",
        "/submissions/x",
        "/rounds/99",
        "/nope",
        "/rounds/2/logs/missing",
    ] {
        let (status, body) = s.json(path).await;
        assert_eq!(status, 404, "{path}");
        assert!(body["error"].is_string(), "{path}");
    }
}

#[tokio::test]
async fn king_rounds_and_status() {
    let s = start().await;
    let (status, king) = s.json("/king").await;
    assert_eq!(status, 200);
    assert_eq!(king["submission_id"], "Alice:10");
    assert_eq!(king["uid"], 1);
    assert_eq!(king["score"], 0.3);
    assert_eq!(king["crowned_at_block"], 200);
    assert_eq!(king["image"], "alice/fast");
    assert_eq!(king["hotkey"], "Alice");
    // One fresh score so far: the round that crowned it.
    assert_eq!(king["fresh_scores"]["rounds"], 1);
    assert_eq!(king["fresh_scores"]["mean"], 0.3);
    assert_eq!(king["fresh_scores"]["sd"], 0.0);

    let (_, history) = s.json("/king/history").await;
    assert_eq!(history.as_array().unwrap().len(), 1);
    assert_eq!(history[0]["event"], "crowned");
    assert_eq!(history[0]["cause"], "vacant");

    let (_, rounds) = s.json("/rounds").await;
    let round_ids: Vec<i64> = rounds
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(round_ids, [2, 1], "newest first");
    assert_eq!(rounds[0]["progress"]["phase"], "contestant");
    assert_eq!(rounds[1]["progress"], Value::Null);
    let (_, limited) = s.json("/rounds?limit=1").await;
    assert_eq!(limited.as_array().unwrap().len(), 1);

    let (status, open) = s.json("/rounds/2").await;
    assert_eq!(status, 200);
    assert_eq!(open["state"], "open");
    let who: Vec<(&str, &str)> = open["contestants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["submission_id"].as_str().unwrap(),
                c["role"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(who, [("Alice:10", "king"), ("Erin:14", "challenger")]);
    assert_eq!(open["progress"]["current"], "Erin:14");
    let (_, done) = s.json("/rounds/1").await;
    assert_eq!(done["state"], "completed");
    assert_eq!(done["contestants"][1]["reason"], "gate_failed");

    let (status, st) = s.json("/status").await;
    assert_eq!(status, 200);
    assert_eq!(st["mode"], "observe");
    assert_eq!(st["netuid"], 14);
    assert_eq!(st["version"], "9.9.9-test");
    assert_eq!(st["chain_block"], 4242);
    assert_eq!(st["last_scan"]["commitments"], 6);
    assert_eq!(st["progress"]["2"]["phase"], "contestant");
    assert_eq!(
        st["submissions"],
        json!({"pending": 1, "queued": 1, "scored": 1, "disqualified": 1,
               "rejected": 2, "withdrawn": 0, "failed_infra": 0})
    );
    assert_eq!(st["open_rounds"], 1);
    assert_eq!(st["king"]["submission_id"], "Alice:10");
    assert_eq!(st["last_weights"]["block"], 210);
    assert_eq!(st["last_weights"]["outcome"], "submitted");

    // A new snapshot from the host shows at once.
    s.snapshot.send_modify(|snap| {
        snap.mode = Mode::Active;
        snap.validator_hotkey = Some("5Validator".into());
        snap.validator_uid = Some(9);
    });
    let (_, st) = s.json("/status").await;
    assert_eq!(
        (st["mode"].as_str(), st["validator_uid"].as_u64()),
        (Some("active"), Some(9))
    );
    let (_, health) = s.json("/health").await;
    assert_eq!(health["ok"], true);
    assert_eq!(health["mode"], "active");
}

fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn metrics_render_host_metrics_and_store_gauges() {
    let s = start().await;
    let r = s.get("/metrics").await;
    assert_eq!(r.status().as_u16(), 200);
    let ct = r.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(ct.starts_with("text/plain"), "{ct}");
    let text = r.text().await.unwrap();
    for (series, want) in [
        ("cacheon_scans_total", 3.0),
        ("cacheon_submissions{state=\"pending\"}", 1.0),
        ("cacheon_submissions{state=\"queued\"}", 1.0),
        ("cacheon_submissions{state=\"scored\"}", 1.0),
        ("cacheon_submissions{state=\"disqualified\"}", 1.0),
        ("cacheon_submissions{state=\"rejected\"}", 2.0),
        ("cacheon_submissions{state=\"withdrawn\"}", 0.0),
        ("cacheon_submissions{state=\"failed_infra\"}", 0.0),
        ("cacheon_king_uid", 1.0),
        ("cacheon_king_score", 0.3),
        ("cacheon_open_rounds", 1.0),
        ("cacheon_chain_block", 4242.0),
    ] {
        assert_eq!(
            metric_value(&text, series),
            Some(want),
            "{series} in\n{text}"
        );
    }
    assert!(text.contains("# TYPE cacheon_king_uid gauge"), "{text}");
    assert!(text.contains("mode=\"observe\""), "{text}");

    // Values follow the snapshot at each scrape; unknown is absent, not stale.
    s.snapshot.send_modify(|snap| snap.chain_block = Some(5000));
    let text = s.text("/metrics").await.1;
    assert_eq!(
        metric_value(&text, "cacheon_chain_block"),
        Some(5000.0),
        "{text}"
    );
    s.snapshot.send_modify(|snap| snap.chain_block = None);
    let text = s.text("/metrics").await.1;
    assert_eq!(metric_value(&text, "cacheon_chain_block"), None, "{text}");
}

#[tokio::test]
async fn an_empty_store_has_no_king_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("cacheon.db")).await.unwrap();
    let handle = host_recorder().handle();
    let (s, _store) = start_on(dir, store, None, Some(handle)).await;
    assert_eq!(s.json("/king").await, (200, Value::Null));
    assert_eq!(s.json("/king/history").await, (200, json!([])));
    assert_eq!(s.json("/submissions").await, (200, json!([])));
    assert_eq!(s.json("/rounds").await, (200, json!([])));
    let (_, st) = s.json("/status").await;
    assert_eq!(
        (&st["king"], &st["open_rounds"], &st["last_weights"]),
        (&Value::Null, &json!(0), &Value::Null)
    );
    assert_eq!(st["submissions"]["pending"], 0);
    let text = s.text("/metrics").await.1;
    assert_eq!(metric_value(&text, "cacheon_king_uid"), None, "{text}");
    assert_eq!(metric_value(&text, "cacheon_king_score"), None, "{text}");
    assert_eq!(
        metric_value(&text, "cacheon_open_rounds"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "cacheon_submissions{state=\"rejected\"}"),
        Some(0.0)
    );
    let page = s.text("/").await.1;
    assert!(page.contains("No king"), "{page}");
    assert!(page.contains("Open rounds (0)"));
}

#[tokio::test]
async fn metrics_and_logs_are_503_when_not_configured() {
    let (s, _store) = start_with(None, None).await;
    for path in ["/metrics", "/rounds/2/logs/Alice:10"] {
        let (status, body) = s.json(path).await;
        assert_eq!(status, 503, "{path}");
        assert!(body["error"].is_string());
    }
}

#[tokio::test]
async fn logs_are_plain_text_and_errors_hide_detail() {
    let s = start().await;
    let r = s.get("/rounds/2/logs/Alice:10").await;
    assert_eq!(r.status().as_u16(), 200);
    let h = r.headers().clone();
    assert_eq!(
        h[reqwest::header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
    assert_eq!(h[reqwest::header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(r.text().await.unwrap(), format!("line 1\n{HOSTILE}\n"));

    let (status, body) = s.json("/rounds/2/logs/boom").await;
    assert_eq!(status, 502);
    assert!(!body.to_string().contains("secret"), "{body}");
}

#[tokio::test]
async fn html_page_shows_state_and_escapes_hostile_text() {
    let s = start().await;
    let r = s.get("/").await;
    assert_eq!(r.status().as_u16(), 200);
    let h = r.headers().clone();
    assert!(h[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(h[reqwest::header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    let page = r.text().await.unwrap();
    assert!(page.contains("OBSERVE MODE"), "mode banner");
    assert!(page.contains("submits no weights"));
    assert!(page.contains("Alice:10"), "king id");
    assert!(page.contains("alice/fast"), "king image");
    assert!(
        page.contains("malformed:not_json"),
        "reason of a rejected submission"
    );
    assert!(page.contains("gate_failed"));
    assert!(
        page.contains("Phase: <b>contestant</b>"),
        "open round progress"
    );
    assert!(page.contains("/rounds/2/logs/Erin:14"), "log link");
    // The hostile progress note and last error are shown, escaped, never as markup.
    assert!(!page.contains("<script"), "unescaped script tag in page");
    assert!(page.contains("&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;"));

    s.snapshot.send_modify(|snap| snap.mode = Mode::DryRun);
    let page = s.text("/").await.1;
    assert!(page.contains("DRY RUN") && !page.contains("OBSERVE MODE"));
}

#[tokio::test]
async fn a_submission_explains_its_verdict_in_json_and_as_a_page() {
    let s = start().await;
    let (status, carol) = s.json("/submissions/Carol:12").await;
    assert_eq!(status, 200);
    assert_eq!(carol["state"], "disqualified");
    let rounds = carol["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 1, "{carol}");
    let r = &rounds[0];
    assert_eq!(
        (r["round_id"].as_i64(), &r["state"]),
        (Some(1), &json!("completed"))
    );
    assert_eq!(r["log"], "/rounds/1/logs/Carol:12");
    let gate = &r["report"]["gate"];
    assert_eq!(gate["pass_fraction"], 0.25);
    assert_eq!(gate["min_pass_fraction"], 0.95);
    assert_eq!(gate["by_check"]["low_agreement"], 9);
    assert_eq!(gate["first_failures"][0]["expected"], " borrow");
    assert_eq!(r["report"]["speed"]["baseline"]["ttft_s"], 0.1);
    assert_eq!(r["report"]["stream_faults"]["stalled"], 1);

    // Alice: her open round first, then round 1 with her speed against the baseline.
    let (_, alice) = s.json("/submissions/Alice:10").await;
    let ids: Vec<_> = alice["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["round_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [2, 1]);
    let score = alice["rounds"][1]["report"]["speed"]["score"]
        .as_f64()
        .unwrap();
    assert!((score - 0.3).abs() < 1e-9, "{score}");

    // A browser asks for HTML and gets the page.
    let page = |path: &'static str| {
        let http = s.http.clone();
        let url = format!("{}{path}", s.base);
        async move {
            let r = http
                .get(url)
                .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200, "{path}");
            let h = r.headers().clone();
            assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
            assert!(h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'"));
            r.text().await.unwrap()
        }
    };
    let carol = page("/submissions/Carol:12").await;
    for want in [
        "pass fraction 0.250 (needs 0.950)",
        "9 of 12 scored requests failed",
        "<td>low_agreement</td><td class=\"n\">9</td>",
        "<td>off_reference</td><td class=\"n\">7</td>",
        "&quot; borrow&quot;",
        "&quot; banana&quot;",
        "0.012 s",
        "0.100 s",
        "Score = 0 (the gate failed",
        "stalled",
        "href=\"/rounds/1/logs/Carol:12\"",
        "165 GPU-s (4 GPU(s))",
    ] {
        assert!(carol.contains(want), "{want} missing from\n{carol}");
    }
    assert!(!carol.contains("<script"), "unescaped miner text");
    let alice = page("/submissions/Alice:10").await;
    assert!(
        alice.contains("0.5 × 40.00% + 0.5 × 20.00% = 0.3000"),
        "{alice}"
    );
    assert!(alice.contains("The verdict appears here once the round closes"));

    let round = page("/rounds/1").await;
    for want in [
        "0.060 s vs 0.100 s",
        "480 vs 400 tok/s",
        "0.250 (needs 0.950)",
        "href=\"/submissions/Carol:12\"",
        "median TTFT 0.100 s, throughput 400.0 tok/s",
    ] {
        assert!(round.contains(want), "{want} missing from\n{round}");
    }
    let live = page("/rounds/2").await;
    assert!(
        live.contains("http-equiv=\"refresh\""),
        "a live round reloads"
    );
    assert!(live.contains("Phase: <b>contestant</b>"), "{live}");
    assert!(live.contains("<th>elapsed</th>"), "{live}");

    // Tools still get JSON from the same addresses, marked as chosen by `Accept`.
    for path in ["/rounds/1", "/submissions/Carol:12"] {
        let r = s.get(path).await;
        assert_eq!(r.headers()["vary"], "Accept", "{path}");
    }
    let (_, round) = s.json("/rounds/1").await;
    assert_eq!(round["contestants"][1]["report"]["gate"]["failed"], 9);
    assert!(round["elapsed_s"].as_i64().unwrap() >= 0);
}

#[tokio::test]
async fn a_broken_store_is_a_generic_500_and_health_says_so() {
    let (s, store) = start_with(None, None).await;
    assert_eq!(s.json("/health").await.0, 200);
    store.close().await;
    for path in [
        "/status",
        "/king",
        "/submissions",
        "/rounds",
        "/rounds/1",
        "/",
    ] {
        let r = s.get(path).await;
        assert_eq!(r.status().as_u16(), 500, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body, json!({"error": "internal error"}), "{path}");
    }
    let (status, health) = s.json("/health").await;
    assert_eq!((status, &health["ok"]), (503, &json!(false)));
}

#[tokio::test]
async fn serve_returns_after_shutdown() {
    let mut s = start().await;
    assert_eq!(s.json("/health").await.0, 200);
    assert!(!s.task.is_finished());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!s.task.is_finished(), "serve must run until shutdown");

    s.stop.take().unwrap().send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), &mut s.task)
        .await
        .expect("serve returns after the shutdown future resolves")
        .unwrap();
    assert!(result.is_ok());
    // Nothing listens any more.
    let fresh = reqwest::Client::new();
    assert!(fresh
        .get(format!("{}/health", s.base))
        .send()
        .await
        .is_err());
}
