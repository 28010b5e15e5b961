//! The pages people read: the overview (`/`), a submission (`/submissions/{id}`) and a
//! round (`/rounds/{id}`, live while it runs). The two detail paths also answer JSON; a
//! request whose `Accept` asks for `text/html` (what a browser sends) gets the page.
//!
//! Plain HTML, no scripts, no external assets, one small inline style; tables wrap long
//! values (hotkeys, images, digests) so every page fits a 1280 px screen. Every dynamic
//! value goes through [`escape_html`] (cells through [`td`]); the response also carries a
//! Content-Security-Policy that forbids scripts, so a miner's text cannot become markup even
//! if a value slipped through.

mod overview;
mod report;
mod round;
mod submission;

use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use cacheon_store::{ContestantRow, RoundRow, RoundState};

pub(crate) use overview::index;
pub(crate) use round::round_page;
pub(crate) use submission::submission_page;

const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";
const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;\
max-width:1200px}table{border-collapse:collapse;margin:.5em 0 1.5em;max-width:100%}\
td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top;\
overflow-wrap:anywhere}th{background:#f3f3f3;overflow-wrap:normal}td.n{text-align:right;white-space:nowrap}\
code,pre{font-size:12px}pre{background:#f7f7f7;padding:.5em;max-height:20em;overflow:auto;\
white-space:pre-wrap;overflow-wrap:anywhere}.banner{padding:.6em 1em;font-weight:bold;\
border-radius:4px}.observe{background:#fff3cd}.dry_run{background:#d9ecff}\
.active{background:#d4edda}.err{color:#a00}.ok{color:#070}.bad{color:#a00;font-weight:bold}\
nav{margin-bottom:1em}";

/// Whether the client asked for a page rather than JSON.
pub(crate) fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

/// A whole page: `title` (escaped here), an optional refresh in seconds, and `body`
/// (already safe HTML).
pub(crate) fn page(title: &str, refresh: Option<u32>, body: &str) -> Response {
    let mut h = String::with_capacity(body.len() + 2048);
    h.push_str("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    if let Some(s) = refresh {
        h.push_str(&format!("<meta http-equiv=\"refresh\" content=\"{s}\">"));
    }
    h.push_str(&format!(
        "<title>{}</title><style>{STYLE}</style></head><body>",
        escape_html(title)
    ));
    h.push_str(body);
    h.push_str(&format!(
        "<p><small>Rendered {}.</small></p></body></html>",
        utc(crate::api::now_unix())
    ));
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
            (header::VARY, "Accept"),
        ],
        h,
    )
        .into_response()
}

/// Escapes the five characters that matter in HTML text and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One table cell with escaped content.
fn td(s: &str) -> String {
    format!("<td>{}</td>", escape_html(s))
}

/// A right-aligned number cell.
fn td_n(s: &str) -> String {
    format!("<td class=\"n\">{}</td>", escape_html(s))
}

/// A link with escaped target and text; `href` is always one of our own paths.
fn link(href: &str, text: &str) -> String {
    format!(
        "<a href=\"{}\">{}</a>",
        escape_html(href),
        escape_html(text)
    )
}

/// A cell linking to a submission's page.
fn td_submission(id: &str) -> String {
    format!("<td>{}</td>", link(&submission_href(id), id))
}

fn submission_href(id: &str) -> String {
    // Ids are `{ss58}:{block}`: letters, digits and one colon, all safe in a path.
    format!("/submissions/{id}")
}

fn log_href(round: i64, label: &str) -> String {
    crate::api::log_path(round, label)
}

/// `Round 7`, linked to its page.
fn round_link(id: i64) -> String {
    link(&format!("/rounds/{id}"), &format!("Round {id}"))
}

/// A round's state, a void one with its reason.
fn round_state(r: &RoundRow) -> String {
    match r.state {
        RoundState::Void => match &r.void_cause {
            Some(cause) => format!(
                "void ({}, during the turn of {cause})",
                opt(r.void_reason.as_deref())
            ),
            None => format!("void ({})", opt(r.void_reason.as_deref())),
        },
        other => other.code().to_owned(),
    }
}

/// A contestant's outcome, with its reason when it has one (`disqualified: gate_failed`).
fn outcome(c: &ContestantRow) -> String {
    match (&c.outcome, &c.reason) {
        (Some(o), Some(reason)) => format!("{o}: {reason}"),
        (o, _) => opt(o.as_deref()),
    }
}

/// A digest as `sha256:0123456789ab…`, the whole value in the tooltip.
fn td_digest(digest: Option<&str>) -> String {
    match digest {
        None => td("-"),
        Some(d) => {
            let short = cacheon_core::report::quote(d, 19);
            format!(
                "<td title=\"{}\"><code>{}</code></td>",
                escape_html(d),
                escape_html(&short)
            )
        }
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn score(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.4}"))
}

/// A duration in seconds as `1h 02m`, `3m 05s` or `4.2 s`.
fn duration(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "-".to_owned();
    }
    if s < 60.0 {
        return format!("{s:.1} s");
    }
    let whole = s.round() as u64;
    if whole < 3600 {
        format!("{}m {:02}s", whole / 60, whole % 60)
    } else {
        format!("{}h {:02}m", whole / 3600, whole / 60 % 60)
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC` (proleptic Gregorian, days-from-civil
/// inverted as in Howard Hinnant's `civil_from_days`).
fn utc(ts: i64) -> String {
    let (days, secs) = (ts.div_euclid(86_400), ts.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_a_hostile_string() {
        let hostile = r#"<script>alert("x&y")</script><img src=x onerror='1'>"#;
        let out = escape_html(hostile);
        assert_eq!(
            out,
            "&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt;\
             &lt;img src=x onerror=&#39;1&#39;&gt;"
        );
        for c in ['<', '>', '"', '\''] {
            assert!(!out.contains(c), "{c} survived");
        }
        assert_eq!(escape_html("plain ss58 5Grw…"), "plain ss58 5Grw…");
        assert_eq!(td("<b>"), "<td>&lt;b&gt;</td>");
        assert_eq!(
            link("/x?a=\"", "<y>"),
            "<a href=\"/x?a=&quot;\">&lt;y&gt;</a>"
        );
    }

    #[test]
    fn formats_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(-1), "1969-12-31 23:59:59 UTC");
        // Absurd values format without overflow.
        let _ = utc(i64::MAX);
        let _ = utc(i64::MIN);
    }

    #[test]
    fn formats_durations() {
        assert_eq!(duration(4.24), "4.2 s");
        assert_eq!(duration(185.0), "3m 05s");
        assert_eq!(duration(3720.0), "1h 02m");
        assert_eq!(duration(f64::NAN), "-");
        assert_eq!(duration(-1.0), "-");
    }

    #[test]
    fn browsers_get_pages_and_tools_get_json() {
        let mut h = HeaderMap::new();
        assert!(!wants_html(&h));
        h.insert(header::ACCEPT, "*/*".parse().unwrap());
        assert!(!wants_html(&h));
        h.insert(
            header::ACCEPT,
            "text/html,application/xhtml+xml,*/*;q=0.8".parse().unwrap(),
        );
        assert!(wants_html(&h));
    }
}
