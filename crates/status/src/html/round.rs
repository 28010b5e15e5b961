//! `/rounds/{id}` as a page: while the round runs, its phase, every contestant's status as
//! the pod reports it and the time elapsed (the page refreshes itself); once closed, every
//! contestant's verdict in one row (score, speed next to the baseline's, gate) with links
//! to its submission page and container log.

use axum::response::Response;
use cacheon_store::{RoundRow, RoundState};

use super::report::{pass_fraction, tps_vs, ttft_vs};
use super::{
    duration, escape_html, link, log_href, outcome, page, round_state, score, td, td_submission,
    utc,
};
use crate::api::now_unix;
use crate::HostSnapshot;

/// How often an open round's page reloads itself, in seconds.
const LIVE_REFRESH: u32 = 5;

pub(crate) fn round_page(r: &RoundRow, snap: &HostSnapshot) -> Response {
    let now = now_unix();
    let mut h = String::with_capacity(8 * 1024);
    h.push_str(&format!(
        "<nav>{}</nav><h1>Round {}</h1>",
        link("/", "← overview"),
        r.id
    ));
    summary(&mut h, r, snap, now);
    contestants(&mut h, r, snap);
    if let Some(c) = &r.confirmation {
        h.push_str(&format!("<p>{}</p>", super::overview::confirmation(c)));
    }
    if r.state != RoundState::Open {
        h.push_str(&format!(
            "<p>The baseline's {}.</p>",
            link(&log_href(r.id, "baseline"), "container log")
        ));
    }
    let refresh = (r.state == RoundState::Open).then_some(LIVE_REFRESH);
    page(&format!("Round {}", r.id), refresh, &h)
}

fn summary(h: &mut String, r: &RoundRow, snap: &HostSnapshot, now: i64) {
    let phase = snap
        .progress
        .get(&r.id)
        .and_then(|p| p.get("phase"))
        .and_then(|v| v.as_str());
    h.push_str("<table>");
    let mut row = |k: &str, v: String| {
        h.push_str(&format!("<tr><th>{k}</th>{}</tr>", td(&v)));
    };
    row("state", round_state(r));
    if r.state == RoundState::Open {
        row(
            "phase",
            phase.map_or_else(|| "no progress reported yet".to_owned(), str::to_owned),
        );
        row("elapsed", duration(now.saturating_sub(r.opened_at) as f64));
        row("deadline", utc(r.deadline_at));
    }
    row("seed block", r.seed_block.to_string());
    row("opened", utc(r.opened_at));
    if let Some(closed) = r.closed_at {
        row("closed", utc(closed));
        row("took", duration(closed.saturating_sub(r.opened_at) as f64));
    }
    let baseline = r
        .contestants
        .iter()
        .find_map(|c| c.report.as_ref()?.speed)
        .map(|s| {
            format!(
                "median TTFT {:.3} s, throughput {:.1} tok/s",
                s.baseline.ttft_s, s.baseline.tps
            )
        });
    if let Some(b) = baseline {
        row("baseline", b);
    }
    h.push_str("</table>");
    if r.state == RoundState::Open {
        h.push_str(&format!(
            "<p>Phase: <b>{}</b>. This page reloads every {LIVE_REFRESH} s.</p>",
            escape_html(phase.unwrap_or("-"))
        ));
    }
}

/// What the pod last said of `submission` (`waiting`, `measuring`, `failed: …`).
fn live_status(snap: &HostSnapshot, round: i64, submission: &str) -> Option<String> {
    let p = snap.progress.get(&round)?;
    let c = p
        .get("contestants")?
        .as_array()?
        .iter()
        .find(|c| c.get("submission_id").and_then(|s| s.as_str()) == Some(submission))?;
    let status = c.get("status")?;
    // `ContestantStatus` is internally tagged: {"status": "failed", "reason": "..."}.
    let word = status
        .get("status")
        .and_then(|s| s.as_str())
        .or_else(|| status.as_str())?;
    Some(match status.get("reason").and_then(|r| r.as_str()) {
        Some(reason) => format!("{word}: {reason}"),
        None => word.to_owned(),
    })
}

/// One row per contestant: live status while open, the verdict once closed.
pub(super) fn contestants(h: &mut String, r: &RoundRow, snap: &HostSnapshot) {
    let open = r.state == RoundState::Open;
    h.push_str("<table><tr><th>#</th><th>role</th><th>submission</th>");
    if open {
        h.push_str("<th>status now</th>");
    } else {
        h.push_str(
            "<th>outcome</th><th>score</th><th>TTFT</th><th>throughput</th><th>gate pass</th>",
        );
    }
    h.push_str("<th>log</th></tr>");
    for c in &r.contestants {
        h.push_str("<tr>");
        h.push_str(&td(&c.position.to_string()));
        h.push_str(&td(c.role.code()));
        h.push_str(&td_submission(&c.submission_id));
        if open {
            h.push_str(&td(
                &live_status(snap, r.id, &c.submission_id).unwrap_or_else(|| "-".to_owned())
            ));
        } else {
            h.push_str(&td(&outcome(c)));
            h.push_str(&td(&score(c.score)));
            let speed = c.report.as_ref().and_then(|r| r.speed);
            h.push_str(&td(&speed.as_ref().map_or_else(|| "-".to_owned(), ttft_vs)));
            h.push_str(&td(&speed.as_ref().map_or_else(|| "-".to_owned(), tps_vs)));
            let gate = c.report.as_ref().and_then(|r| r.gate.as_ref());
            h.push_str(&td(&gate.map_or_else(|| "-".to_owned(), pass_fraction)));
        }
        h.push_str(&format!(
            "<td>{}</td></tr>",
            link(&log_href(r.id, &c.submission_id), "log")
        ));
    }
    h.push_str("</table>");
}
