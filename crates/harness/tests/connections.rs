#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

//! Real servers manage their connections in their own way: llama.cpp's server closes a
//! keep-alive connection the client still holds, listeners refuse when full. Such a server
//! is measured, not failed, and the retries that make this possible never improve its
//! figures. A small TCP front in each test plays the behaviour in front of the mock miner,
//! deterministically (no race with the client's pool).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cacheon_core::prompts::Phase;
use cacheon_harness::{run, stream_chat, StopRule, Target};
use cacheon_mockminer::{Fault, MockConfig, RunningMock};
use common::{config, miner, prompts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// What the front does to a client's connection.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Forwards one request per connection; when the client sends a second one on the same
    /// connection (keep-alive), closes it without a word, as llama.cpp's server does to
    /// the connection of a health poll.
    OneRequestPerConnection,
    /// Reads the first chat request of the run whole, waits, and closes without answering;
    /// everything else is forwarded.
    DropFirstChat(Duration),
}

struct Front {
    url: String,
    /// Connections the front closed on the client.
    closed: Arc<AtomicUsize>,
}

async fn front(upstream: std::net::SocketAddr, behaviour: Behaviour) -> Front {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let closed = Arc::new(AtomicUsize::new(0));
    let dropped_chat = Arc::new(AtomicUsize::new(0));
    let counter = closed.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let closed = counter.clone();
            let dropped_chat = dropped_chat.clone();
            tokio::spawn(async move {
                if pump(client, upstream, behaviour, &dropped_chat).await {
                    closed.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    Front { url, closed }
}

/// Relays one client connection; true when the front closed it on purpose.
async fn pump(
    mut client: TcpStream,
    upstream: std::net::SocketAddr,
    behaviour: Behaviour,
    dropped_chat: &AtomicUsize,
) -> bool {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return false;
    };
    let mut from_client = vec![0u8; 64 << 10];
    let mut from_server = vec![0u8; 64 << 10];
    let mut answered = false;
    loop {
        tokio::select! {
            n = client.read(&mut from_client) => {
                let Ok(n) = n else { return false };
                if n == 0 {
                    return false;
                }
                match behaviour {
                    Behaviour::OneRequestPerConnection if answered => return true,
                    Behaviour::DropFirstChat(wait)
                        if from_client[..n].starts_with(b"POST /v1/chat/completions")
                            && dropped_chat.fetch_add(1, Ordering::SeqCst) == 0 =>
                    {
                        tokio::time::sleep(wait).await;
                        return true;
                    }
                    _ => {}
                }
                if server.write_all(&from_client[..n]).await.is_err() {
                    return false;
                }
            }
            n = server.read(&mut from_server) => {
                let Ok(n) = n else { return false };
                if n == 0 {
                    return false;
                }
                answered = true;
                if client.write_all(&from_server[..n]).await.is_err() {
                    return false;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_closes_used_connections_is_measured_not_failed() {
    let mock = RunningMock::start(miner(None)).await.unwrap();
    let front = front(mock.addr, Behaviour::OneRequestPerConnection).await;
    let cfg = config();
    let target = Target::new(&front.url, cfg.concurrency, cfg.connect_timeout).unwrap();
    // As the pod and `cacheon bench` meet a fresh server: a health poll first, whose
    // connection the pool keeps, then the run.
    target
        .wait_healthy(Duration::from_secs(10), Duration::from_millis(50))
        .await
        .unwrap();
    let prompts = prompts(1, 3, 4);
    let workload = run(
        &target,
        &prompts,
        &cfg,
        &StopRule::never(),
        Instant::now(),
        &|_| {},
    )
    .await
    .expect("a server that closes used connections was failed");
    assert_eq!(workload.latency.len(), 3);
    assert_eq!(workload.throughput.len(), 4);
    for r in workload.scored() {
        assert_eq!(r.fault, None, "prompt {}: {:?}", r.prompt_index, r.detail);
        assert!(r.done && !r.text.is_empty(), "prompt {}", r.prompt_index);
    }
    // The behaviour was really played: the warm-up and the requests met closed connections.
    assert!(front.closed.load(Ordering::SeqCst) >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_dropped_and_answered_again_is_timed_from_the_first_attempt() {
    let mock = RunningMock::start(miner(None)).await.unwrap();
    let held = Duration::from_millis(400);
    let front = front(mock.addr, Behaviour::DropFirstChat(held)).await;
    let cfg = config();
    let target = Target::new(&front.url, cfg.concurrency, cfg.connect_timeout).unwrap();
    target.warm(1).await.unwrap();
    let prompts = prompts(0, 1, 0);
    let prompt = prompts.phase(Phase::Latency).next().unwrap();
    let epoch = Instant::now();
    let record = stream_chat(&target, &cfg, epoch, 0, Phase::Latency, &prompt.messages).await;
    assert_eq!(record.fault, None, "{:?}", record.detail);
    assert_eq!(
        front.closed.load(Ordering::SeqCst),
        1,
        "the request was not dropped"
    );
    // The mock answers in milliseconds; the 400 ms the front held the first attempt are
    // the server's, not forgiven by the retry.
    let ttft = Duration::from_nanos(record.ttft_ns().unwrap());
    assert!(ttft >= held, "TTFT {ttft:?} restarted with the retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_that_never_end_or_never_stop_are_not_healthy() {
    for fault in [Fault::HealthNoBody, Fault::HealthEndlessBody] {
        let mock = RunningMock::start(MockConfig {
            fault: Some(fault),
            ..miner(None)
        })
        .await
        .unwrap();
        let cfg = config();
        let target = Target::new(&mock.url(), 1, cfg.connect_timeout).unwrap();
        // The headers say 200, but the answer is never whole: not healthy, and the wait
        // ends at its bound instead of hanging on the body or reading it without end.
        let err = target
            .wait_healthy(Duration::from_secs(2), Duration::from_millis(100))
            .await
            .unwrap_err();
        println!("{fault}: {err}");
        // Nor can the connections be warmed through it.
        let err = target.warm(1).await.unwrap_err();
        println!("{fault}: {err}");
    }
}
