//! The fixture of the status API tests: a store filled through the store's real write
//! API, a host snapshot with hostile text in it, a log source, and a served API.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use cacheon_core::gate::StreamFault;
use cacheon_core::report::{ContestantReport, FailureExample, GateReport, SpeedReport, Timings};
use cacheon_core::{
    king_weights, Contender, CrownCause, CrownDecision, DisqualifyReason, Speed, SubmissionId,
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

pub const HOSTILE: &str = "<script>alert('pwned')</script>";

pub fn digest(n: u8) -> String {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
}

pub fn commitment(image: &str, n: u8) -> Vec<u8> {
    format!(r#"{{"image":"{image}","digest":"{}"}}"#, digest(n)).into_bytes()
}

pub async fn record(store: &Store, hotkey: &str, block: u64, uid: Option<u16>, raw: Vec<u8>) {
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

pub async fn open_round(store: &Store) -> i64 {
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

pub fn verdict(id: &str, outcome: VerdictOutcome) -> ContestantVerdict {
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
pub async fn populated(dir: &Path) -> Store {
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
            lead_noise: None,
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
    let (fast, cheat) = reports();
    let evidence = [("Alice:10", fast), ("Carol:12", cheat)].map(|(id, report)| {
        cacheon_store::ContestantEvidence {
            submission: id.parse().unwrap(),
            noise: None,
            lead: None,
            content: None,
            confirm_score: None,
            report: Some(report),
        }
    });
    tx.record_evidence(first, &evidence, None).await.unwrap();
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

/// Round 1's reports: Alice fast and honest; Carol fast but failing the gate, with a
/// hostile string where the baseline's output is quoted.
pub fn reports() -> (ContestantReport, ContestantReport) {
    let baseline = Speed {
        ttft_s: 0.100,
        tps: 400.0,
    };
    let timings = Timings {
        pull_s: 2.5,
        start_s: 0.4,
        ready_s: 6.1,
        workload_s: 31.0,
        teardown_s: 1.2,
        total_s: 41.2,
        gpus: 4,
        gpu_seconds: 164.8,
    };
    let alice_speed = Speed {
        ttft_s: 0.060,
        tps: 480.0,
    };
    let fast = ContestantReport {
        speed: SpeedReport::new(true, baseline, alice_speed),
        gate: Some(GateReport {
            passed: true,
            pass_fraction: 1.0,
            min_pass_fraction: 0.95,
            requests: 12,
            failed: 0,
            by_check: Default::default(),
            first_failures: vec![],
        }),
        stream_faults: Default::default(),
        stopped_early: None,
        timings,
    };
    let carol_speed = Speed {
        ttft_s: 0.012,
        tps: 1900.0,
    };
    let cheat = ContestantReport {
        speed: SpeedReport::new(false, baseline, carol_speed),
        gate: Some(GateReport {
            passed: false,
            pass_fraction: 0.25,
            min_pass_fraction: 0.95,
            requests: 12,
            failed: 9,
            by_check: BTreeMap::from([("low_agreement".into(), 9), ("off_reference".into(), 7)]),
            first_failures: vec![FailureExample {
                prompt_index: 1,
                prompt: format!("Explain the borrow checker {HOSTILE}"),
                check: "low_agreement".into(),
                detail: "agreement 12.5% with the baseline, first disagreement at token 2".into(),
                position: Some(2),
                expected: Some(" borrow".into()),
                context: Some(format!("The{HOSTILE}")),
                got: Some(" banana".into()),
            }],
        }),
        stream_faults: BTreeMap::from([(StreamFault::Stalled, 1)]),
        stopped_early: None,
        timings,
    };
    (fast, cheat)
}

pub fn snapshot() -> HostSnapshot {
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
pub struct Logs;

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

pub struct Server {
    pub base: String,
    pub http: reqwest::Client,
    /// The host's side of the snapshot channel.
    pub snapshot: watch::Sender<HostSnapshot>,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

/// A host-side recorder with one metric of the host's own.
pub fn host_recorder() -> PrometheusRecorder {
    let recorder = PrometheusBuilder::new().build_recorder();
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!("cacheon_scans_total").increment(3);
    });
    recorder
}

pub async fn start_with(
    logs: Option<Arc<dyn LogSource>>,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> (Server, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = populated(dir.path()).await;
    start_on(dir, store, logs, metrics).await
}

pub async fn start_on(
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

pub async fn start() -> Server {
    // The handle shares the recorder's registry, so the recorder itself may go.
    let handle = host_recorder().handle();
    start_with(Some(Arc::new(Logs)), Some(handle)).await.0
}

impl Server {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    /// Status and JSON body.
    pub async fn json(&self, path: &str) -> (u16, Value) {
        let r = self.get(path).await;
        let status = r.status().as_u16();
        let ct = r.headers()[reqwest::header::CONTENT_TYPE].to_str().unwrap();
        assert!(ct.starts_with("application/json"), "{path}: {ct}");
        (status, r.json().await.unwrap())
    }

    pub async fn text(&self, path: &str) -> (u16, String) {
        let r = self.get(path).await;
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

pub fn ids(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect()
}
