#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

//! What goes over the wire, checked against a raw TCP peer: the request is a plain
//! `Content-Length` POST with the SPEC §7 fields, and a hand-written stream with every
//! framing quirk is read exactly.

use std::time::Duration;

use cacheon_core::prompts::{ChatMessage, Phase};
use cacheon_harness::{stream_chat, HarnessConfig, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// Accepts one connection, returns the request it read and answers with `response`.
async fn one_shot(response: &'static [u8]) -> (String, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let peer = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // Read the head, then exactly Content-Length bytes of body.
        let body_start = loop {
            let n = sock.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..body_start]).to_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .expect("no content-length header");
        while buf.len() < body_start + len {
            let n = sock.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
        }
        sock.write_all(response).await.unwrap();
        sock.shutdown().await.unwrap();
        String::from_utf8(buf).unwrap()
    });
    (url, peer)
}

const QUIRKY: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n\
: keep-alive\r\n\r\n\
data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"},\"finish_reason\":null}]}\r\n\r\n\
:ping\n\n\
data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" caf\xc3\xa9 ol\"},\"logprobs\":{\"content\":[{\"token\":\" caf\xc3\xa9\",\"logprob\":-0.5,\"bytes\":[32,99,97,102,195,169],\"top_logprobs\":[]},{\"token\":\" ol\",\"logprob\":-0.25,\"top_logprobs\":[]}]},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"logprobs\":null,\"finish_reason\":\"length\"}]}\n\n\
data: {\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n\
data: [DONE]\n\n";

#[tokio::test]
async fn the_request_is_plain_and_a_quirky_stream_is_read_exactly() {
    let (url, peer) = one_shot(QUIRKY).await;
    let target = Target::new(&url, 1, Duration::from_secs(1)).unwrap();
    let cfg = HarnessConfig {
        max_tokens: 7,
        ..HarnessConfig::default()
    };
    let messages = [ChatMessage {
        role: "user".into(),
        content: "hi".into(),
    }];
    let r = stream_chat(&target, &cfg, Instant::now(), 3, Phase::Latency, &messages).await;

    let request = peer.await.unwrap();
    let lower = request.to_lowercase();
    assert!(
        lower.starts_with("post /v1/chat/completions http/1.1"),
        "{request}"
    );
    assert!(!lower.contains("transfer-encoding"), "{request}");
    let body: serde_json::Value =
        serde_json::from_str(&request[request.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(body["stream"], true);
    assert_eq!(body["temperature"], 0);
    assert_eq!(body["max_tokens"], 7);
    assert_eq!(body["logprobs"], true);
    assert_eq!(body["top_logprobs"], 5);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(body["model"], "Qwen2.5-72B-Instruct");
    // Greedy on any server: every sampling field a stock vLLM would fill from the model's
    // generation_config.json is sent neutral.
    assert_eq!(body["repetition_penalty"], 1);
    assert_eq!(body["top_p"], 1);
    assert_eq!(body["top_k"], -1);
    assert_eq!(body["min_p"], 0);
    assert_eq!(body["presence_penalty"], 0);
    assert_eq!(body["frequency_penalty"], 0);

    assert_eq!(r.fault, None, "{:?}", r.detail);
    assert_eq!(r.text, " café ol");
    let lps = r.logprobs.clone().unwrap();
    assert_eq!(lps.len(), 2);
    assert_eq!(lps[0].claimed_bytes(), " café".as_bytes());
    assert_eq!(lps[0].logprob, -0.5);
    assert_eq!((lps[1].token.as_str(), lps[1].logprob), (" ol", -0.25));
    assert_eq!(r.finish_reason.as_deref(), Some("length"));
    assert_eq!(r.usage.unwrap().completion_tokens, 2);
    assert!(r.done);
    // Role, one content chunk with two tokens, finish, usage, [DONE]: comments are not events.
    assert_eq!(r.events.len(), 5);
    assert_eq!(r.events.iter().filter(|e| e.has_token()).count(), 1);
    assert_eq!(r.events[1].tokens, 2);
    assert_eq!(r.ttft_ns(), Some(r.events[1].at_ns));
}
