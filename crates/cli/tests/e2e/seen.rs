//! What miners and operators see after a real round: the verdict reports the pod wrote and
//! the host serves, and the host's `/metrics` linted by `promtool` and scraped by a real
//! Prometheus (Debian's, installed by scripts/test-services.sh).

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::world::World;

/// The cheater learns its pass fraction and which checks failed where; the fast miner sees
/// its TTFT and throughput next to the baseline's. Returns both reports.
pub async fn verdict_reports(w: &World, cheater: &str, fast: &str) -> (Value, Value) {
    let report = |sub: Value| {
        let rounds = sub["rounds"].as_array().cloned().unwrap_or_default();
        assert_eq!(rounds.len(), 1, "{sub}");
        assert!(rounds[0]["log"]
            .as_str()
            .unwrap()
            .ends_with(sub["id"].as_str().unwrap()));
        rounds[0]["report"].clone()
    };
    let cheat = report(w.get(&format!("/submissions/{cheater}")).await);
    let gate = &cheat["gate"];
    assert_eq!(gate["passed"], false, "{cheat}");
    let fraction = gate["pass_fraction"].as_f64().unwrap();
    assert!(
        fraction < gate["min_pass_fraction"].as_f64().unwrap(),
        "{cheat}"
    );
    let checks = gate["by_check"].as_object().unwrap();
    assert!(
        checks.contains_key("low_agreement") || checks.contains_key("off_reference"),
        "{cheat}"
    );
    let first = &gate["first_failures"][0];
    assert!(
        first["prompt"].as_str().is_some_and(|p| !p.is_empty()),
        "{cheat}"
    );
    assert!(
        first["expected"].is_string(),
        "the baseline's token: {cheat}"
    );
    assert!(first["got"].is_string(), "the cheater's token: {cheat}");
    assert_ne!(first["got"], first["expected"], "{cheat}");
    println!(
        "cheater: pass fraction {fraction:.3} (needs {}), {} of {} failed, by check {}, \
         first: prompt #{} {} at token {}: baseline {} / cheater {}",
        gate["min_pass_fraction"],
        gate["failed"],
        gate["requests"],
        gate["by_check"],
        first["prompt_index"],
        first["check"],
        first["position"],
        first["expected"],
        first["got"]
    );

    let fast = report(w.get(&format!("/submissions/{fast}")).await);
    let speed = &fast["speed"];
    let f = |v: &Value| v.as_f64().unwrap();
    assert!(
        f(&speed["contestant"]["ttft_s"]) < f(&speed["baseline"]["ttft_s"]),
        "{fast}"
    );
    assert!(
        f(&speed["contestant"]["tps"]) > f(&speed["baseline"]["tps"]),
        "{fast}"
    );
    assert!(f(&speed["ttft_improvement"]) > 0.0 && f(&speed["tps_improvement"]) > 0.0);
    assert_eq!(fast["gate"]["passed"], true, "{fast}");
    let t = &fast["timings"];
    assert!(
        f(&t["workload_s"]) > 0.0 && f(&t["total_s"]) >= f(&t["workload_s"]),
        "{fast}"
    );
    println!(
        "fast miner: TTFT {:.3} s vs baseline {:.3} s ({:+.1}%), throughput {:.1} vs {:.1} \
         tok/s ({:+.1}%), score {:.4}; pull {:.2} s, start {:.2} s, ready {:.2} s, workload \
         {:.2} s, teardown {:.2} s",
        f(&speed["contestant"]["ttft_s"]),
        f(&speed["baseline"]["ttft_s"]),
        f(&speed["ttft_improvement"]) * 100.0,
        f(&speed["contestant"]["tps"]),
        f(&speed["baseline"]["tps"]),
        f(&speed["tps_improvement"]) * 100.0,
        f(&speed["score"]),
        f(&t["pull_s"]),
        f(&t["start_s"]),
        f(&t["ready_s"]),
        f(&t["workload_s"]),
        f(&t["teardown_s"]),
    );
    (cheat, fast)
}

/// `promtool check metrics` passes on the host's exposition, and a real Prometheus that
/// scrapes the host sees the round-duration histogram of the `rounds` rounds closed.
pub async fn prometheus_scrapes(w: &World, rounds: u64) {
    for tool in ["prometheus", "promtool"] {
        assert!(
            Command::new(tool).arg("--version").output().is_ok(),
            "{tool} is missing: run scripts/test-services.sh (it installs Debian's prometheus)"
        );
    }
    let text = reqwest::get(format!("{}/metrics", w.status))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lint = run_with_stdin("promtool", &["check", "metrics"], &text);
    assert!(lint.0, "promtool check metrics:\n{}\n{text}", lint.1);
    println!(
        "promtool check metrics: ok ({} lines)",
        text.lines().count()
    );
    for series in [
        "cacheon_round_duration_seconds_bucket",
        "cacheon_contestant_workload_duration_seconds_bucket",
        "cacheon_contestant_gpu_seconds_bucket",
        "cacheon_disqualifications_total",
        "cacheon_last_completed_round_age_seconds",
    ] {
        assert!(text.contains(series), "{series} not exported:\n{text}");
    }

    let dir = tempfile::tempdir().unwrap();
    let target = w.status.trim_start_matches("http://");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: cacheon-host\n    \
             static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let check = Command::new("promtool")
        .args(["check", "config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let api = format!("http://127.0.0.1:{port}/api/v1/query");
    let query = |q: &'static str| {
        let api = api.clone();
        async move {
            let r = reqwest::Client::new()
                .get(&api)
                .query(&[("query", q)])
                .send()
                .await
                .ok()?;
            let v: Value = r.json().await.ok()?;
            let result = v["data"]["result"].as_array()?.clone();
            (!result.is_empty()).then_some(result)
        }
    };
    let count = crate::until(
        "Prometheus to scrape the round-duration histogram",
        Duration::from_secs(90),
        || async { query("cacheon_round_duration_seconds_count").await },
    )
    .await;
    let value = |r: &Value| -> f64 { r["value"][1].as_str().unwrap().parse().unwrap() };
    let completed: f64 = count
        .iter()
        .filter(|r| r["metric"]["outcome"] == "completed")
        .map(value)
        .sum();
    assert_eq!(completed, rounds as f64, "{count:?}");
    let up = query("up").await.unwrap();
    assert_eq!(value(&up[0]), 1.0, "{up:?}");
    for q in [
        "cacheon_round_duration_seconds_count",
        "cacheon_round_duration_seconds_sum",
        "histogram_quantile(0.5, sum by (le) (cacheon_round_duration_seconds_bucket))",
        "sum by (role) (cacheon_contestant_gpu_seconds_sum)",
        "cacheon_disqualifications_total",
        "cacheon_last_completed_round_age_seconds",
    ] {
        let result = query(q).await.unwrap_or_default();
        let shown: Vec<String> = result
            .iter()
            .map(|r| format!("{} = {}", r["metric"], r["value"][1]))
            .collect();
        println!("prometheus> {q}\n  {}", shown.join("\n  "));
    }
    dashboard_queries(&api, &text).await;
    let _ = prometheus.kill();
    let _ = prometheus.wait();
}

/// Every query of the shipped Grafana dashboard is valid PromQL to a real Prometheus and
/// names only metrics the host exports.
async fn dashboard_queries(api: &str, exposition: &str) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../grafana-dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    // Counters that only exist once their event happened (no void round in this test).
    let after_an_event = ["cacheon_rounds_void_total", "cacheon_rejections_total"];
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let v: Value = reqwest::Client::new()
                .get(api)
                .query(&[("query", expr)])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(v["status"], "success", "{}: {expr}: {v}", panel["title"]);
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("cacheon_"))
            {
                assert!(
                    exposition.contains(name) || after_an_event.contains(&name),
                    "{}: `{name}` is not a metric the host exports",
                    panel["title"]
                );
            }
            queries += 1;
        }
    }
    println!("grafana-dashboard.json: {queries} queries, all valid and on exported metrics");
}

fn run_with_stdin(tool: &str, args: &[&str], input: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
