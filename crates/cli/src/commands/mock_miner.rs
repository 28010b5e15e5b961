//! `cacheon mock-miner`: the toy model behind vLLM's API, honest or with a fault, for tests,
//! demos and miners practising with `cacheon bench`.

use std::time::Duration;

use anyhow::Context;
use cacheon_mockminer::{serve, MockConfig};

use crate::args::MockMinerArgs;
use crate::shutdown;

pub async fn run(a: &MockMinerArgs) -> anyhow::Result<()> {
    if let Some(path) = &a.write_tokenizer {
        std::fs::write(path, cacheon_mockminer::tokenizer_json())
            .with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
        return Ok(());
    }
    if let Some(upstream) = &a.upstream {
        let listener = tokio::net::TcpListener::bind((a.host, a.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", a.host, a.port))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, %upstream, cheat = %a.cheat, "cheating proxy listening");
        println!("listening on {addr}");
        std::io::Write::flush(&mut std::io::stdout())?;
        cacheon_mockminer::proxy::serve(listener, upstream, a.cheat, shutdown::signal()).await?;
        return Ok(());
    }
    if !(a.speed_jitter.is_finite() && (0.0..=2.0).contains(&a.speed_jitter)) {
        anyhow::bail!("--speed-jitter must be a coefficient of variation in [0, 2]");
    }
    let cfg = MockConfig {
        model_name: a.model.clone(),
        ttft: Duration::from_millis(a.ttft_ms),
        itl: Duration::from_millis(a.itl_ms),
        speed_jitter: a.speed_jitter,
        tokens_per_chunk: usize::from(a.tokens_per_chunk),
        max_concurrency: a.max_concurrency as usize,
        fault: a.fault,
        keepalive: a.keepalive,
        eos_entry: a.eos_entry,
        token_ids: a.token_ids,
        crlf: a.crlf,
        ..MockConfig::default()
    };
    let listener = tokio::net::TcpListener::bind((a.host, a.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", a.host, a.port))?;
    let addr = listener.local_addr()?;
    let fault = a
        .fault
        .map_or_else(|| "none".to_string(), |f| f.to_string());
    tracing::info!(%addr, ttft_ms = a.ttft_ms, itl_ms = a.itl_ms, %fault, "mock miner listening");
    // On stdout too, so a script (or a test) that asked for port 0 learns the port.
    println!("listening on {addr}");
    std::io::Write::flush(&mut std::io::stdout())?;
    serve(listener, cfg, None, shutdown::signal()).await?;
    Ok(())
}
