//! The request shapes real OpenAI clients send are accepted: vLLM's own `bench serve`
//! sends `content` as a list of parts and `max_completion_tokens`.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use cacheon_mockminer::{MockConfig, RunningMock};
use serde_json::{json, Value};

async fn post(url: &str, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn content_parts_and_max_completion_tokens_are_accepted() {
    let mock = RunningMock::start(MockConfig::default()).await.unwrap();
    let (status, body) = post(
        &mock.url(),
        "/v1/chat/completions",
        json!({
            "model": "Qwen2.5-72B-Instruct",
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Tell me"}, {"type": "text", "text": " about it."}]}],
            "max_completion_tokens": 5,
            "ignore_eos": true,
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let plain = post(
        &mock.url(),
        "/v1/chat/completions",
        json!({
            "model": "Qwen2.5-72B-Instruct",
            "messages": [{"role": "user", "content": "Tell me about it."}],
            "max_tokens": 5,
        }),
    )
    .await
    .1;
    // The parts are one text: the same answer as the plain string.
    assert_eq!(
        body["choices"][0]["message"]["content"],
        plain["choices"][0]["message"]["content"]
    );
    assert!(body["usage"]["completion_tokens"].as_u64().unwrap() <= 5);

    let (status, body) = post(
        &mock.url(),
        "/v1/chat/completions",
        json!({
            "model": "Qwen2.5-72B-Instruct",
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
        }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn completions_with_token_ids_give_prompt_logprobs_with_the_forced_token() {
    let mock = RunningMock::start(MockConfig::default()).await.unwrap();
    let (status, body) = post(
        &mock.url(),
        "/v1/completions",
        json!({"model": "Qwen2.5-72B-Instruct", "prompt": [900001, 5, 6, 7, 0],
               "prompt_logprobs": 5, "max_tokens": 1}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let table = body["choices"][0]["prompt_logprobs"].as_array().unwrap();
    assert_eq!(table.len(), 5);
    assert!(table[0].is_null());
    for (i, id) in [5, 6, 7, 0].iter().enumerate() {
        let entry = table[i + 1].as_object().unwrap();
        assert!(entry.contains_key(&id.to_string()), "{entry:?}");
        assert!(entry.len() >= 5);
    }
}
