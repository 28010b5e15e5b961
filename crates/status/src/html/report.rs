//! A verdict explained (`cacheon_core::report`), as the submission page shows it: speed
//! next to the baseline's with the score's arithmetic, the gate's findings, stream faults,
//! timings and the container log. Also the compact cells the round tables use.

use cacheon_core::report::{ContestantReport, GateReport, SpeedReport, Timings};
use cacheon_store::{ContestantRow, RoundRow};

use super::{duration, escape_html, link, log_href, opt, outcome, score, td, td_n};

/// `0.041 s vs 0.100 s`: the contestant's median TTFT next to the baseline's.
pub(super) fn ttft_vs(s: &SpeedReport) -> String {
    format!("{:.3} s vs {:.3} s", s.contestant.ttft_s, s.baseline.ttft_s)
}

/// `812 vs 400 tok/s`.
pub(super) fn tps_vs(s: &SpeedReport) -> String {
    format!("{:.0} vs {:.0} tok/s", s.contestant.tps, s.baseline.tps)
}

/// `0.250 (needs 0.950)`.
pub(super) fn pass_fraction(g: &GateReport) -> String {
    format!("{:.3} (needs {:.3})", g.pass_fraction, g.min_pass_fraction)
}

fn percent(x: f64) -> String {
    format!("{:+.2}%", x * 100.0)
}

/// One contestant's verdict in `round`, in full.
pub(super) fn verdict(h: &mut String, round: &RoundRow, c: &ContestantRow) {
    h.push_str(&format!(
        "<p>Role <b>{}</b>, outcome <b>{}</b>, score <b>{}</b>",
        c.role.code(),
        escape_html(&outcome(c)),
        score(c.score)
    ));
    if let Some(n) = &c.noise {
        h.push_str(&format!(
            " (90% interval [{:.4}, {:.4}])",
            n.score.low, n.score.high
        ));
    }
    if let Some(l) = &c.lead {
        h.push_str(&format!(
            "; lead over the king {:+.4} ± {:.4}",
            l.lead,
            l.interval.half_width()
        ));
    }
    if let Some(s) = c.confirm_score {
        h.push_str(&format!("; confirmation pass score {s:.4}"));
    }
    h.push_str(".</p>");
    let Some(r) = &c.report else {
        h.push_str("<p>No report for this round (the pod wrote none).</p>");
        logs(h, round, c);
        return;
    };
    speed(h, r);
    gate(h, r);
    faults(h, r);
    timings(h, &r.timings);
    logs(h, round, c);
}

fn speed(h: &mut String, r: &ContestantReport) {
    h.push_str("<h4>Speed against the baseline</h4>");
    let Some(s) = &r.speed else {
        h.push_str(if r.gate.is_some() {
            "<p>No figures: the median TTFT or the throughput is undefined for this run \
             (too few of its requests produced tokens that count).</p>"
        } else {
            "<p>Not measured: the run ended before the workload finished.</p>"
        });
        return;
    };
    h.push_str(
        "<table><tr><th></th><th>yours</th><th>baseline</th><th>improvement</th></tr><tr>\
         <th>median TTFT</th>",
    );
    h.push_str(&td_n(&format!("{:.3} s", s.contestant.ttft_s)));
    h.push_str(&td_n(&format!("{:.3} s", s.baseline.ttft_s)));
    h.push_str(&td_n(&percent(s.ttft_improvement)));
    h.push_str("</tr><tr><th>throughput</th>");
    h.push_str(&td_n(&format!("{:.1} tok/s", s.contestant.tps)));
    h.push_str(&td_n(&format!("{:.1} tok/s", s.baseline.tps)));
    h.push_str(&td_n(&percent(s.tps_improvement)));
    h.push_str("</tr></table>");
    h.push_str(&format!("<p>Score = {}</p>", escape_html(&s.arithmetic())));
}

fn gate(h: &mut String, r: &ContestantReport) {
    h.push_str("<h4>Correctness gate</h4>");
    let Some(g) = &r.gate else {
        h.push_str("<p>Not judged: the run ended before the gate could look at it.</p>");
        return;
    };
    let (class, word) = if g.passed {
        ("ok", "passed")
    } else {
        ("bad", "failed")
    };
    h.push_str(&format!(
        "<p><span class=\"{class}\">{word}</span>: pass fraction {}; {} of {} scored requests \
         failed.</p>",
        escape_html(&pass_fraction(g)),
        g.failed,
        g.requests
    ));
    if g.by_check.is_empty() {
        return;
    }
    h.push_str("<table><tr><th>check</th><th>requests that failed it</th></tr>");
    for (check, n) in &g.by_check {
        h.push_str(&format!("<tr>{}{}</tr>", td(check), td_n(&n.to_string())));
    }
    h.push_str("</table>");
    h.push_str(&format!(
        "<p>The first {} failed request(s):</p><table><tr><th>prompt</th><th>check</th>\
         <th>what it measured</th><th>token</th><th>baseline wrote</th><th>you wrote</th></tr>",
        g.first_failures.len()
    ));
    for f in &g.first_failures {
        h.push_str(&format!(
            "<tr><td>#{} <small>{}</small></td>",
            f.prompt_index,
            escape_html(&f.prompt)
        ));
        h.push_str(&td(&f.check));
        h.push_str(&td(&f.detail));
        h.push_str(&td_n(&opt(f.position)));
        let expected = match (&f.context, &f.expected) {
            (Some(ctx), Some(tok)) => format!(
                "<small>{}</small><b>{}</b>",
                escape_html(ctx),
                escape_html(&format!("{tok:?}"))
            ),
            (None, Some(tok)) => format!("<b>{}</b>", escape_html(&format!("{tok:?}"))),
            _ => "-".to_owned(),
        };
        h.push_str(&format!("<td>{expected}</td>"));
        h.push_str(&td(&f
            .got
            .as_ref()
            .map_or_else(|| "-".to_owned(), |t| format!("{t:?}"))));
        h.push_str("</tr>");
    }
    h.push_str("</table>");
}

fn faults(h: &mut String, r: &ContestantReport) {
    if r.stream_faults.is_empty() && r.stopped_early.is_none() {
        return;
    }
    h.push_str("<h4>Stream faults</h4>");
    if let Some(s) = &r.stopped_early {
        h.push_str(&format!(
            "<p class=\"err\">The workload stopped early: {}</p>",
            escape_html(s)
        ));
    }
    if !r.stream_faults.is_empty() {
        h.push_str("<table><tr><th>fault</th><th>requests</th></tr>");
        for (fault, n) in &r.stream_faults {
            let code = serde_json::to_value(fault)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            h.push_str(&format!("<tr>{}{}</tr>", td(&code), td_n(&n.to_string())));
        }
        h.push_str("</table>");
    }
}

fn timings(h: &mut String, t: &Timings) {
    h.push_str(
        "<h4>Timings</h4><table><tr><th>pull</th><th>start</th><th>ready</th><th>workload</th>\
         <th>teardown</th><th>whole turn</th><th>GPU time</th></tr><tr>",
    );
    for s in [
        t.pull_s,
        t.start_s,
        t.ready_s,
        t.workload_s,
        t.teardown_s,
        t.total_s,
    ] {
        h.push_str(&td_n(&duration(s)));
    }
    h.push_str(&td_n(&format!(
        "{:.0} GPU-s ({} GPU(s))",
        t.gpu_seconds, t.gpus
    )));
    h.push_str("</tr></table>");
}

fn logs(h: &mut String, round: &RoundRow, c: &ContestantRow) {
    let mut links = vec![link(&log_href(round.id, &c.submission_id), "container log")];
    let confirmed = round.confirmation.as_ref().is_some_and(|p| {
        p.king.to_string() == c.submission_id || p.challenger.to_string() == c.submission_id
    });
    if confirmed {
        let label = format!("confirm.{}", c.submission_id);
        links.push(link(
            &log_href(round.id, &label),
            "container log of the confirmation pass",
        ));
    }
    h.push_str(&format!("<p>{}</p>", links.join(" · ")));
}
