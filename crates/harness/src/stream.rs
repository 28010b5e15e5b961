//! One streamed chat completion, measured.
//!
//! The hot loop only reads events and stamps them with the monotonic clock; every JSON
//! parse happens after the stream has ended, so the harness's own work never delays the
//! stamp of the next event. The deadline covers the whole request; the stall timeout the
//! silence between two events; the byte cap everything the server sends.

use std::time::Duration;

use bytes::Bytes;
use cacheon_core::gate::StreamFault;
use cacheon_core::prompts::{ChatMessage, Phase};
use cacheon_core::tokens::StreamedToken;
use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::client::Target;
use crate::config::HarnessConfig;
use crate::wire::{Chunk, Usage};

/// One server-sent event as it arrived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawEvent {
    /// Nanoseconds from sending the request to the event's arrival.
    pub at_ns: u64,
    /// Size of the event's data field.
    pub bytes: u32,
    /// Generated text in this event.
    pub text: String,
    /// Logprob entries (the server's own token count) in this event.
    pub tokens: u32,
}

impl RawEvent {
    /// Carries generated text (vLLM's TTFT event). A logprob entry without text does not
    /// count: a server could otherwise send an empty entry at once and claim a tiny TTFT.
    pub fn has_token(&self) -> bool {
        !self.text.is_empty()
    }
}

/// Everything observed about one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamRecord {
    pub prompt_index: usize,
    pub phase: Phase,
    /// Nanoseconds from the start of the run to sending this request.
    pub sent_ns: u64,
    pub status: Option<u16>,
    /// Nanoseconds from sending to the response headers.
    pub headers_ns: Option<u64>,
    pub response_id: Option<String>,
    pub events: Vec<RawEvent>,
    pub text: String,
    /// `None` when the server sent text without any logprob entries.
    pub logprobs: Option<Vec<StreamedToken>>,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    pub done: bool,
    /// Size of all events' data fields.
    pub bytes: u64,
    pub fault: Option<StreamFault>,
    /// What exactly was wrong, for people.
    pub detail: Option<String>,
}

impl StreamRecord {
    fn new(prompt_index: usize, phase: Phase, sent_ns: u64) -> Self {
        Self {
            prompt_index,
            phase,
            sent_ns,
            status: None,
            headers_ns: None,
            response_id: None,
            events: Vec::new(),
            text: String::new(),
            logprobs: None,
            finish_reason: None,
            usage: None,
            done: false,
            bytes: 0,
            fault: None,
            detail: None,
        }
    }

    fn fail(&mut self, fault: StreamFault, detail: impl Into<String>) {
        if self.fault.is_none() {
            self.fault = Some(fault);
            self.detail = Some(detail.into());
        }
    }

    /// Arrival of the first event carrying a token, from sending.
    pub fn ttft_ns(&self) -> Option<u64> {
        self.events.iter().find(|e| e.has_token()).map(|e| e.at_ns)
    }

    /// Arrival of the last event carrying a token, from sending.
    pub fn last_token_ns(&self) -> Option<u64> {
        self.events
            .iter()
            .rev()
            .find(|e| e.has_token())
            .map(|e| e.at_ns)
    }
}

/// Why the transport stopped delivering bytes.
#[derive(Debug)]
enum Transport {
    Http(reqwest::Error),
    ByteCap,
    LineTooLong,
    InvalidUtf8,
}

/// How long to wait for the end of the body after `[DONE]` before letting it go.
const DRAIN_AFTER_DONE: Duration = Duration::from_secs(1);

/// Longest SSE line accepted; far above any honest chunk (a 256-token chunk with top-5
/// logprobs is tens of KiB). Checked on the raw bytes so a hostile line costs nothing to
/// refuse.
const MAX_LINE: usize = 1 << 20;

/// Checks the byte stream as it arrives: total size, line length, and UTF-8 (incrementally,
/// a character may be split across reads), so a hostile body is refused at once instead of
/// being buffered by the SSE parser.
struct Guard {
    cap: u64,
    total: u64,
    line: usize,
    /// Bytes of a character split across reads.
    pending: Vec<u8>,
}

impl Guard {
    fn check(&mut self, chunk: &[u8]) -> Result<(), Transport> {
        self.total += chunk.len() as u64;
        if self.total > self.cap {
            return Err(Transport::ByteCap);
        }
        match chunk.iter().rposition(|&b| b == b'\n') {
            Some(i) => self.line = chunk.len() - i - 1,
            None => self.line += chunk.len(),
        }
        if self.line > MAX_LINE {
            return Err(Transport::LineTooLong);
        }
        let joined;
        let bytes = if self.pending.is_empty() {
            chunk
        } else {
            joined = [self.pending.as_slice(), chunk].concat();
            &joined
        };
        match std::str::from_utf8(bytes) {
            Ok(_) => self.pending.clear(),
            // Cut short at the end: keep the start of the character for the next read.
            Err(e) if e.error_len().is_none() => {
                self.pending = bytes[e.valid_up_to()..].to_vec();
            }
            Err(_) => return Err(Transport::InvalidUtf8),
        }
        Ok(())
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Http(e) => f.write_str(&crate::error_chain(e)),
            Transport::ByteCap => f.write_str("byte cap exceeded"),
            Transport::LineTooLong => write!(f, "an SSE line longer than {MAX_LINE} bytes"),
            Transport::InvalidUtf8 => f.write_str("bytes that are not UTF-8"),
        }
    }
}

/// The request body of SPEC §7, serialised once per request before the clock starts.
pub(crate) fn request_body(cfg: &HarnessConfig, messages: &[ChatMessage]) -> Vec<u8> {
    let mut body = serde_json::json!({
        "model": cfg.model,
        "messages": messages,
        "stream": true,
        "max_tokens": cfg.max_tokens,
        "logprobs": true,
        "top_logprobs": cfg.top_logprobs,
        "stream_options": { "include_usage": true },
    });
    greedy(&mut body);
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Makes a request body greedy on any server: `temperature` 0 and every other sampling
/// field neutral. Stock vLLM applies the model's `generation_config.json` (Qwen2.5:
/// `repetition_penalty` 1.05, `top_k` 20, `top_p` 0.8) to every field a request leaves out,
/// even at temperature 0, so a server run with defaults would be judged on penalised output.
pub fn greedy(body: &mut serde_json::Value) {
    if let Some(map) = body.as_object_mut() {
        for (k, v) in [
            ("temperature", serde_json::json!(0)),
            ("top_p", serde_json::json!(1)),
            ("top_k", serde_json::json!(-1)),
            ("min_p", serde_json::json!(0)),
            ("repetition_penalty", serde_json::json!(1)),
            ("presence_penalty", serde_json::json!(0)),
            ("frequency_penalty", serde_json::json!(0)),
        ] {
            map.insert(k.to_string(), v);
        }
    }
}

/// Attempts after the first when a connection fails before any answer.
const SEND_RETRIES: u32 = 2;

/// Sends one request and records its stream. Never fails: every problem is a fault in
/// the record.
pub async fn stream_chat(
    target: &Target,
    cfg: &HarnessConfig,
    epoch: Instant,
    prompt_index: usize,
    phase: Phase,
    messages: &[ChatMessage],
) -> StreamRecord {
    let body = request_body(cfg, messages);
    let dispatched = Instant::now();
    // The request's own deadline, and never past the end of the run's budget.
    let deadline = (dispatched + cfg.request_deadline()).min(epoch + cfg.run_budget);
    // Until the body is written, the request has not left; times are fixed up below.
    let mut record = StreamRecord::new(prompt_index, phase, nanos(dispatched - epoch));
    if dispatched >= deadline {
        record.fail(
            StreamFault::DeadlineExceeded,
            "the run's time budget was spent before this request",
        );
        return record;
    }

    // Retries when a connection failed before any answer (a pooled connection the server
    // had closed, a refused connect while its listener was full): that is nobody's fault
    // and must not become one. A retry cannot change the figures: the clock keeps the
    // first attempt that reached the server, so a server that drops a request and answers
    // the repeat pays for the time in between.
    let mut attempt = 0;
    let mut first_sent: Option<Instant> = None;
    let (response, stamp) = loop {
        attempt += 1;
        let (stamped, stamp) = crate::send_stamp::StampedBody::new(body.clone());
        let request = target
            .client
            .post(target.url("/v1/chat/completions"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .body(reqwest::Body::wrap(stamped));
        match tokio::time::timeout_at(deadline, request.send()).await {
            Err(_) => {
                record.fail(
                    StreamFault::DeadlineExceeded,
                    "no response headers before the deadline",
                );
                return record;
            }
            Ok(Err(e)) if attempt <= SEND_RETRIES && (e.is_connect() || e.is_request()) => {
                if first_sent.is_none() {
                    first_sent = stamp.get().copied();
                }
                tracing::debug!("request {prompt_index} retried: {}", crate::error_chain(&e));
            }
            Ok(Err(e)) => {
                record.fail(StreamFault::Transport, crate::error_chain(&e));
                return record;
            }
            Ok(Ok(r)) => break (r, stamp),
        }
    };
    let headers_at = Instant::now();
    let sent = first_sent
        .or_else(|| stamp.get().copied())
        .unwrap_or(dispatched);
    record.sent_ns = nanos(sent.saturating_duration_since(epoch));
    let since = |t: Instant| nanos(t.saturating_duration_since(sent));
    record.headers_ns = Some(since(headers_at));
    let status = response.status();
    record.status = Some(status.as_u16());
    if status.is_redirection() {
        // Never followed (the client has no redirect policy): a redirect could point the
        // validator at anything on its network.
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .chars()
                    .take(200)
                    .collect::<String>()
            })
            .unwrap_or_default();
        record.fail(
            StreamFault::Redirected,
            format!("HTTP {status} to `{location}` (redirects are not followed)"),
        );
        return record;
    }
    if !status.is_success() {
        // At most the first 512 bytes of an error body, and only until the deadline: a
        // hostile server may send an endless one.
        let mut response = response;
        let mut head = Vec::new();
        while head.len() < 512 {
            match tokio::time::timeout_at(deadline, response.chunk()).await {
                Ok(Ok(Some(chunk))) => head.extend_from_slice(&chunk),
                _ => break,
            }
        }
        head.truncate(512);
        let snippet = String::from_utf8_lossy(&head).into_owned();
        record.fail(StreamFault::HttpStatus, format!("HTTP {status}: {snippet}"));
        return record;
    }

    // Raw data of each event, stamped on arrival; parsed after the stream ends.
    let mut arrived: Vec<(u64, String)> = Vec::with_capacity(cfg.max_tokens as usize + 8);
    let max_events = cfg.max_events();
    let cap = cfg.byte_cap;
    let mut guard = Guard {
        cap,
        total: 0,
        line: 0,
        pending: Vec::new(),
    };
    let counted = response
        .bytes_stream()
        .map(move |chunk: Result<Bytes, reqwest::Error>| {
            let chunk = chunk.map_err(Transport::Http)?;
            guard.check(&chunk)?;
            Ok(chunk)
        });
    let mut events = counted.eventsource();
    let mut last = headers_at;
    loop {
        // After [DONE] the body should end at once; give it a moment to, then let go.
        let patience = if record.done {
            DRAIN_AFTER_DONE
        } else {
            cfg.stall_timeout
        };
        let wake = deadline.min(last + patience);
        let next = tokio::time::timeout_at(wake, events.next()).await;
        if record.done && !matches!(next, Ok(Some(Ok(_)))) {
            break;
        }
        match next {
            Err(_) => {
                if Instant::now() >= deadline {
                    record.fail(
                        StreamFault::DeadlineExceeded,
                        format!("stream still open after {:?}", cfg.request_deadline()),
                    );
                } else {
                    record.fail(
                        StreamFault::Stalled,
                        format!("no event for {:?}", cfg.stall_timeout),
                    );
                }
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                let (fault, detail) = match e {
                    EventStreamError::Utf8(e) => (StreamFault::InvalidUtf8, e.to_string()),
                    EventStreamError::Parser(e) => (StreamFault::MalformedSse, e.to_string()),
                    EventStreamError::Transport(Transport::ByteCap) => (
                        StreamFault::ByteCapExceeded,
                        format!("more than {cap} bytes"),
                    ),
                    EventStreamError::Transport(t @ Transport::LineTooLong) => {
                        (StreamFault::ByteCapExceeded, t.to_string())
                    }
                    EventStreamError::Transport(t @ Transport::InvalidUtf8) => {
                        (StreamFault::InvalidUtf8, t.to_string())
                    }
                    EventStreamError::Transport(t) => (StreamFault::Transport, t.to_string()),
                };
                record.fail(fault, detail);
                break;
            }
            Ok(Some(Ok(event))) => {
                let now = Instant::now();
                last = now;
                if record.done {
                    // Anything after [DONE] is ignored, but the body is read to its end so the
                    // connection goes back to the pool.
                    continue;
                }
                if event.data == "[DONE]" {
                    record.done = true;
                }
                arrived.push((since(now), event.data));
                // Every event is kept until the stream ends: a valid stream of many tiny
                // events under the byte cap would otherwise fill memory and the result.
                if arrived.len() > max_events {
                    record.fail(
                        StreamFault::TooManyEvents,
                        format!("more than {max_events} events"),
                    );
                    break;
                }
            }
        }
    }
    record.bytes = arrived.iter().map(|(_, d)| d.len() as u64).sum();
    interpret(&mut record, arrived);
    record
}

/// Turns the raw event data into text, logprobs, finish reason and usage, and names the
/// first thing wrong with the stream.
fn interpret(record: &mut StreamRecord, arrived: Vec<(u64, String)>) {
    let mut logprobs = Vec::new();
    let any_data = !arrived.is_empty();
    for (at_ns, data) in arrived {
        let mut event = RawEvent {
            at_ns,
            bytes: u32::try_from(data.len()).unwrap_or(u32::MAX),
            text: String::new(),
            tokens: 0,
        };
        if data == "[DONE]" {
            record.events.push(event);
            continue;
        }
        match serde_json::from_str::<Chunk>(&data) {
            Err(e) => {
                record.fail(StreamFault::InvalidJson, format!("{e}: {}", clip(&data)));
            }
            Ok(chunk) => {
                if chunk.error.is_some() || chunk.object.as_deref() == Some("error") {
                    let message = chunk
                        .error
                        .as_ref()
                        .and_then(|e| e.get("message"))
                        .and_then(|m| m.as_str())
                        .or(chunk.message.as_deref())
                        .unwrap_or("(no message)");
                    record.fail(StreamFault::ErrorEvent, format!("server error: {message}"));
                }
                if record.response_id.is_none() {
                    record.response_id = chunk.id;
                }
                if chunk.usage.is_some() {
                    record.usage = chunk.usage;
                }
                for choice in chunk.choices {
                    if choice.index != 0 {
                        record.fail(
                            StreamFault::InvalidJson,
                            format!("unexpected choice index {}", choice.index),
                        );
                        continue;
                    }
                    if let Some(text) = choice.delta.and_then(|d| d.content) {
                        event.text.push_str(&text);
                    }
                    if let Some(entries) = choice.logprobs.and_then(|l| l.content) {
                        event.tokens += entries.len() as u32;
                        logprobs.extend(entries.into_iter().map(|t| StreamedToken {
                            token: t.token,
                            bytes: t.bytes,
                            logprob: t.logprob,
                        }));
                    }
                    if let Some(reason) = choice.finish_reason {
                        record.finish_reason = Some(reason);
                    }
                }
            }
        }
        record.text.push_str(&event.text);
        record.events.push(event);
    }
    record.logprobs = (!logprobs.is_empty() || record.text.is_empty()).then_some(logprobs);
    if !any_data {
        record.fail(
            StreamFault::MalformedSse,
            "the body held no server-sent data events",
        );
    }
    if record.finish_reason.is_none() {
        record.fail(
            StreamFault::MissingFinishReason,
            "no chunk carried a finish_reason",
        );
    }
    if !record.done {
        record.fail(
            StreamFault::MissingDone,
            "the stream ended without data: [DONE]",
        );
    }
}

fn clip(s: &str) -> &str {
    let mut end = s.len().min(120);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(cap: u64) -> Guard {
        Guard {
            cap,
            total: 0,
            line: 0,
            pending: Vec::new(),
        }
    }

    #[test]
    fn a_character_split_across_reads_is_fine_and_a_bad_byte_is_not() {
        let text = "data: {\"content\":\"日本語\"}\n\n".as_bytes();
        for cut in 1..text.len() {
            let mut g = guard(1 << 20);
            g.check(&text[..cut]).unwrap();
            g.check(&text[cut..]).unwrap();
            assert!(g.pending.is_empty(), "cut at {cut}");
        }
        let mut g = guard(1 << 20);
        assert!(matches!(
            g.check(b"data: \xff\n"),
            Err(Transport::InvalidUtf8)
        ));
    }

    #[test]
    fn caps_on_total_bytes_and_line_length() {
        let mut g = guard(10);
        g.check(b"0123456789").unwrap();
        assert!(matches!(g.check(b"x"), Err(Transport::ByteCap)));
        let mut g = guard(u64::MAX);
        let line = vec![b'a'; MAX_LINE / 2];
        g.check(&line).unwrap();
        g.check(b"\n").unwrap();
        g.check(&line).unwrap();
        g.check(&line).unwrap(); // exactly MAX_LINE
        assert!(matches!(g.check(b"b"), Err(Transport::LineTooLong)));
    }
}
