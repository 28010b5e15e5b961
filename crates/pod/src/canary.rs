//! The canary: before a pod claims a round whose baseline it has not yet run, it starts that
//! baseline image in the sandbox on the machine's real `/models` and asks it one greedy
//! question. A machine that cannot run the baseline (a driver that does not match the
//! image, a broken model directory, a runtime that refuses the sandbox) is unfit: the pod
//! says why, with the baseline's last log lines, and claims nothing. No round is voided and
//! no miner is charged for a machine that could never have judged them.

use std::time::Duration;

use cacheon_containers::{log_tail, wait_released, Engine, Labels};
use cacheon_core::reference::{Digest, ImageRef};
use cacheon_handoff::documents::BaselineImage;
use tokio::time::Instant;

use crate::judge::{baseline_args, baseline_pull};
use crate::PodConfig;

/// The container's label (its logs and reaping).
const CANARY_LABEL: &str = "canary";
/// The one question, and how long its answer may take (a cold engine compiles on it).
const QUESTION: &str = "Name one primary colour.";
const ANSWER_WITHIN: Duration = Duration::from_secs(300);
/// Most bytes of the answer read.
const ANSWER_CAP: usize = 1 << 20;
/// Log lines of the baseline kept in the report.
const LOG_TAIL_LINES: usize = 40;

/// What a passing canary saw.
#[derive(Debug, Clone)]
pub struct Passed {
    /// From container start to `/health` answering 200.
    pub healthy_after: Duration,
    /// The greedy answer, at most 200 characters.
    pub answer: String,
}

/// The machine cannot run the baseline.
#[derive(Debug, thiserror::Error)]
#[error(
    "this machine cannot run the baseline {image}: {detail}\n\
     --- the baseline's last log lines ---\n{log_tail}"
)]
pub struct Unfit {
    pub image: String,
    pub detail: String,
    pub log_tail: String,
}

/// Pulls, starts and questions the baseline; always removes its container.
pub async fn run(
    engine: &Engine,
    cfg: &PodConfig,
    baseline: &BaselineImage,
    model: &str,
    max_model_len: u64,
) -> Result<Passed, Unfit> {
    let unfit = |detail: String, log_tail: String| Unfit {
        image: baseline.image.clone(),
        detail,
        log_tail,
    };
    let (image, digest) = match (
        ImageRef::parse(&baseline.image),
        Digest::parse(&baseline.digest),
    ) {
        (Ok(i), Ok(d)) => (i, d),
        _ => return Err(unfit("unusable baseline reference".into(), String::new())),
    };
    let pinned = engine
        .pull(&image, &digest, &baseline_pull(&cfg.pull), &|_| {})
        .await
        .map_err(|e| unfit(format!("pulling it: {e}"), String::new()))?;
    wait_released(&cfg.sandbox.gpus, &cfg.gpu_probe)
        .await
        .map_err(|e| unfit(format!("the GPUs are busy: {e}"), String::new()))?;
    let labels = Labels {
        round: CANARY_LABEL.into(),
        submission: CANARY_LABEL.into(),
        role: CANARY_LABEL.into(),
        pod: cfg.pod_id.clone(),
    };
    let args = baseline_args(&baseline.args, max_model_len);
    let t = Instant::now();
    let running = engine
        .start(&pinned, &args, &labels, &cfg.sandbox)
        .await
        .map_err(|e| unfit(format!("starting it: {e}"), String::new()))?;
    let outcome = async {
        running
            .wait_healthy()
            .await
            .map_err(|e| format!("it never became healthy: {e}"))?;
        let healthy_after = t.elapsed();
        let answer = ask(&running.base_url(), model).await?;
        Ok::<_, String>(Passed {
            healthy_after,
            answer,
        })
    }
    .await;
    let logs = running.teardown().await.unwrap_or_default();
    match outcome {
        Ok(passed) => Ok(passed),
        Err(detail) => Err(unfit(detail, log_tail(&logs, LOG_TAIL_LINES))),
    }
}

/// One greedy chat completion, not streamed; its text, or what was wrong.
async fn ask(base_url: &str, model: &str) -> Result<String, String> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(ANSWER_WITHIN)
        .build()
        .map_err(|e| e.to_string())?;
    let mut body = serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": 8,
    });
    cacheon_harness::greedy(&mut body);
    let mut resp = http
        .post(format!("{base_url}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .map_err(|e| {
            format!(
                "the greedy request failed: {}",
                cacheon_harness::error_chain(&e)
            )
        })?;
    let status = resp.status();
    let mut bytes = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
    {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > ANSWER_CAP {
            return Err(format!("the answer is longer than {ANSWER_CAP} bytes"));
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    if !status.is_success() {
        return Err(format!(
            "the greedy request answered HTTP {status}: {}",
            text.chars().take(300).collect::<String>()
        ));
    }
    let answer: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("the answer is not JSON ({e})"))?;
    let content = answer
        .pointer("/choices/0/message/content")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    if content.is_empty() {
        return Err(format!(
            "the answer has no text: {}",
            text.chars().take(300).collect::<String>()
        ));
    }
    Ok(content.chars().take(200).collect())
}
