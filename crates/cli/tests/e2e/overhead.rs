//! The validator's own overhead per contestant, read back from the pod's span-close log
//! events (`time.busy` + `time.idle` of each span): the contestant's whole turn minus what
//! the engine and the server spend — the image pull (registry transfer), container create
//! and start, start-up until healthy, the workload (model work), and stop/remove — leaving
//! the validator's own bookkeeping: S3 writes, progress, logs, scheduling.

use std::collections::BTreeMap;

/// `1.5ms`, `2.03s`, `870µs`, `12ns` as seconds.
fn seconds(text: &str) -> Option<f64> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (n, unit) = text.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "s" => n,
        "ms" => n / 1e3,
        "µs" | "us" => n / 1e6,
        "ns" => n / 1e9,
        _ => return None,
    })
}

/// Span wall times by (submission, span name), summed.
pub fn spans(lines: &[String]) -> BTreeMap<(String, String), f64> {
    let mut out = BTreeMap::new();
    for line in lines {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["message"] != "close" {
            continue;
        }
        let (Some(busy), Some(idle)) = (
            v["time.busy"].as_str().and_then(seconds),
            v["time.idle"].as_str().and_then(seconds),
        ) else {
            continue;
        };
        let name = v["span"]["name"].as_str().unwrap_or_default().to_string();
        // The submission is a field of the span itself or of an enclosing one.
        let submission = std::iter::once(&v["span"])
            .chain(v["spans"].as_array().into_iter().flatten().rev())
            .find_map(|s| s["submission"].as_str())
            .unwrap_or("-")
            .to_string();
        *out.entry((submission, name)).or_insert(0.0) += busy + idle;
    }
    out
}

/// Prints one row per contestant and returns the overheads (seconds).
pub fn print(title: &str, lines: &[String]) -> Vec<f64> {
    let spans = spans(lines);
    let get = |s: &str, n: &str| {
        spans
            .get(&(s.to_string(), n.to_string()))
            .copied()
            .unwrap_or(0.0)
    };
    let contestants: Vec<&String> = spans
        .keys()
        .filter(|(_, n)| n == "contestant")
        .map(|(s, _)| s)
        .collect();
    println!("\nvalidator overhead per contestant ({title}), from the pod's span-close events:");
    println!(
        "{:<60} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}  overhead",
        "contestant", "turn s", "pull s", "start s", "ready s", "model s", "stop s", "judge s"
    );
    let mut overheads = Vec::new();
    for s in contestants {
        let total = get(s, "contestant");
        let (pull, start, ready) = (get(s, "pull"), get(s, "start"), get(s, "startup"));
        let (work, stop) = (get(s, "workload"), get(s, "teardown"));
        let overhead = total - pull - start - ready - work - stop;
        println!(
            "{s:<60} {total:>7.3} {pull:>7.3} {start:>7.3} {ready:>7.3} {work:>7.3} {stop:>7.3} {:>7.3}  {:.3} s ({:.1} % of the turn)",
            get(s, "judge"),
            overhead,
            100.0 * overhead / total.max(1e-9)
        );
        overheads.push(overhead);
    }
    overheads
}

#[test]
fn durations_parse() {
    assert_eq!(seconds("2s"), Some(2.0));
    assert_eq!(seconds("1.5ms"), Some(0.0015));
    assert!(seconds("870µs").is_some_and(|s| (s - 0.00087).abs() < 1e-12));
    assert_eq!(seconds("ms"), None);
    assert_eq!(seconds("3h"), None);
}
