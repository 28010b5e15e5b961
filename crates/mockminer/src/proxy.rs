//! A cheating front for a real server: what a miner who reads our code would put in front of
//! a real engine. Chat requests are answered by the upstream (whole, not streamed), then the
//! answer is bent by a [`Cheat`] and streamed back the way vLLM frames it (a role chunk, a
//! chunk per token with its logprob entry, the finish reason, usage, `[DONE]`). Everything
//! else (`/health`, `/tokenize`, `/v1/completions`) is passed through. With `Cheat::None`
//! it is an honest re-framing: the control that shows the proxy itself breaks nothing.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::Router;
use serde_json::{json, Value};

/// How the proxy bends the upstream's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cheat {
    /// Pass the answer through, re-framed.
    None,
    /// The upstream's tokens for N, then made-up words (another model's output).
    WrongAfter(usize),
    /// Claim a confident 0.0 logprob for every token.
    FakeLogprobs,
    /// Stop after N tokens with `finish_reason: "stop"`, and keep the upstream's usage (a
    /// usage chunk that lies about how many tokens were written).
    Truncate(usize),
    /// Append made-up words after the answer.
    JunkAfter,
    /// Replace the first token with the upstream's runner-up there, keep the rest.
    SwapFirst,
}

impl Cheat {
    pub const NAMES: &'static str =
        "none, wrong-after:N, fake-logprobs, truncate:N, junk-after, swap-first";
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown cheat `{0}`; known: {names}", names = Cheat::NAMES)]
pub struct UnknownCheat(String);

impl FromStr for Cheat {
    type Err = UnknownCheat;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || UnknownCheat(s.to_string());
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let n = || arg.and_then(|a| a.parse::<usize>().ok()).ok_or_else(bad);
        Ok(match name {
            "none" if arg.is_none() => Cheat::None,
            "wrong-after" => Cheat::WrongAfter(n()?),
            "fake-logprobs" if arg.is_none() => Cheat::FakeLogprobs,
            "truncate" => Cheat::Truncate(n()?),
            "junk-after" if arg.is_none() => Cheat::JunkAfter,
            "swap-first" if arg.is_none() => Cheat::SwapFirst,
            _ => return Err(bad()),
        })
    }
}

impl fmt::Display for Cheat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cheat::None => f.write_str("none"),
            Cheat::WrongAfter(n) => write!(f, "wrong-after:{n}"),
            Cheat::FakeLogprobs => f.write_str("fake-logprobs"),
            Cheat::Truncate(n) => write!(f, "truncate:{n}"),
            Cheat::JunkAfter => f.write_str("junk-after"),
            Cheat::SwapFirst => f.write_str("swap-first"),
        }
    }
}

/// Words no sensible model ranks in its top-5 after anything in the workload.
const JUNK: [&str; 6] = [
    " zebra",
    " quantum",
    " marmalade",
    " 7391",
    " Zanzibar",
    " ukulele",
];

struct Proxy {
    upstream: String,
    client: reqwest::Client,
    cheat: Cheat,
}

/// Serves the proxy until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    upstream: &str,
    cheat: Cheat,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(upstream, cheat))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The proxy's application, in front of `upstream` (a base URL).
pub fn router(upstream: &str, cheat: Cheat) -> Router {
    let state = Arc::new(Proxy {
        upstream: upstream.trim_end_matches('/').to_string(),
        client: reqwest::Client::new(),
        cheat,
    });
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .fallback(any(pass_through))
        .with_state(state)
}

fn bad_gateway(e: impl fmt::Display) -> Response {
    (StatusCode::BAD_GATEWAY, format!("upstream: {e}")).into_response()
}

async fn pass_through(
    State(p): State<Arc<Proxy>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let req = p
        .client
        .request(method, format!("{}{path}", p.upstream))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body);
    match req.send().await {
        Ok(r) => {
            let status = r.status();
            match r.bytes().await {
                Ok(b) => (status, b).into_response(),
                Err(e) => bad_gateway(e),
            }
        }
        Err(e) => bad_gateway(e),
    }
}

/// One streamed token: the text it adds to `content` (empty for a special token) and its
/// logprob entry.
#[derive(Debug, Clone)]
struct Piece {
    text: String,
    entry: Value,
}

async fn chat(State(p): State<Arc<Proxy>>, body: Bytes) -> Response {
    let Ok(mut req) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let streamed = req["stream"].as_bool().unwrap_or(false);
    req["stream"] = json!(false);
    if let Some(m) = req.as_object_mut() {
        m.remove("stream_options");
    }
    let answer = match p
        .client
        .post(format!("{}/v1/chat/completions", p.upstream))
        .json(&req)
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => match r.json::<Value>().await {
            Ok(v) => v,
            Err(e) => return bad_gateway(e),
        },
        Ok(r) => return (r.status(), "upstream refused").into_response(),
        Err(e) => return bad_gateway(e),
    };
    if !streamed {
        return axum::Json(answer).into_response();
    }
    let choice = &answer["choices"][0];
    let text = choice["message"]["content"].as_str().unwrap_or_default();
    let entries = choice["logprobs"]["content"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut pieces = split(text, entries);
    let mut finish = choice["finish_reason"]
        .as_str()
        .unwrap_or("stop")
        .to_string();
    bend(p.cheat, &mut pieces, &mut finish);
    let frames = frames(&answer, &pieces, &finish);
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from(frames))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Which part of `text` each entry wrote: its token where the text goes on with it, nothing
/// where it does not (a special token); text left over goes to the last piece.
fn split(text: &str, entries: Vec<Value>) -> Vec<Piece> {
    let mut at = 0;
    let mut pieces: Vec<Piece> = entries
        .into_iter()
        .map(|entry| {
            let token = entry["token"].as_str().unwrap_or_default();
            let piece = if !token.is_empty() && text[at..].starts_with(token) {
                at += token.len();
                token.to_string()
            } else {
                String::new()
            };
            Piece { text: piece, entry }
        })
        .collect();
    if at < text.len() {
        match pieces.iter_mut().rev().find(|p| !p.text.is_empty()) {
            Some(last) => last.text.push_str(&text[at..]),
            None => pieces.push(Piece {
                text: text[at..].to_string(),
                entry: Value::Null,
            }),
        }
    }
    pieces
}

fn junk_piece(i: usize, logprob: f64) -> Piece {
    let word = JUNK[i % JUNK.len()];
    Piece {
        text: word.to_string(),
        entry: json!({"token": word, "logprob": logprob, "bytes": word.as_bytes(), "top_logprobs": []}),
    }
}

fn bend(cheat: Cheat, pieces: &mut Vec<Piece>, finish: &mut String) {
    let with_text: Vec<usize> = (0..pieces.len())
        .filter(|&i| !pieces[i].text.is_empty())
        .collect();
    match cheat {
        Cheat::None => {}
        Cheat::WrongAfter(n) => {
            for (k, &i) in with_text.iter().enumerate().skip(n) {
                let lp = pieces[i].entry["logprob"].as_f64().unwrap_or(-0.1);
                pieces[i] = junk_piece(k - n, lp);
            }
        }
        Cheat::FakeLogprobs => {
            for p in pieces.iter_mut() {
                if p.entry.is_object() {
                    p.entry["logprob"] = json!(0.0);
                }
            }
        }
        Cheat::Truncate(n) => {
            if let Some(&cut) = with_text.get(n) {
                pieces.truncate(cut);
                *finish = "stop".into();
            }
        }
        Cheat::JunkAfter => {
            let end = with_text.last().map_or(0, |&i| i + 1);
            for k in 0..8 {
                pieces.insert(end + k, junk_piece(k, -0.01));
            }
        }
        Cheat::SwapFirst => {
            if let Some(&i) = with_text.first() {
                let runner_up = pieces[i].entry["top_logprobs"][1].clone();
                if let Some(token) = runner_up["token"].as_str() {
                    pieces[i].text = token.to_string();
                    pieces[i].entry = json!({
                        "token": token,
                        "logprob": runner_up["logprob"],
                        "bytes": runner_up["bytes"],
                        "top_logprobs": pieces[i].entry["top_logprobs"],
                    });
                }
            }
        }
    }
}

/// The SSE body, framed as vLLM frames it.
fn frames(answer: &Value, pieces: &[Piece], finish: &str) -> String {
    let id = answer["id"].as_str().unwrap_or("chatcmpl-proxy");
    let model = answer["model"].as_str().unwrap_or_default();
    let chunk = |choices: Value, usage: Option<&Value>| {
        let mut c = json!({"id": id, "object": "chat.completion.chunk", "model": model,
                           "choices": choices});
        if let Some(u) = usage {
            c["usage"] = u.clone();
        }
        format!("data: {c}\n\n")
    };
    let mut out = chunk(
        json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null,
                "finish_reason": null}]),
        None,
    );
    for p in pieces {
        let logprobs = if p.entry.is_object() {
            json!({"content": [p.entry]})
        } else {
            Value::Null
        };
        out.push_str(&chunk(
            json!([{"index": 0, "delta": {"content": p.text}, "logprobs": logprobs,
                    "finish_reason": null}]),
            None,
        ));
    }
    out.push_str(&chunk(
        json!([{"index": 0, "delta": {"content": ""}, "logprobs": null, "finish_reason": finish}]),
        None,
    ));
    // The upstream's usage, whatever was cut or added: a lie when the cheat changed the text.
    out.push_str(&chunk(json!([]), Some(&answer["usage"])));
    out.push_str("data: [DONE]\n\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(token: &str) -> Value {
        json!({"token": token, "logprob": -0.5, "bytes": token.as_bytes(),
               "top_logprobs": [{"token": token, "logprob": -0.5},
                                {"token": " other", "logprob": -1.5, "bytes": b" other"}]})
    }

    #[test]
    fn pieces_spell_the_text_and_specials_write_nothing() {
        let p = split(
            "The end",
            vec![entry("The"), entry(" end"), entry("<|im_end|>")],
        );
        let texts: Vec<&str> = p.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(texts, ["The", " end", ""]);
    }

    #[test]
    fn each_cheat_bends_what_it_says() {
        let base = || {
            split(
                "A b c d",
                vec![entry("A"), entry(" b"), entry(" c"), entry(" d")],
            )
        };
        let text = |p: &[Piece]| p.iter().map(|p| p.text.as_str()).collect::<String>();
        let mut finish = "length".to_string();

        let mut p = base();
        bend(Cheat::WrongAfter(2), &mut p, &mut finish);
        assert_eq!(text(&p), "A b zebra quantum");

        let mut p = base();
        bend(Cheat::Truncate(1), &mut p, &mut finish);
        assert_eq!((text(&p).as_str(), finish.as_str()), ("A", "stop"));

        let mut p = base();
        bend(Cheat::SwapFirst, &mut p, &mut finish);
        assert_eq!(text(&p), " other b c d");

        let mut p = base();
        bend(Cheat::FakeLogprobs, &mut p, &mut finish);
        assert!(p.iter().all(|p| p.entry["logprob"] == 0.0));

        let mut p = base();
        bend(Cheat::JunkAfter, &mut p, &mut finish);
        assert!(text(&p).starts_with("A b c d zebra"));

        assert_eq!("truncate:3".parse::<Cheat>(), Ok(Cheat::Truncate(3)));
        assert!("truncate".parse::<Cheat>().is_err());
    }
}
