//! `/`: the overview: this validator, the king, submissions, open and recent rounds, the
//! king's history; every submission and round links to its own page.

use axum::extract::State;
use axum::response::Response;
use cacheon_core::confirm::{Comparison, ConfirmationRecord};
use cacheon_core::noise::Interval;
use cacheon_store::{KingEvent, RoundRow, RoundState, SubmissionFilter, SubmissionRow};

use super::{
    duration, escape_html, opt, outcome, page, round_link, round_state, score, td, td_digest,
    td_submission, utc,
};
use crate::api::{load_king, now_unix, KingView};
use crate::error::ApiError;
use crate::{HostSnapshot, Mode, StatusState};

const RECENT_SUBMISSIONS: u32 = 50;
const RECENT_ROUNDS: u32 = 5;
const RECENT_KING_EVENTS: u32 = 20;

pub(crate) async fn index(State(s): State<StatusState>) -> Result<Response, ApiError> {
    let snap = s.snapshot();
    let king = load_king(&s.store).await?;
    let counts = s.store.submission_counts().await?;
    let open = s.store.open_rounds().await?;
    let recent = s
        .store
        .submissions(&SubmissionFilter {
            limit: Some(RECENT_SUBMISSIONS),
            ..SubmissionFilter::default()
        })
        .await?;
    let history = s.store.king_history(RECENT_KING_EVENTS).await?;
    let mut closed = s.store.recent_rounds(RECENT_ROUNDS + 8).await?;
    closed.retain(|r| r.state != RoundState::Open);
    closed.truncate(RECENT_ROUNDS as usize);

    let mut h = String::with_capacity(16 * 1024);
    h.push_str(&format!(
        "<h1>Cacheon validator <small>{}</small></h1>",
        escape_html(&snap.version)
    ));
    host(&mut h, &snap);
    king_section(&mut h, king.as_ref());
    h.push_str("<h2>Submissions by state</h2><table><tr>");
    for c in &counts {
        h.push_str(&format!("<th>{}</th>", c.state.code()));
    }
    h.push_str("</tr><tr>");
    for c in &counts {
        h.push_str(&td(&c.count.to_string()));
    }
    h.push_str("</tr></table>");
    rounds_section(&mut h, &open, &snap);
    closed_section(&mut h, &closed);
    submissions_section(&mut h, &recent);
    history_section(&mut h, &history);
    h.push_str(
        "<p>JSON: <a href=\"/status\">/status</a> <a href=\"/king\">/king</a> \
         <a href=\"/king/history\">/king/history</a> <a href=\"/submissions\">/submissions</a> \
         <a href=\"/rounds\">/rounds</a> <a href=\"/metrics\">/metrics</a>. \
         Filter submissions with <code>?state=&amp;hotkey=&amp;uid=&amp;limit=</code>.</p>",
    );
    Ok(page(
        &format!("Cacheon validator, netuid {}", snap.netuid),
        Some(30),
        &h,
    ))
}

fn host(h: &mut String, snap: &HostSnapshot) {
    let banner = match snap.mode {
        Mode::Observe => "OBSERVE MODE: no wallet is loaded. This validator evaluates \
                          submissions and shows its results, but it submits no weights."
            .to_owned(),
        Mode::DryRun => "DRY RUN: weights are computed and logged, never submitted.".to_owned(),
        Mode::Active => format!(
            "ACTIVE: setting weights as {} (uid {}).",
            escape_html(snap.validator_hotkey.as_deref().unwrap_or("-")),
            opt(snap.validator_uid)
        ),
    };
    h.push_str(&format!(
        "<p class=\"banner {}\">{banner}</p><table>",
        snap.mode.code()
    ));
    let scan = snap.last_scan.as_ref().map(|r| {
        format!(
            "block {} at {}: {} commitments, {} new submissions{}",
            r.block,
            utc(r.at),
            r.commitments,
            r.new_submissions,
            r.error
                .as_ref()
                .map_or_else(String::new, |e| format!(", error: {e}"))
        )
    });
    let rows = [
        ("netuid", snap.netuid.to_string()),
        ("mode", snap.mode.code().to_owned()),
        ("validator hotkey", opt(snap.validator_hotkey.as_deref())),
        ("validator uid", opt(snap.validator_uid)),
        ("finalized block", opt(snap.chain_block)),
        ("last scan", opt(scan)),
        ("next weights block", opt(snap.next_weights_block)),
        ("started", utc(snap.started_at)),
    ];
    for (k, v) in rows {
        h.push_str(&format!("<tr><th>{k}</th>{}</tr>", td(&v)));
    }
    if let Some(e) = &snap.last_error {
        h.push_str(&format!(
            "<tr><th>last error</th><td class=\"err\">{}</td></tr>",
            escape_html(e)
        ));
    }
    h.push_str("</table>");
}

fn king_section(h: &mut String, king: Option<&KingView>) {
    h.push_str("<h2>King</h2>");
    let Some(k) = king else {
        h.push_str("<p>No king: all weight goes to the burn uid.</p>");
        return;
    };
    h.push_str("<table><tr><th>submission</th><th>uid</th><th>score</th><th>crowned at block</th><th>image</th><th>digest</th></tr><tr>");
    h.push_str(&td_submission(&k.king.submission_id));
    h.push_str(&td(&k.king.uid.to_string()));
    h.push_str(&td(&score(Some(k.king.score))));
    h.push_str(&td(&k.king.crowned_at_block.to_string()));
    h.push_str(&td(&opt(k.image.as_deref())));
    h.push_str(&td_digest(k.digest.as_deref()));
    h.push_str("</tr></table>");
    if let Some(f) = &k.fresh_scores {
        h.push_str(&format!(
            "<p>Fresh scores over its reign: {} round(s), mean {:.4}, sd {:.4}, range [{:.4}, \
             {:.4}].</p>",
            f.rounds, f.mean, f.sd, f.min, f.max
        ));
    }
}

fn rounds_section(h: &mut String, open: &[RoundRow], snap: &HostSnapshot) {
    h.push_str(&format!("<h2>Open rounds ({})</h2>", open.len()));
    if open.is_empty() {
        h.push_str("<p>None.</p>");
    }
    let now = now_unix();
    for r in open {
        let phase = snap
            .progress
            .get(&r.id)
            .and_then(|p| p.get("phase"))
            .and_then(|v| v.as_str())
            .unwrap_or("-");
        h.push_str(&format!(
            "<h3>{}</h3><p>Phase: <b>{}</b>, running for {}; seed block {}, opened {}, \
             deadline {}</p>",
            round_link(r.id),
            escape_html(phase),
            duration(now.saturating_sub(r.opened_at) as f64),
            r.seed_block,
            utc(r.opened_at),
            utc(r.deadline_at)
        ));
        super::round::contestants(h, r, snap);
    }
}

/// A score's 90 % interval, `[low, high]`.
fn interval(i: Option<Interval>) -> String {
    i.map_or_else(
        || "-".to_owned(),
        |i| format!("[{:.4}, {:.4}]", i.low, i.high),
    )
}

/// A lead over the king, `lead ± noise`.
fn lead_text(lead: f64, noise: Option<f64>) -> String {
    match noise {
        Some(n) => format!("{lead:+.4} ± {n:.4}"),
        None => format!("{lead:+.4} (noise unknown)"),
    }
}

/// One pass's lead over the king.
fn lead(c: &Comparison) -> String {
    lead_text(c.lead(), c.noise)
}

pub(super) fn confirmation(r: &ConfirmationRecord) -> String {
    let second = r
        .second
        .as_ref()
        .map_or_else(|| "not scored".to_owned(), lead);
    format!(
        "Confirmation pass: <b>{}</b> for {} against {} (lead {}, then {})",
        r.outcome.code(),
        escape_html(&r.challenger.to_string()),
        escape_html(&r.king.to_string()),
        escape_html(&lead(&r.first)),
        escape_html(&second),
    )
}

/// The last closed rounds: every contestant's score with its 90 % interval, a challenger's
/// lead over the king, and the confirmation pass when there was one.
fn closed_section(h: &mut String, rounds: &[RoundRow]) {
    h.push_str("<h2>Recent rounds</h2>");
    if rounds.is_empty() {
        h.push_str("<p>None closed yet.</p>");
    }
    for r in rounds {
        h.push_str(&format!(
            "<h3>{} <small>{}, closed {}</small></h3>",
            round_link(r.id),
            escape_html(&round_state(r)),
            r.closed_at.map_or_else(|| "-".to_owned(), utc)
        ));
        if let Some(c) = &r.confirmation {
            h.push_str(&format!("<p>{}</p>", confirmation(c)));
        }
        h.push_str("<table><tr><th>role</th><th>submission</th><th>outcome</th><th>score</th><th>90% interval</th><th>lead over king</th><th>confirmation score</th></tr>");
        for c in &r.contestants {
            h.push_str("<tr>");
            h.push_str(&td(c.role.code()));
            h.push_str(&td_submission(&c.submission_id));
            h.push_str(&td(&outcome(c)));
            h.push_str(&td(&score(c.score)));
            h.push_str(&td(&interval(c.noise.map(|n| n.score))));
            let lead = c.lead.map_or_else(
                || "-".to_owned(),
                |l| lead_text(l.lead, Some(l.interval.half_width())),
            );
            h.push_str(&td(&lead));
            h.push_str(&td(&score(c.confirm_score)));
            h.push_str("</tr>");
        }
        h.push_str("</table>");
    }
}

fn submissions_section(h: &mut String, subs: &[SubmissionRow]) {
    h.push_str(&format!(
        "<h2>Recent submissions</h2><p>The {RECENT_SUBMISSIONS} newest by commit block.</p>"
    ));
    h.push_str("<table><tr><th>submission</th><th>uid</th><th>image</th><th>state</th><th>reason</th><th>score</th><th>round</th><th>observed</th></tr>");
    for sub in subs {
        h.push_str("<tr>");
        h.push_str(&td_submission(&sub.id));
        h.push_str(&td(&opt(sub.uid)));
        h.push_str(&td(&opt(sub.image.as_deref())));
        h.push_str(&td(sub.state.code()));
        h.push_str(&td(&opt(sub.reason.as_deref())));
        h.push_str(&td(&score(sub.score)));
        h.push_str(&td(&opt(sub.round_id)));
        h.push_str(&td(&utc(sub.observed_at)));
        h.push_str("</tr>");
    }
    h.push_str("</table>");
}

fn history_section(h: &mut String, events: &[KingEvent]) {
    h.push_str("<h2>King history</h2><table><tr><th>at</th><th>event</th><th>submission</th><th>uid</th><th>score</th><th>block</th><th>round</th><th>cause</th></tr>");
    for e in events {
        h.push_str("<tr>");
        h.push_str(&td(&utc(e.at)));
        h.push_str(&td(&e.event));
        h.push_str(&td_submission(&e.submission_id));
        h.push_str(&td(&e.uid.to_string()));
        h.push_str(&td(&score(e.score)));
        h.push_str(&td(&e.block.to_string()));
        h.push_str(&td(&opt(e.round_id)));
        h.push_str(&td(&e.cause));
        h.push_str("</tr>");
    }
    h.push_str("</table>");
}
