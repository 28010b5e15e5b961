//! The status pages as a person sees them: rendered by a real headless Chromium in a
//! 1280 px wide window, read back as rendered text, measured for horizontal overflow, and
//! saved as screenshots (paths printed) for a person to look at.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

#[allow(dead_code)] // shared with the API tests, which use all of it
#[path = "../common/mod.rs"]
mod common;
mod webdriver;

use std::path::PathBuf;
use std::sync::Arc;

use cacheon_handoff::documents::{ContestantProgress, ContestantStatus, Progress, RoundPhase};
use common::{commitment, record, start_with, Logs, HOSTILE};
use webdriver::Browser;

const WIDTH: u32 = 1280;

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_fit_a_laptop_and_say_what_a_person_needs() {
    let handle = common::host_recorder().handle();
    let (s, store) = start_with(Some(Arc::new(Logs)), Some(handle)).await;
    // What a pod reports while round 2 runs: Alice measured, Erin's server being measured.
    let progress = Progress {
        round_id: 2,
        pod_id: "pod-a".into(),
        phase: RoundPhase::Contestants,
        contestants: vec![
            ContestantProgress {
                submission_id: "Alice:10".into(),
                status: ContestantStatus::Measured,
            },
            ContestantProgress {
                submission_id: "Erin:14".into(),
                status: ContestantStatus::Measuring,
            },
        ],
        updated_at: 1_700_000_200,
    };
    s.snapshot.send_modify(|snap| {
        snap.progress
            .insert(2, serde_json::to_value(&progress).unwrap());
    });
    // A miner-chosen image name long enough to push a table off the screen if cells did
    // not wrap.
    let long_image = format!("registry.example.com/{}/server:v1", "a".repeat(180));
    record(&store, "Grace", 16, Some(7), commitment(&long_image, 7)).await;

    let browser = Browser::start(WIDTH, 2000).await;
    let dir = screenshots();
    let pages = [
        ("overview", "/"),
        ("submission-disqualified", "/submissions/Carol:12"),
        ("submission-king", "/submissions/Alice:10"),
        ("round-live", "/rounds/2"),
        ("round-closed", "/rounds/1"),
    ];
    let mut texts = std::collections::BTreeMap::new();
    for (name, path) in pages {
        browser.open(&format!("{}{path}", s.base)).await;
        let (content, window) = browser.widths().await;
        assert_eq!(
            window,
            u64::from(WIDTH),
            "{path}: the window is not {WIDTH} px wide"
        );
        assert!(
            content <= window,
            "{path}: {content} px of content in a {window} px window (horizontal scroll)"
        );
        // No script of ours, and none of the miners' text became one.
        assert_eq!(browser.eval("return document.scripts.length;").await, 0);
        let file = dir.join(format!("{name}.png"));
        browser.screenshot(&file).await;
        println!(
            "{path}: {content} px wide in a {window} px window; {}",
            file.display()
        );
        texts.insert(name, browser.text().await);
    }
    browser.close().await;

    let has = |name: &str, want: &str| {
        let t = &texts[name];
        assert!(t.contains(want), "{name}: `{want}` not on the page:\n{t}");
    };
    // The overview: mode, king, the long image (wrapped, not cut), links to details.
    has("overview", "OBSERVE MODE");
    has("overview", "Alice:10");
    has("overview", &long_image);
    has("overview", "Phase: contestants");
    // The disqualified miner learns why, in numbers, with the baseline's expectation.
    has(
        "submission-disqualified",
        "failed: pass fraction 0.250 (needs 0.950)",
    );
    has("submission-disqualified", "low_agreement\t9");
    has("submission-disqualified", "off_reference\t7");
    has("submission-disqualified", "\" borrow\"");
    has("submission-disqualified", "\" banana\"");
    has(
        "submission-disqualified",
        "median TTFT\t0.012 s\t0.100 s\t+88.00%",
    );
    has("submission-disqualified", HOSTILE); // shown as text, not run
                                             // The king's page shows its speed against the baseline and the score's arithmetic.
    has("submission-king", "median TTFT\t0.060 s\t0.100 s\t+40.00%");
    has(
        "submission-king",
        "throughput\t480.0 tok/s\t400.0 tok/s\t+20.00%",
    );
    has(
        "submission-king",
        "Score = 0.5 × 40.00% + 0.5 × 20.00% = 0.3000",
    );
    // A live round: phase, each contestant's status now, time elapsed.
    has("round-live", "Phase: contestants");
    has("round-live", "measuring");
    has("round-live", "measured");
    has("round-live", "elapsed");
    // A closed round: every verdict in one row each.
    has("round-closed", "0.060 s vs 0.100 s");
    has("round-closed", "0.250 (needs 0.950)");
}
