//! The daemon pair end to end on real parts (see `world`): the host crowns the fast miner,
//! disqualifies the cheater, rejects the malformed commitment, sets weights, then defends
//! and loses the crown across two more rounds; and the same first round survives SIGKILLs
//! of both daemons at several phases, an S3 outage and lease expiries with the same final
//! state. The two scenarios share one Docker engine and take turns.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod engines;
mod overhead;
mod seen;
#[path = "../support/mod.rs"]
mod support;
mod world;

use std::collections::BTreeMap;
use std::future::Future;
use std::process::Command;
use std::time::Duration;

use tokio::sync::Mutex;
use world::{
    ss58, Daemon, World, BAD_ENTRYPOINT_UID, CHEATER, DRIPPING, FAST, MALFORMED_UID, MUCH_FASTER,
    NETUID, OPERATED_REGISTRY_PORT, REDIRECTING_UID, REDIRECT_PORT, SLIGHTLY_FASTER, SLOW,
    SLOW_KING, STALLING, VERSION_KEY,
};

static TURN: Mutex<()> = Mutex::const_new(());

const ROUND: Duration = Duration::from_secs(240);

fn id(uid: u16, block: u64) -> String {
    format!("{}:{block}", ss58(uid))
}

/// Polls `check` until it yields a value (a condition on durable state, not a guess at
/// how long something takes); panics after `limit`.
async fn until<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `until`, printing the daemons' last lines before it panics.
async fn until_told<T, F, Fut>(what: &str, limit: Duration, daemons: &[&Daemon], check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match tokio::time::timeout(limit, until(what, limit + limit, check)).await {
        Ok(v) => v,
        Err(_) => {
            for d in daemons {
                eprintln!("--- {} ---\n{}", d.name, world::tail(&d.lines(), 60));
            }
            panic!("timed out waiting for {what}");
        }
    }
}

async fn king(w: &World) -> Option<String> {
    let k = w.get("/king").await;
    k["submission_id"].as_str().map(String::from)
}

/// `{id: (state, reason)}` of every submission, as the status API shows it.
async fn states(w: &World) -> BTreeMap<String, (String, Option<String>)> {
    let rows = w.get("/submissions?limit=1000").await;
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                (
                    r["state"].as_str().unwrap().to_string(),
                    r["reason"].as_str().map(String::from),
                ),
            )
        })
        .collect()
}

/// The first round's expected outcome, whatever happened to the machines on the way.
fn round_one() -> BTreeMap<String, (String, Option<String>)> {
    BTreeMap::from([
        (id(FAST.0, 990), ("scored".into(), None)),
        (id(SLOW.0, 991), ("scored".into(), None)),
        (
            id(CHEATER.0, 992),
            ("disqualified".into(), Some("gate_failed".into())),
        ),
        (
            id(MALFORMED_UID, 993),
            ("rejected".into(), Some("malformed:not_json".into())),
        ),
    ])
}

/// SCALE bytes of `SubtensorModule.set_weights(14, [uid], [65535], 77)` (call index 7/0
/// in the finney spec-393 metadata): the call inside a weights extrinsic.
fn set_weights_call(uid: u16) -> Vec<u8> {
    let mut call = vec![7, 0];
    call.extend(NETUID.to_le_bytes());
    call.push(4); // compact length 1
    call.extend(uid.to_le_bytes());
    call.push(4);
    call.extend(u16::MAX.to_le_bytes());
    call.extend(VERSION_KEY.to_le_bytes());
    call
}

async fn weights_sent_to(w: &World, uid: u16) {
    let call = set_weights_call(uid);
    until(
        &format!("a set_weights extrinsic for uid {uid}"),
        ROUND,
        || {
            let sent = w.node.submitted();
            let found = sent
                .last()
                .is_some_and(|x| x.windows(call.len()).any(|win| win == call.as_slice()));
            async move { found.then_some(()) }
        },
    )
    .await;
}

fn cacheon_containers() -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter", "label=cacheon.round"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

async fn stop(d: &mut Daemon) {
    let status = d.terminate();
    assert!(status.success(), "{} exited with {status}", d.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_pod_crown_defend_and_hand_over_the_crown() {
    let _turn = TURN.lock().await;
    let w = World::new("clean").await;
    let mut host = w.host();
    host.wait_for(&["status API listening"], Duration::from_secs(60))
        .await;
    let observe = w.get("/status").await;
    assert_eq!(observe["mode"], "active");
    let mut pod = w.pod("pod-a");

    // Round 1: fast, slow, cheater; the malformed commitment never gets that far.
    let fast = id(FAST.0, 990);
    until("the fast miner crowned", ROUND, || async {
        king(&w).await.filter(|k| *k == fast)
    })
    .await;
    until("round 1 applied", ROUND, || async {
        let s = states(&w).await;
        (s == round_one()).then_some(())
    })
    .await;
    let malformed = w
        .get(&format!("/submissions/{}", id(MALFORMED_UID, 993)))
        .await;
    assert_eq!(malformed["reason"], "malformed:not_json");
    weights_sent_to(&w, FAST.0).await;
    // What the miners and the operator see of round 1.
    seen::verdict_reports(&w, &id(CHEATER.0, 992), &fast).await;
    seen::prometheus_scrapes(&w, 1).await;

    // Round 2: 20 % faster than the king, under the 50 % margin: the king stays.
    w.node.set_block(1010);
    w.commit(SLIGHTLY_FASTER.0, 1005);
    let slight = id(SLIGHTLY_FASTER.0, 1005);
    until("round 2 scored", ROUND, || async {
        let s = states(&w).await;
        s.get(&slight).filter(|(st, _)| st == "scored").map(|_| ())
    })
    .await;
    assert_eq!(king(&w).await.as_deref(), Some(fast.as_str()));
    let history = w.get("/king/history").await;
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "defended" && e["submission_id"] == fast.as_str()),
        "{history}"
    );

    // Round 3: several times faster: the crown changes hands, and so do the weights.
    w.node.set_block(1020);
    w.commit(MUCH_FASTER.0, 1015);
    let much = id(MUCH_FASTER.0, 1015);
    until("the much faster miner crowned", ROUND, || async {
        king(&w).await.filter(|k| *k == much)
    })
    .await;
    weights_sent_to(&w, MUCH_FASTER.0).await;
    let rounds = w.get("/rounds").await;
    let completed = rounds
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "completed")
        .count();
    assert_eq!(completed, 3, "{rounds}");

    stop(&mut pod).await;
    stop(&mut host).await;
    assert!(cacheon_containers().is_empty(), "containers left behind");
    overhead::print("undisturbed run", &pod.lines());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_an_s3_outage_and_lease_expiry_change_nothing() {
    let _turn = TURN.lock().await;
    let w = World::new("faults").await;

    // The host, killed in its first scan (as it records the first commitment).
    let mut host = w.host();
    host.wait_for(&["new submission"], Duration::from_secs(60))
        .await;
    host.kill9();
    let mut host = w.host();

    // A pod killed as it pulls the first image: its lease must expire before the next
    // pod can claim the round.
    let mut pod = w.pod("pod-1");
    pod.wait_for(&["\"step\":\"pulling\""], ROUND).await;
    pod.kill9();

    // A second pod, killed while it measures the second contestant: its container is
    // left running, for the next pod to reap.
    let mut pod = w.pod("pod-2");
    pod.wait_for(&["claimed round"], ROUND).await;
    pod.wait_for(&["\"step\":\"measuring\"", &id(SLOW.0, 991)], ROUND)
        .await;
    pod.kill9();
    assert!(
        !cacheon_containers().is_empty(),
        "the killed pod's container is gone already"
    );

    // A third pod reaps it, resumes from the results already written, and rides out a
    // 30-second S3 outage in the middle of the round.
    let mut pod = w.pod("pod-3");
    pod.wait_for(&["removed containers left by an earlier pod"], ROUND)
        .await;
    pod.wait_for(&["reusing the result an earlier pod wrote"], ROUND)
        .await;
    pod.wait_for(&["\"step\":\"measuring\""], ROUND).await;
    w.moto.pause();
    tokio::time::sleep(Duration::from_secs(30)).await; // the outage itself
    w.moto.resume();

    // The host, killed as it ingests the round's done.json; its successor applies it.
    host.wait_for(&["ingesting done.json"], ROUND).await;
    host.kill9();
    let mut host = w.host();
    host.wait_for(&["status API listening"], Duration::from_secs(60))
        .await;

    let fast = id(FAST.0, 990);
    until("the fast miner crowned", ROUND, || async {
        king(&w).await.filter(|k| *k == fast)
    })
    .await;
    assert_eq!(states(&w).await, round_one());
    weights_sent_to(&w, FAST.0).await;

    // Scored once, charged nothing: one completed round, no void one, no infra attempt.
    let rounds = w.get("/rounds").await;
    let rounds = rounds.as_array().unwrap();
    assert_eq!(rounds.len(), 1, "{rounds:?}");
    assert_eq!(rounds[0]["state"], "completed");
    let rows = w.get("/submissions?limit=1000").await;
    for r in rows.as_array().unwrap() {
        assert_eq!(r["infra_attempts"], 0, "{r}");
    }
    let history = w.get("/king/history").await;
    let crowned = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "crowned")
        .count();
    assert_eq!(crowned, 1, "{history}");

    stop(&mut pod).await;
    stop(&mut host).await;
    assert!(cacheon_containers().is_empty(), "containers left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_wallet_the_host_observes_and_submits_nothing() {
    let _turn = TURN.lock().await;
    let w = World::new("observe").await;
    let mut host = w.host_with(false);
    host.wait_for(&["observe mode"], Duration::from_secs(60))
        .await;
    let status = w.get("/status").await;
    assert_eq!(status["mode"], "observe");
    assert!(status["validator_hotkey"].is_null(), "{status}");
    // It still scans and queues, and computes weights (to the burn uid: no king yet).
    until("commitments queued and weights computed", ROUND, || async {
        let s = w.get("/status").await;
        let computed = s["last_weights"]["detail"] == "observe_mode"
            && s["last_weights"]["uids"] == serde_json::json!([0]);
        let queued = s["submissions"]["rejected"] == 1
            && s["submissions"]["pending"].as_i64().unwrap_or(0)
                + s["submissions"]["queued"].as_i64().unwrap_or(0)
                == 3;
        (computed && queued).then_some(())
    })
    .await;
    let page = reqwest::get(&w.status).await.unwrap().text().await.unwrap();
    assert!(page.to_lowercase().contains("observe"), "{page}");
    assert!(
        w.node.submitted().is_empty(),
        "observe mode submitted an extrinsic"
    );
    stop(&mut host).await;
}

/// One round with an honest miner and four hostile ones: each hostile one ends with its own
/// reason, the honest one is scored and crowned, and the pod goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_neighbours_end_alone_and_the_round_goes_on() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let _turn = TURN.lock().await;
    // Anything the redirecting server's /health points at on this machine.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", REDIRECT_PORT))
        .await
        .unwrap();
    let reached = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = reached.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let w = World::new("hostile").await;
    // Over the default round-1 commitments of uids 3, 4, 6 and 7.
    w.commit_hostile(STALLING.0, "stalling", 991);
    w.commit_hostile(DRIPPING.0, "dripping", 992);
    w.commit_hostile(BAD_ENTRYPOINT_UID, "bad-entrypoint", 994);
    w.commit_hostile(REDIRECTING_UID, "redirecting", 995);
    let mut host = w.host();
    host.wait_for(&["status API listening"], Duration::from_secs(60))
        .await;
    let mut pod = w.pod("pod-h");
    let started = std::time::Instant::now();

    let fast = id(FAST.0, 990);
    until("the honest miner crowned", ROUND, || async {
        king(&w).await.filter(|k| *k == fast)
    })
    .await;
    println!(
        "round with four hostile neighbours done in {:?}",
        started.elapsed()
    );
    let s = states(&w).await;
    let reason = |uid: u16, block: u64| s[&id(uid, block)].clone();
    assert_eq!(reason(FAST.0, 990), ("scored".into(), None));
    assert_eq!(
        reason(STALLING.0, 991),
        ("disqualified".into(), Some("stream_stalled".into()))
    );
    assert_eq!(
        reason(DRIPPING.0, 992),
        ("disqualified".into(), Some("request_deadline".into()))
    );
    let bad = reason(BAD_ENTRYPOINT_UID, 994);
    assert!(
        bad == ("disqualified".into(), Some("crashed".into()))
            || bad == ("disqualified".into(), Some("start_failed".into())),
        "{bad:?}"
    );
    assert_eq!(
        reason(REDIRECTING_UID, 995),
        ("disqualified".into(), Some("redirected".into()))
    );
    assert_eq!(reached.load(Ordering::SeqCst), 0, "a redirect was followed");
    // No round was voided, and the pod is still serving.
    let rounds = w.get("/rounds").await;
    assert!(
        rounds
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["state"] != "void"),
        "{rounds}"
    );
    assert!(pod.is_running(), "the pod exited");
    for line in pod.lines().iter().filter(|l| l.contains("stopped early")) {
        println!("{line}");
    }
    stop(&mut pod).await;
    stop(&mut host).await;
}

/// A king that is slow but valid (its registry drips, its `/health` answers late, it
/// streams slower than the challenger) reigns while turns are generous. Once the operator's turn budget is shorter than its turn, the round still
/// completes: the king alone pays (`turn_budget_exceeded`, and the crown), the honest
/// challenger is scored and crowned, and no round is void.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_king_slower_than_its_turn_budget_pays_alone_and_the_round_completes() {
    let _turn = TURN.lock().await;
    let w = World::bare("slowking").await;
    // Its image comes through a registry that drips.
    let drip = world::dripping_registry().await;
    let (dripped, digest) = w.images.named_through("slow-king", drip);
    w.commit_pinned(SLOW_KING.0, &dripped, &digest, 990);
    let mut host = w.host();
    host.wait_for(&["status API listening"], Duration::from_secs(60))
        .await;
    let mut pod = w.pod("pod-k");
    let slow_king = id(SLOW_KING.0, 990);
    until_told("the slow king crowned", ROUND, &[&host, &pod], || async {
        king(&w).await.filter(|k| *k == slow_king)
    })
    .await;
    stop(&mut host).await;

    // Turns now get 20 s (18 s before the teardown reserve); the king needs its dripped
    // pull and 20 s to be healthy.
    w.commit(FAST.0, 995);
    let mut host = w.host_env(true, &[("CACHEON_TURN_BUDGET_SECS", "20")]);
    host.wait_for(&["status API listening"], Duration::from_secs(60))
        .await;
    let fast = id(FAST.0, 995);
    let started = std::time::Instant::now();
    until_told(
        "the honest challenger crowned",
        ROUND,
        &[&host, &pod],
        || async { king(&w).await.filter(|k| *k == fast) },
    )
    .await;
    println!(
        "round with a king over its turn budget done in {:?}",
        started.elapsed()
    );
    let s = states(&w).await;
    assert_eq!(
        s[&slow_king],
        (
            "disqualified".to_string(),
            Some("turn_budget_exceeded".to_string())
        )
    );
    assert_eq!(s[&fast], ("scored".to_string(), None));
    // Where the king's turns went (its report, per round): the dripped pull and the late
    // health in round 1; in round 2 the same, cut at the budget.
    let turns = w.get(&format!("/submissions/{slow_king}")).await;
    for r in turns["rounds"].as_array().unwrap() {
        println!("king, round {}: {}", r["round_id"], r["report"]["timings"]);
    }
    let rounds = w.get("/rounds?limit=100").await;
    let rounds = rounds.as_array().unwrap();
    assert_eq!(rounds.len(), 2, "{rounds:?}");
    assert!(
        rounds.iter().all(|r| r["state"] == "completed"),
        "{rounds:?}"
    );
    for line in pod.lines().iter().filter(|l| l.contains("turn budget")) {
        println!("{line}");
    }
    assert!(pod.is_running(), "the pod exited");
    stop(&mut pod).await;
    stop(&mut host).await;
}

/// Both `/health` traps next to an honest miner: a server that sends 200 and then never
/// the promised body, and one whose body never ends; and a valid stream bloated with empty
/// events; and two images the sandbox does not run (a `VOLUME`, a toolkit variable). Each
/// ends alone with its reason within its turn; the honest miner is crowned,
/// no round is void, `done.json` stays small, and the pod never holds more than 200 MB
/// however much they send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_traps_end_alone_and_the_pod_stays_small() {
    let _turn = TURN.lock().await;
    let w = World::bare("healthtraps").await;
    w.commit(FAST.0, 990);
    w.commit_hostile(3, "health-no-body", 991);
    w.commit_hostile(4, "health-endless-body", 992);
    w.commit_hostile(5, "bloated", 993);
    w.commit_hostile(6, "volume", 994);
    w.commit_hostile(7, "mofed", 995);
    let mut host = w.host();
    host.wait_for(&["status API listening"], Duration::from_secs(60))
        .await;
    let mut pod = w.pod("pod-t");
    let fast = id(FAST.0, 990);
    until_told(
        "the honest miner crowned",
        ROUND,
        &[&host, &pod],
        || async { king(&w).await.filter(|k| *k == fast) },
    )
    .await;
    let s = states(&w).await;
    for trap in [id(3, 991), id(4, 992)] {
        assert_eq!(
            s[&trap],
            ("disqualified".to_string(), Some("unhealthy".to_string())),
            "{trap}"
        );
    }
    assert_eq!(
        s[&id(5, 993)],
        (
            "disqualified".to_string(),
            Some("bloated_stream".to_string())
        )
    );
    let refused = |reason: &str| ("disqualified".to_string(), Some(reason.to_string()));
    assert_eq!(s[&id(6, 994)], refused("declared_volume"));
    assert_eq!(s[&id(7, 995)], refused("toolkit_variable"));
    // Each one's turn, as its report tells it (the pods' start-up limit is 30 s; the turn
    // budget the default 30 min).
    for who in [id(3, 991), id(4, 992), id(5, 993), id(6, 994), id(7, 995)] {
        let sub = w.get(&format!("/submissions/{who}")).await;
        let round = &sub["rounds"][0];
        println!(
            "{who}: {} {}: {}",
            round["outcome"], round["reason"], round["report"]["timings"]
        );
    }
    let sealed = pod
        .wait_for_lines(&["done.json written"], Duration::from_secs(10))
        .await;
    println!("{sealed}");
    let bytes: u64 = sealed
        .split("\"bytes\":")
        .nth(1)
        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .expect("done.json's size in the pod's log");
    assert!(bytes < 1 << 20, "done.json is {bytes} bytes");
    let rounds = w.get("/rounds").await;
    assert!(
        rounds
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["state"] == "completed"),
        "{rounds}"
    );
    let peak = pod.peak_rss();
    println!("the pod's peak resident memory: {} MB", peak >> 20);
    assert!(peak < 200 << 20, "the pod grew to {} MB", peak >> 20);
    stop(&mut pod).await;
    stop(&mut host).await;
}

/// A challenger whose registry passes every check and then fails its layers: the engine's
/// error cannot be classified, but the machine is sound right after, so each round it
/// breaks is void with it as the cause, charged to it alone. The honest miner next to it is
/// never charged an attempt and is crowned once the breaker runs alone; the breaker ends
/// `failed_infra` after its own three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voids_during_one_challengers_turn_are_charged_to_it_alone() {
    let _turn = TURN.lock().await;
    let w = World::bare("cause").await;
    w.commit(FAST.0, 990);
    let failing = world::blob_failing_registry().await;
    // Its own layer and configuration: nothing already on the engine can stand in.
    let (breaker_image, digest) = w.images.named_through("slow-king", failing);
    w.commit_pinned(SLOW.0, &breaker_image, &digest, 991);
    let mut host = w.host();
    host.wait_for(&["status API listening"], Duration::from_secs(60))
        .await;
    let mut pod = w.pod("pod-c");
    let (fast, breaker) = (id(FAST.0, 990), id(SLOW.0, 991));
    let finals = BTreeMap::from([
        (fast.clone(), ("scored".to_string(), None)),
        (
            breaker.clone(),
            (
                "failed_infra".to_string(),
                Some("engine_failure".to_string()),
            ),
        ),
    ]);
    until_told(
        "every submission settled",
        3 * ROUND,
        &[&host, &pod],
        || async {
            let s = states(&w).await;
            (s == finals).then_some(())
        },
    )
    .await;
    assert_eq!(king(&w).await.as_deref(), Some(fast.as_str()));
    let honest = w.get(&format!("/submissions/{fast}")).await;
    assert_eq!(honest["infra_attempts"], 0, "{honest}");
    let rounds = w.get("/rounds?limit=100").await;
    let rounds = rounds.as_array().unwrap();
    for r in rounds {
        println!(
            "round {}: {} {} cause {}",
            r["id"], r["state"], r["void_reason"], r["void_cause"]
        );
    }
    let voids: Vec<_> = rounds.iter().filter(|r| r["state"] == "void").collect();
    assert_eq!(voids.len(), 3, "{rounds:?}");
    assert!(
        voids.iter().all(|r| r["void_cause"] == breaker.as_str()),
        "{rounds:?}"
    );
    for line in pod
        .lines()
        .iter()
        .filter(|l| l.contains("charged to the contestant"))
    {
        println!("{line}");
    }
    assert!(pod.is_running(), "the pod exited");
    stop(&mut pod).await;
    stop(&mut host).await;
}

/// An infrastructure fault that strikes whenever one submission is in a round (here: the
/// operator's own registry, which hosts that submission's image, answers 500) voids its
/// rounds. After two voids every contestant is a suspect and runs alone: the honest ones are
/// scored, the one whose turn breaks rounds uses up only its own attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voids_caused_by_one_neighbour_never_fail_the_honest_ones() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _turn = TURN.lock().await;
    let broken = tokio::net::TcpListener::bind(("127.0.0.1", OPERATED_REGISTRY_PORT))
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = broken.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    let w = World::new("isolate").await;
    let breaker = id(SLOW.0, 991);
    w.commit_image(
        SLOW.0,
        &format!("localhost:{OPERATED_REGISTRY_PORT}/cacheon-e2e/slow:v1"),
        991,
    );
    let mut host = w.host();
    host.wait_for(&["status API listening"], Duration::from_secs(60))
        .await;
    let mut pod = w.pod("pod-i");

    let fast = id(FAST.0, 990);
    let cheater = id(CHEATER.0, 992);
    let finals = BTreeMap::from([
        (fast.clone(), ("scored".to_string(), None)),
        (
            breaker.clone(),
            (
                "failed_infra".to_string(),
                Some("engine_failure".to_string()),
            ),
        ),
        (
            cheater.clone(),
            ("disqualified".to_string(), Some("gate_failed".to_string())),
        ),
    ]);
    let seen = std::sync::Mutex::new(BTreeMap::new());
    until("every submission settled", 3 * ROUND, || async {
        let mut s = states(&w).await;
        s.remove(&id(MALFORMED_UID, 993));
        let mut last = seen.lock().unwrap();
        if *last != s {
            println!("states: {s:?}");
            *last = s.clone();
        }
        (s == finals).then_some(())
    })
    .await;
    assert_eq!(king(&w).await.as_deref(), Some(fast.as_str()));
    let rounds = w.get("/rounds?limit=100").await;
    let voided = rounds
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "void")
        .count();
    assert_eq!(voided, 3, "{rounds}");
    assert!(pod.is_running(), "the pod exited");
    stop(&mut pod).await;
    stop(&mut host).await;
}

/// A challenger whose lead is within noise (here: any lead, `CACHEON_CONFIRM_WITHIN` set
/// very high, against a miner whose every request's timing is spread by 30 %) is measured
/// again with the king before the crown changes: the pass shows in the round's progress,
/// its results and the status page, and the crown goes to it only once both passes agree.
/// Then a rebuild of the new king's image by another hotkey is rejected as a copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_within_noise_is_confirmed_and_a_rebuilt_copy_is_rejected() {
    let _turn = TURN.lock().await;
    let w = World::new("confirm").await;
    let mut host = w.host_env(true, &[("CACHEON_CONFIRM_WITHIN", "1000")]);
    host.wait_for(&["status API listening"], Duration::from_secs(60))
        .await;
    let mut pod = w.pod("pod-c");
    let fast = id(FAST.0, 990);
    until("the fast miner crowned", ROUND, || async {
        king(&w).await.filter(|k| *k == fast)
    })
    .await;
    // Round 1 had no king: nothing to confirm.
    let first = w.get("/rounds/1").await;
    assert!(first["confirmation"].is_null(), "{first}");

    w.node.set_block(1010);
    w.commit_hostile(SLIGHTLY_FASTER.0, "jittery", 1005);
    let jittery = id(SLIGHTLY_FASTER.0, 1005);
    // Live: the round's progress and the status page say it is confirming.
    let page = until("the confirmation pass in progress", ROUND, || async {
        let r = w.try_get("/rounds/2").await?;
        if r["progress"]["phase"] != "confirming" {
            return None;
        }
        reqwest::get(&w.status).await.ok()?.text().await.ok()
    })
    .await;
    assert!(page.contains("Phase: <b>confirming</b>"), "{page}");
    let confirming = std::time::Instant::now();

    until("the jittery miner crowned", ROUND, || async {
        king(&w).await.filter(|k| *k == jittery)
    })
    .await;
    println!(
        "confirmation pass to crown: {:?} (two mock contestants and the mock baseline again)",
        confirming.elapsed()
    );
    let round = w.get("/rounds/2").await;
    println!("round 2: {round:#}");
    let c = &round["confirmation"];
    assert_eq!(c["outcome"], "confirmed", "{round}");
    assert_eq!(c["challenger"], jittery.as_str());
    assert_eq!(c["king"], fast.as_str());
    for pass in ["first", "second"] {
        let lead = c[pass]["challenger"].as_f64().unwrap() - c[pass]["king"].as_f64().unwrap();
        let noise = c[pass]["noise"].as_f64().unwrap();
        assert!(lead > 1.25 * noise, "{pass}: lead {lead}, noise {noise}");
    }
    let contestants = round["contestants"].as_array().unwrap();
    let row = |who: &str| {
        contestants
            .iter()
            .find(|r| r["submission_id"] == who)
            .unwrap()
            .clone()
    };
    let (k, x) = (row(&fast), row(&jittery));
    for r in [&k, &x] {
        let (low, high) = (
            r["noise"]["score"]["low"].as_f64().unwrap(),
            r["noise"]["score"]["high"].as_f64().unwrap(),
        );
        let score = r["score"].as_f64().unwrap();
        assert!(low <= score && score <= high, "{r}");
        assert!(r["confirm_score"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert!(x["lead"]["interval"]["low"].as_f64().unwrap() > 0.0, "{x}");
    assert!(k["lead"].is_null(), "the king has no lead over itself: {k}");
    // One confirmation pass, in the pod's log and in S3.
    let confirming = pod
        .lines()
        .iter()
        .filter(|l| l.contains("\"step\":\"confirming\""))
        .count();
    assert_eq!(confirming, 1);
    let page = reqwest::get(&w.status).await.unwrap().text().await.unwrap();
    assert!(
        page.contains("Confirmation pass: <b>confirmed</b>"),
        "{page}"
    );
    // Both passes' container logs are kept, the second under its own label.
    for label in [
        jittery.clone(),
        format!("confirm.{jittery}"),
        "confirm.baseline".into(),
    ] {
        let log = reqwest::get(format!("{}/rounds/2/logs/{label}", w.status))
            .await
            .unwrap();
        assert!(log.status().is_success(), "log {label}: {}", log.status());
    }

    // Round 3: another hotkey commits a rebuild of the new king's image (same layers and
    // command, a new label, so a new digest): measured, then rejected as a copy.
    let (_, king_digest) = w.images.named("jittery");
    let (_, copy_digest) = w.images.named("jittery-rebuilt");
    assert_ne!(king_digest, copy_digest, "the rebuild has its own digest");
    println!("king {king_digest}, its rebuild {copy_digest}");
    w.node.set_block(1020);
    w.commit_hostile(MUCH_FASTER.0, "jittery-rebuilt", 1015);
    let copy = id(MUCH_FASTER.0, 1015);
    let original = format!("duplicate_of:{jittery}");
    until("the rebuild rejected as a copy", ROUND, || async {
        let s = states(&w).await;
        s.get(&copy)
            .filter(|(st, r)| st == "rejected" && r.as_deref() == Some(original.as_str()))
            .map(|_| ())
    })
    .await;
    assert_eq!(king(&w).await.as_deref(), Some(jittery.as_str()));
    let round = w.get("/rounds/3").await;
    let row = round["contestants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["submission_id"] == copy.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["outcome"], "rejected", "{round}");
    assert_eq!(row["reason"], original.as_str(), "{round}");
    stop(&mut pod).await;
    stop(&mut host).await;
    assert!(cacheon_containers().is_empty(), "containers left behind");
}

/// Real servers in the real sandbox. First a machine that cannot run the baseline (its
/// weights are corrupt): its canary fails, it says why with the baseline's log, and it
/// claims nothing, so the round stays open. Then a fit pod runs the round: the real vLLM
/// baseline in default compile mode, a real vLLM and a real llama.cpp scored with the gate
/// passing, the cheating proxy in front of a real vLLM disqualified; logs kept, nothing
/// left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_engines_a_canary_refuses_an_unfit_machine_then_a_round_is_judged() {
    let engines = engines::engines();
    let _turn = TURN.lock().await;
    let mut w = World::empty("real", world::images().await).await;
    let (image, digest) = engines.get("vllm");
    w.baseline = (image, digest, engines::BASELINE_ARGS.to_string());
    w.models = engines::model_dir();
    // Real start-ups on two shared cores: vLLM compiles for a minute or two.
    w.pod_startup_secs = 600;
    w.pod_memory_gb = 6;
    let miners = [(2u16, "vllm-miner"), (3, "llama"), (4, "cheater")];
    for (i, (uid, name)) in miners.iter().enumerate() {
        let (image, digest) = engines.get(name);
        w.commit_pinned(*uid, &image, &digest, 990 + i as u64);
    }
    let mut host = w.host();
    host.wait_for(&["status API listening"], Duration::from_secs(60))
        .await;
    until("round 1 opened", Duration::from_secs(60), || async {
        w.try_get("/rounds/1").await.map(|_| ())
    })
    .await;

    // The unfit machine: the same files, but weights that do not load.
    let broken = w.dir.path().join("broken-models");
    std::fs::create_dir_all(&broken).unwrap();
    for entry in std::fs::read_dir(engines::model_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        if path.extension().is_some_and(|e| e == "safetensors") {
            std::fs::write(broken.join(&name), b"not weights").unwrap();
        } else {
            std::fs::copy(&path, broken.join(&name)).unwrap();
        }
    }
    let mut unfit = w.pod_on("unfit-pod", &broken);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(900);
    while unfit.is_running() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the unfit pod is still running"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = unfit.terminate();
    assert!(!status.success(), "an unfit pod exited with {status}");
    // Its reader thread may still be draining the last lines.
    let refused = unfit
        .wait_for_lines(
            &["the baseline canary failed", "log_tail"],
            Duration::from_secs(10),
        )
        .await;
    eprintln!("the unfit pod said: {refused}");
    let lines = unfit.lines().join("\n");
    assert!(
        !lines.contains("claimed round"),
        "the unfit pod claimed:\n{lines}"
    );
    let round = w.get("/rounds/1").await;
    assert_eq!(round["state"], "open", "{round}");
    assert!(
        cacheon_containers().is_empty(),
        "{:?}",
        cacheon_containers()
    );

    // A fit machine judges the same round.
    let mut pod = w.pod("real-pod");
    let limit = Duration::from_secs(40 * 60);
    let closed = until("round 1 closed", limit, || async {
        let r = w.get("/rounds/1").await;
        (r["state"] != "open").then_some(r)
    })
    .await;
    assert_eq!(
        closed["state"],
        "completed",
        "{closed}\n{}",
        world::tail(&pod.lines(), 80)
    );
    let s = states(&w).await;
    let mut seen = Vec::new();
    for (i, (uid, name)) in miners.iter().enumerate() {
        let sub_id = id(*uid, 990 + i as u64);
        let sub = w.get(&format!("/submissions/{sub_id}")).await;
        seen.push(format!("{name} {}", engines::describe(&sub_id, &sub)));
        let report = &sub["rounds"][0]["report"];
        match *name {
            "cheater" => {
                assert_eq!(
                    s[&sub_id],
                    ("disqualified".into(), Some("gate_failed".into())),
                    "{sub}"
                );
                assert_eq!(report["gate"]["passed"], false, "{sub}");
            }
            _ => {
                assert_eq!(s[&sub_id], ("scored".into(), None), "{name}: {sub}");
                assert_eq!(report["gate"]["passed"], true, "{name}: {sub}");
                assert!(report["speed"]["score"].is_number(), "{name}: {sub}");
            }
        }
        assert!(
            sub["rounds"][0]["log"].as_str().is_some(),
            "{name}: no log kept: {sub}"
        );
    }
    let canary = pod
        .wait_for(&["canary passed"], Duration::from_secs(1))
        .await;
    eprintln!(
        "the fit pod's canary: {canary}\nreal-engine round 1:\n{}",
        seen.join("\n")
    );
    stop(&mut pod).await;
    stop(&mut host).await;
    assert!(
        cacheon_containers().is_empty(),
        "{:?}",
        cacheon_containers()
    );
}

/// The crash that real engines met before the scratch tmpfs was mounted `exec`: the real
/// vLLM baseline in its default compile mode, in our sandbox's container body with the old
/// tmpfs options, dies loading its own compiled kernels. Kept as a reproduction (minutes of
/// a compiling vLLM); the real-engine round above is the regression test of the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a reproduction of the noexec crash (about 3 minutes): run with --ignored"]
async fn a_noexec_scratch_kills_a_real_vllm_at_start_up() {
    use bollard::query_parameters::{LogsOptionsBuilder, StartContainerOptions};
    use futures_util::StreamExt;

    let engines = engines::engines();
    let _turn = TURN.lock().await;
    let engine = cacheon_containers::Engine::connect().await.unwrap();
    let (image, digest) = engines.get("vllm");
    let pinned = format!(
        "{}@{digest}",
        image.split(':').take(2).collect::<Vec<_>>().join(":")
    );
    let (open_files, locked_memory) = support::engine_limits();
    let cfg = cacheon_containers::SandboxConfig {
        network: format!("cacheon-noexec-{}", std::process::id()),
        bridge: None,
        models_dir: engines::model_dir(),
        gpus: cacheon_containers::Gpus::None,
        memory_bytes: 6 << 30,
        shm_bytes: 1 << 30,
        open_files,
        locked_memory,
        ..cacheon_containers::SandboxConfig::default()
    };
    engine.ensure_network(&cfg.network, None).await.unwrap();
    let args: Vec<String> = engines::BASELINE_ARGS
        .replace("{max_model_len}", "8192")
        .split_whitespace()
        .map(String::from)
        .collect();
    let labels = cacheon_containers::Labels {
        round: "noexec".into(),
        submission: "baseline".into(),
        role: "baseline".into(),
        pod: "noexec-repro".into(),
    };
    let mut body = cacheon_containers::container_body(&pinned, &args, &labels, &cfg);
    let host = body.host_config.as_mut().unwrap();
    let old = format!("rw,nosuid,nodev,size={},mode=1777", cfg.scratch_bytes);
    host.tmpfs = Some([("/tmp".to_string(), old)].into());
    let docker = engine.docker();
    let id = docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            body,
        )
        .await
        .unwrap()
        .id;
    docker
        .start_container(&id, None::<StartContainerOptions>)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    // It either crashes or serves; either way it is done well within ten minutes.
    let exit = tokio::time::timeout(
        Duration::from_secs(600),
        docker
            .wait_container(&id, None::<bollard::query_parameters::WaitContainerOptions>)
            .next(),
    )
    .await;
    let mut logs = docker.logs(
        &id,
        Some(LogsOptionsBuilder::new().stdout(true).stderr(true).build()),
    );
    let mut text = String::new();
    while let Some(Ok(chunk)) = logs.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    engine.remove_container(&id).await.unwrap();
    let _ = Command::new("docker")
        .args(["network", "rm", &cfg.network])
        .output();
    let outcome = format!("{exit:?}");
    let line = text
        .lines()
        .find(|l| l.contains("failed to map segment"))
        .unwrap_or_else(|| {
            panic!(
                "no noexec crash ({outcome:?}):\n{}",
                world::tail(&text.lines().map(String::from).collect::<Vec<_>>(), 40)
            )
        });
    eprintln!(
        "exited after {:.0} s ({outcome}):\n{line}",
        started.elapsed().as_secs_f64()
    );
}
