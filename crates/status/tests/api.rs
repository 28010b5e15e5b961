//! The status API over real HTTP against a real SQLite store filled through the store's
//! own write API: filters, reasons, errors, metrics, the HTML page's escaping, logs and
//! graceful shutdown.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cacheon_core::{
    king_weights, Contender, CrownCause, CrownDecision, DisqualifyReason, SubmissionId,
};
use cacheon_status::{HostSnapshot, LogSource, Mode, ScanReport, StatusState};
use cacheon_store::{
    ApplyOutcome, ContestantVerdict, NewRound, ObservedCommitment, Store, VerdictOutcome,
    WeightMode, WeightOutcome,
};
use futures_util::future::BoxFuture;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use serde_json::{json, Value};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

const HOSTILE: &str = "<script>alert('pwned')</script>";

fn digest(n: u8) -> String {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
}

fn commitment(image: &str, n: u8) -> Vec<u8> {
    format!(r#"{{"image":"{image}","digest":"{}"}}"#, digest(n)).into_bytes()
}

async fn record(store: &Store, hotkey: &str, block: u64, uid: Option<u16>, raw: Vec<u8>) {
    let mut tx = store.write().await.unwrap();
    tx.record_commitment(&ObservedCommitment {
        hotkey: hotkey.into(),
        commit_block: block,
        uid,
        raw,
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn open_round(store: &Store) -> i64 {
    let mut tx = store.write().await.unwrap();
    let round = tx
        .open_round(&NewRound {
            seed_block: 100,
            seed_hash: format!("0x{}", "ab".repeat(32)),
            deadline_at: 2_000_000_000,
            max_challengers: 8,
            max_open_rounds: 1,
        })
        .await
        .unwrap()
        .expect("a round opens");
    tx.commit().await.unwrap();
    round.id
}

fn verdict(id: &str, outcome: VerdictOutcome) -> ContestantVerdict {
    ContestantVerdict {
        submission: id.parse().unwrap(),
        outcome,
    }
}

/// The store every test reads:
/// - Alice:10 (uid 1) scored 0.3 in round 1 and is king; she defends in open round 2.
/// - Bob:11 (uid 2) rejected `malformed:not_json`; Carol:12 (uid 3) disqualified
///   `gate_failed` in round 1; Dave:13 (unregistered) rejected `not_registered`.
/// - Erin:14 (uid 5) queued in round 2; Frank:15 (uid 6) pending.
/// - One weight submission at block 210.
async fn populated(dir: &Path) -> Store {
    let store = Store::open(&dir.join("cacheon.db")).await.unwrap();
    record(&store, "Alice", 10, Some(1), commitment("alice/fast", 1)).await;
    record(&store, "Bob", 11, Some(2), b"not json".to_vec()).await;
    record(&store, "Carol", 12, Some(3), commitment("carol/x:2", 3)).await;
    record(&store, "Dave", 13, None, commitment("dave/x", 4)).await;
    let first = open_round(&store).await;

    let alice: SubmissionId = "Alice:10".parse().unwrap();
    let crown = CrownDecision::Crown {
        winner: Contender {
            commit_block: alice.commit_block,
            submission: alice,
            uid: 1,
            passed: true,
            score: 0.3,
        },
        cause: CrownCause::Vacant,
        dethroned: None,
    };
    let verdicts = [
        verdict("Alice:10", VerdictOutcome::Scored { score: 0.3 }),
        verdict(
            "Carol:12",
            VerdictOutcome::Disqualified(DisqualifyReason::GateFailed),
        ),
    ];
    let mut tx = store.write().await.unwrap();
    let out = tx.apply_round(first, &verdicts, &crown, 200).await.unwrap();
    assert_eq!(out, ApplyOutcome::Applied);
    tx.record_weights(
        210,
        &king_weights(Some(1), 0),
        7,
        WeightMode::Set,
        &WeightOutcome::Submitted("0xfeed".into()),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    record(&store, "Erin", 14, Some(5), commitment("erin/y", 5)).await;
    assert_eq!(open_round(&store).await, 2);
    record(&store, "Frank", 15, Some(6), commitment("frank/z", 6)).await;
    store
}

fn snapshot() -> HostSnapshot {
    HostSnapshot {
        version: "9.9.9-test".into(),
        mode: Mode::Observe,
        netuid: 14,
        validator_hotkey: None,
        validator_uid: None,
        started_at: 1_700_000_000,
        last_scan: Some(ScanReport {
            block: 4242,
            at: 1_700_000_100,
            commitments: 6,
            new_submissions: 1,
            error: None,
        }),
        chain_block: Some(4242),
        progress: BTreeMap::from([(
            2,
            json!({ "phase": "contestant", "current": "Erin:14", "note": HOSTILE }),
        )]),
        next_weights_block: Some(4570),
        last_error: Some(format!("scan failed: {HOSTILE}")),
    }
}

/// Logs: `Alice:10` exists (hostile text), `boom` fails, everything else is missing.
struct Logs;

impl LogSource for Logs {
    fn round_log(
        &self,
        round: i64,
        label: String,
    ) -> BoxFuture<'static, Result<Option<Vec<u8>>, String>> {
        Box::pin(async move {
            match (round, label.as_str()) {
                (2, "Alice:10") => Ok(Some(format!("line 1\n{HOSTILE}\n").into_bytes())),
                (_, "boom") => Err("s3: connection refused (secret detail)".into()),
                _ => Ok(None),
            }
        })
    }
}

struct Server {
    base: String,
    http: reqwest::Client,
    snapshot: watch::Sender<HostSnapshot>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

/// A host-side recorder with one metric of the host's own.
fn host_recorder() -> PrometheusRecorder {
    let recorder = PrometheusBuilder::new().build_recorder();
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!("cacheon_scans_total").increment(3);
    });
    recorder
}

async fn start_with(
    logs: Option<Arc<dyn LogSource>>,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> (Server, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = populated(dir.path()).await;
    start_on(dir, store, logs, metrics).await
}

async fn start_on(
    dir: tempfile::TempDir,
    store: Store,
    logs: Option<Arc<dyn LogSource>>,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> (Server, Store) {
    let (tx, rx) = watch::channel(snapshot());
    let state = StatusState {
        store: store.clone(),
        snapshot: rx,
        logs,
        metrics,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(cacheon_status::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let server = Server {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        snapshot: tx,
        stop: Some(stop),
        task,
        _dir: dir,
    };
    (server, store)
}

async fn start() -> Server {
    // The handle shares the recorder's registry, so the recorder itself may go.
    let handle = host_recorder().handle();
    start_with(Some(Arc::new(Logs)), Some(handle)).await.0
}

impl Server {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    /// Status and JSON body.
    async fn json(&self, path: &str) -> (u16, Value) {
        let r = self.get(path).await;
        let status = r.status().as_u16();
        let ct = r.headers()[reqwest::header::CONTENT_TYPE].to_str().unwrap();
        assert!(ct.starts_with("application/json"), "{path}: {ct}");
        (status, r.json().await.unwrap())
    }

    async fn text(&self, path: &str) -> (u16, String) {
        let r = self.get(path).await;
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

fn ids(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect()
}

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
