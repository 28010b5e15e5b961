//! `cacheon host run` and `cacheon host requeue`: the always-on daemon, wired from its
//! flags, with the status API beside it and one shutdown signal for both.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use cacheon_core::confirm::ConfirmRule;
use cacheon_core::reference::{Digest, ImageRef};
use cacheon_core::{KingRule, SubmissionId};
use cacheon_handoff::documents::BaselineImage;
use cacheon_handoff::{layout, Bucket};
use cacheon_host::observe::SECONDS_BUCKETS;
use cacheon_host::{CommandProvisioner, Host, HostConfig, Provisioner, Signer, StaticProvisioner};
use cacheon_status::{LogSource, StatusState};
use cacheon_store::Store;
use futures_util::future::BoxFuture;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tokio_util::sync::CancellationToken;

use crate::args::daemons::ProvisionerKind;
use crate::args::{HostArgs, HostCommand, HostRunArgs, RequeueArgs};
use crate::commands::{chain, handoff};
use crate::{shutdown, workload};

pub async fn run(a: &HostArgs) -> anyhow::Result<()> {
    match &a.command {
        HostCommand::Run(r) => run_host(r).await,
        HostCommand::Requeue(r) => requeue(r).await,
    }
}

async fn requeue(a: &RequeueArgs) -> anyhow::Result<()> {
    let id: SubmissionId = a
        .submission
        .parse()
        .with_context(|| format!("`{}` is not a submission id", a.submission))?;
    let store = Store::open(&a.database)
        .await
        .with_context(|| format!("opening {}", a.database.display()))?;
    let mut tx = store.write().await?;
    tx.requeue(&id).await?;
    tx.commit().await?;
    store.close().await;
    println!("{id} is pending again, with a fresh set of attempts");
    Ok(())
}

fn config(a: &HostRunArgs) -> anyhow::Result<HostConfig> {
    if !(a.king_margin.is_finite() && a.king_margin >= 0.0) {
        bail!("CACHEON_KING_MARGIN must be a non-negative number");
    }
    let confirm = ConfirmRule {
        within: a.confirm_within,
        multiple: a.confirm_multiple,
    };
    if !confirm.is_valid() {
        bail!("CACHEON_CONFIRM_WITHIN and CACHEON_CONFIRM_MULTIPLE must be non-negative numbers");
    }
    ImageRef::parse(&a.baseline_image).context("CACHEON_BASELINE_IMAGE")?;
    Digest::parse(&a.baseline_digest)
        .context("CACHEON_BASELINE_DIGEST must be the baseline image's sha256:… digest")?;
    let file = match &a.workload {
        Some(path) => workload::read_file(path)?,
        None => workload::WorkloadFile::default(),
    };
    Ok(HostConfig {
        netuid: a.netuid,
        burn_uid: a.burn_uid,
        tick: Duration::from_secs(a.tick_secs),
        max_parallel_rounds: a.max_parallel_rounds,
        max_challengers_per_round: a.max_challengers_per_round,
        max_infra_attempts: a.max_infra_attempts,
        round_deadline_base: Duration::from_secs(a.round_deadline_base_secs),
        turn_budget: Duration::from_secs(a.turn_budget_secs),
        weights_interval_blocks: a.weights_interval_blocks,
        king_rule: KingRule {
            base_margin: a.king_margin,
            decay_blocks: a.king_margin_decay_blocks,
            confirm: (a.confirm_within > 0.0).then_some(confirm),
        },
        baseline: BaselineImage {
            image: a.baseline_image.clone(),
            digest: a.baseline_digest.clone(),
            args: a
                .baseline_args
                .split_whitespace()
                .map(String::from)
                .collect(),
        },
        workload: file.shape.unwrap_or_default(),
        harness: file.harness.unwrap_or_default(),
        thresholds: file.thresholds.unwrap_or_default(),
        ..HostConfig::default()
    })
}

fn signer(a: &HostRunArgs) -> anyhow::Result<Signer> {
    let w = &a.wallet;
    let Some(wallet) = &w.wallet_name else {
        return Ok(Signer::Observe);
    };
    let hotkey = super::chain::load_hotkey(w, wallet)?;
    Ok(if a.dry_run {
        Signer::DryRun(hotkey)
    } else {
        Signer::Active(hotkey)
    })
}

fn provisioner(a: &HostRunArgs) -> anyhow::Result<Box<dyn Provisioner>> {
    Ok(match a.provisioner {
        ProvisionerKind::Static => Box::new(StaticProvisioner),
        ProvisionerKind::Command => {
            let Some(start) = a.pod_start_command.clone() else {
                bail!(
                    "--provisioner command needs --pod-start-command (CACHEON_POD_START_COMMAND)"
                );
            };
            Box::new(CommandProvisioner {
                start,
                stop: a.pod_stop_command.clone(),
                timeout: Duration::from_secs(300),
            })
        }
    })
}

/// Container logs for the status API, read from the bucket.
struct BucketLogs(Bucket);

impl LogSource for BucketLogs {
    fn round_log(
        &self,
        round: i64,
        label: String,
    ) -> BoxFuture<'static, Result<Option<Vec<u8>>, String>> {
        let bucket = self.0.clone();
        Box::pin(async move {
            bucket
                .get_raw(&layout::log(round, &label))
                .await
                .map(|o| o.map(|(bytes, _)| bytes))
                .map_err(|e| e.to_string())
        })
    }
}

async fn run_host(a: &HostRunArgs) -> anyhow::Result<()> {
    let cfg = config(a)?;
    let signer = signer(a)?;
    let provisioner = provisioner(a)?;
    let (corpus, templates) = workload::load(&a.source)?;
    let store = Store::open(&a.database)
        .await
        .with_context(|| format!("opening {}", a.database.display()))?;
    let chain = chain::connect(&a.node);
    if let Signer::Active(h) | Signer::DryRun(h) = &signer {
        let (uid, _) = chain
            .check_validator(cfg.netuid, &h.account_id())
            .await
            .context("checking the validator hotkey")?;
        tracing::info!(uid, hotkey = %h.account_id(), "validator hotkey registered");
    }
    let bucket = handoff::bucket(&a.handoff)?;
    if let Err(e) = bucket.ensure_bucket().await {
        tracing::warn!("could not check or create the bucket (continuing): {e}");
    }
    let metrics = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .context("setting the histogram buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    cacheon_host::observe::describe();
    let mut host = Host::new(
        cfg,
        store.clone(),
        chain,
        bucket.clone(),
        signer,
        provisioner,
        corpus,
        templates,
    )?;
    let token = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind(a.status_addr)
        .await
        .with_context(|| format!("binding the status API to {}", a.status_addr))?;
    let status = StatusState {
        store: store.clone(),
        snapshot: host.snapshot(),
        logs: Some(Arc::new(BucketLogs(bucket)) as Arc<dyn LogSource>),
        metrics: Some(metrics),
    };
    let api = tokio::spawn(cacheon_status::serve(
        listener,
        status,
        token.clone().cancelled_owned(),
    ));
    let signal = token.clone();
    tokio::spawn(async move {
        shutdown::signal().await;
        signal.cancel();
    });
    host.run(token.clone()).await;
    token.cancel();
    match api.await {
        Ok(Err(e)) => tracing::error!("status API: {e}"),
        Err(e) => tracing::error!("status API task: {e}"),
        Ok(Ok(())) => {}
    }
    store.close().await;
    Ok(())
}
