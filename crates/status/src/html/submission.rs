//! `/submissions/{id}` as a page: what the chain held, where the submission stands, and its
//! verdict in every round it ran in, explained (`report`).

use axum::response::Response;
use cacheon_store::{RoundRow, RoundState, SubmissionRow};

use super::{escape_html, link, opt, page, report, round_link, score, td, td_digest, utc};

pub(crate) fn submission_page(s: &SubmissionRow, rounds: &[RoundRow]) -> Response {
    let mut h = String::with_capacity(8 * 1024);
    h.push_str(&format!(
        "<nav>{}</nav><h1>Submission <small>{}</small></h1>",
        link("/", "← overview"),
        escape_html(&s.id)
    ));
    h.push_str("<table>");
    let rows = [
        ("hotkey", s.hotkey.clone()),
        ("uid", opt(s.uid)),
        ("commit block", s.commit_block.to_string()),
        ("image", opt(s.image.as_deref())),
    ];
    for (k, v) in rows {
        h.push_str(&format!("<tr><th>{k}</th>{}</tr>", td(&v)));
    }
    h.push_str(&format!(
        "<tr><th>digest</th>{}</tr>",
        td_digest(s.digest.as_deref())
    ));
    let rows = [
        ("state", s.state.code().to_owned()),
        ("reason", opt(s.reason.as_deref())),
        ("latest score", score(s.score)),
        ("rounds voided on our side", s.infra_attempts.to_string()),
        ("observed", utc(s.observed_at)),
        ("updated", utc(s.updated_at)),
    ];
    for (k, v) in rows {
        h.push_str(&format!("<tr><th>{k}</th>{}</tr>", td(&v)));
    }
    h.push_str("</table>");
    if rounds.is_empty() {
        h.push_str("<p>Not measured in any round yet.</p>");
    }
    for r in rounds {
        let Some(c) = r.contestants.iter().find(|c| c.submission_id == s.id) else {
            continue;
        };
        let state = match r.state {
            RoundState::Open => "running".to_owned(),
            RoundState::Void => {
                let reason = opt(r.void_reason.as_deref());
                match r.void_cause.as_deref() {
                    Some(cause) if cause == s.id => {
                        format!("void ({reason}) during this submission's turn: charged an attempt")
                    }
                    Some(_) => format!("void ({reason}) during another's turn: charged nothing"),
                    None => format!("void ({reason}): a validator-side failure"),
                }
            }
            RoundState::Completed => "completed".to_owned(),
        };
        h.push_str(&format!(
            "<h2>{} <small>{}</small></h2>",
            round_link(r.id),
            escape_html(&state)
        ));
        match r.state {
            RoundState::Open => {
                h.push_str("<p>The verdict appears here once the round closes.</p>");
            }
            RoundState::Void => h.push_str(
                "<p>The round could not be completed on the validator's side; the \
                 submission goes back in the queue.</p>",
            ),
            RoundState::Completed => report::verdict(&mut h, r, c),
        }
    }
    page(&format!("Submission {}", s.id), None, &h)
}
