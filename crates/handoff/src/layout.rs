//! The object layout of SPEC §5 under the bucket prefix, and the only place that builds
//! keys, so host and pod cannot disagree on one:
//!
//! ```text
//! rounds/{round}/job.json  lease.json  progress.json  baseline.json  done.json
//! rounds/{round}/results/{submission_id}.json
//! rounds/{round}/confirm/baseline.json  confirm/results/{submission_id}.json
//! rounds/{round}/logs/{label}.log
//! ```
//!
//! Submission ids and log labels come from miners' hotkeys and container names, so they are
//! escaped: every byte outside `[A-Za-z0-9:._-]` becomes `%XX`. A hostile id can then
//! neither leave its directory ('/' is escaped) nor collide with another id ('%' is escaped
//! too, so the mapping is one-to-one).

use crate::{Bucket, HandoffError};

const ROUNDS: &str = "rounds/";

/// `rounds/{round}/`
pub fn round_dir(round: i64) -> String {
    format!("{ROUNDS}{round}/")
}

/// The host's job description.
pub fn job(round: i64) -> String {
    format!("{}job.json", round_dir(round))
}

/// The pod's lease on the round.
pub fn lease(round: i64) -> String {
    format!("{}lease.json", round_dir(round))
}

/// The pod's progress report, for the status API.
pub fn progress(round: i64) -> String {
    format!("{}progress.json", round_dir(round))
}

/// One contestant's raw measurements, written once.
pub fn result(round: i64, submission_id: &str) -> String {
    format!("{}results/{}.json", round_dir(round), escape(submission_id))
}

/// The directory of the round's results (for listing them).
pub fn results_dir(round: i64) -> String {
    format!("{}results/", round_dir(round))
}

/// The baseline's reference timings.
pub fn baseline(round: i64) -> String {
    format!("{}baseline.json", round_dir(round))
}

/// One contestant's raw measurements in the round's confirmation pass.
pub fn confirm_result(round: i64, submission_id: &str) -> String {
    format!(
        "{}confirm/results/{}.json",
        round_dir(round),
        escape(submission_id)
    )
}

/// The baseline's run on the confirmation pass's prompts.
pub fn confirm_baseline(round: i64) -> String {
    format!("{}confirm/baseline.json", round_dir(round))
}

/// The round's verdicts; its presence means the round is finished.
pub fn done(round: i64) -> String {
    format!("{}done.json", round_dir(round))
}

/// A bounded log.
pub fn log(round: i64, label: &str) -> String {
    format!("{}logs/{}.log", round_dir(round), escape(label))
}

/// Percent-encodes every byte outside `[A-Za-z0-9:._-]` (UTF-8 bytes one by one).
/// An empty name becomes a lone `%`, which no other name escapes to (an escaped '%' is
/// always followed by two hex digits), so a key never ends in a bare `.json`.
pub fn escape(name: &str) -> String {
    if name.is_empty() {
        return "%".into();
    }
    let mut out = String::with_capacity(name.len());
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'_' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The round id of a `rounds/{round}/` directory, if it is one of ours: the id written
/// exactly as [`round_dir`] writes it (no sign, no leading zeros, no other junk).
fn parse_round_dir(dir: &str) -> Option<i64> {
    let id = dir.strip_prefix(ROUNDS)?.strip_suffix('/')?;
    let round: i64 = id.parse().ok()?;
    (round.to_string() == id).then_some(round)
}

impl Bucket {
    /// The rounds present under `rounds/`, ascending; anything else there is ignored.
    pub async fn round_ids(&self) -> Result<Vec<i64>, HandoffError> {
        let mut rounds: Vec<i64> = self
            .list_dirs(ROUNDS)
            .await?
            .iter()
            .filter_map(|dir| parse_round_dir(dir))
            .collect();
        rounds.sort_unstable();
        rounds.dedup();
        Ok(rounds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_spec_layout() {
        assert_eq!(round_dir(7), "rounds/7/");
        assert_eq!(job(7), "rounds/7/job.json");
        assert_eq!(lease(7), "rounds/7/lease.json");
        assert_eq!(progress(7), "rounds/7/progress.json");
        assert_eq!(baseline(7), "rounds/7/baseline.json");
        assert_eq!(done(7), "rounds/7/done.json");
        assert_eq!(results_dir(7), "rounds/7/results/");
        assert_eq!(
            result(7, "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY:123"),
            "rounds/7/results/5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY:123.json"
        );
        assert_eq!(log(7, "king-5Grw_1.x"), "rounds/7/logs/king-5Grw_1.x.log");
    }

    #[test]
    fn hostile_names_stay_in_their_directory() {
        assert_eq!(result(1, "../x"), "rounds/1/results/..%2Fx.json");
        assert_eq!(result(1, "a/b"), "rounds/1/results/a%2Fb.json");
        assert_eq!(log(1, "/etc/passwd"), "rounds/1/logs/%2Fetc%2Fpasswd.log");
        assert_eq!(log(1, "é ✓"), "rounds/1/logs/%C3%A9%20%E2%9C%93.log");
        assert_eq!(log(1, "a\nb\0"), "rounds/1/logs/a%0Ab%00.log");
        assert_eq!(result(1, ""), "rounds/1/results/%.json");
        for hostile in ["../x", "a/b", "x/../../y", "é/✓", "\\", "?a=b#c", "%2F"] {
            let key = result(1, hostile);
            let name = key.strip_prefix("rounds/1/results/").expect("in results/");
            assert!(!name.contains('/'), "{key}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b":._-%".contains(&b)),
                "{key}"
            );
        }
    }

    #[test]
    fn escaping_is_one_to_one() {
        // '%' itself is escaped, so an id that looks escaped cannot collide with one that
        // needed escaping.
        assert_ne!(escape("a/b"), escape("a%2Fb"));
        assert_eq!(escape("a%2Fb"), "a%252Fb");
        assert_ne!(escape(""), escape("\0"));
        assert_ne!(escape(""), escape("%"));
    }

    #[test]
    fn round_dirs_parse_strictly() {
        assert_eq!(parse_round_dir("rounds/42/"), Some(42));
        assert_eq!(parse_round_dir(&round_dir(i64::MAX)), Some(i64::MAX));
        for junk in [
            "rounds/042/",
            "rounds/+4/",
            "rounds/x/",
            "rounds//",
            "rounds/4",
            "other/4/",
            "rounds/4 /",
            "rounds/99999999999999999999/",
        ] {
            assert_eq!(parse_round_dir(junk), None, "{junk}");
        }
    }
}
