//! The sandbox on a real Docker engine and a real local registry (both started by
//! `scripts/test-services.sh`): an image built offline with the mock miner inside, pushed,
//! pulled by digest, run with every restriction, streamed from, and removed. The tests
//! share one engine, so they take turns.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bollard::query_parameters::{InspectContainerOptions, ListContainersOptionsBuilder};
use cacheon_containers::{
    Blame, ContainerError, Engine, Gpus, Labels, Running, SandboxConfig, LABEL_ROUND,
};
use cacheon_core::prompts::{ChatMessage, Phase};
use cacheon_core::reference::{Digest, ImageRef};
use cacheon_core::submission::DisqualifyReason;
use cacheon_harness::{stream_chat, HarnessConfig, Target};
use tokio::sync::{Mutex, OnceCell};

const REGISTRY: &str = "127.0.0.1:5000";

mod support;
use support::sh;

static TURN: Mutex<()> = Mutex::const_new(());
static IMAGE: OnceCell<(ImageRef, Digest)> = OnceCell::const_new();

/// Builds (once) an image from scratch with the `cacheon` binary, its shared libraries and
/// busybox, pushes it to the local registry and forgets it locally, so every pull is real.
async fn test_image() -> (ImageRef, Digest) {
    IMAGE
        .get_or_init(|| async {
            let dir = tempfile::tempdir().unwrap();
            let tar = support::rootfs_tar(dir.path(), true, &["/bin/busybox"]);
            let tag = format!("{REGISTRY}/cacheon-test/mock:{}", std::process::id());
            sh(Command::new("docker")
                .args(["import", "-c", "ENTRYPOINT [\"/bin/cacheon\"]"])
                .arg(&tar)
                .arg(&tag));
            sh(Command::new("docker").args(["push", "-q", &tag]));
            let digests = sh(Command::new("docker").args([
                "inspect",
                "--format",
                "{{range .RepoDigests}}{{println .}}{{end}}",
                &tag,
            ]));
            let digest = digests
                .lines()
                .find_map(|l| l.split_once('@').map(|(_, d)| d.to_string()))
                .unwrap();
            sh(Command::new("docker").args(["rmi", "-f", &tag]));
            (
                ImageRef::parse(&tag).unwrap(),
                Digest::parse(&digest).unwrap(),
            )
        })
        .await
        .clone()
}

fn config(network: &str, models: &Path) -> SandboxConfig {
    SandboxConfig {
        network: network.into(),
        models_dir: models.to_path_buf(),
        gpus: Gpus::None,
        shm_bytes: 64 << 20,
        pids_limit: 256,
        memory_bytes: 512 << 20,
        startup_timeout: Duration::from_secs(20),
        health_poll: Duration::from_millis(200),
        stop_grace: Duration::from_secs(2),
        log_cap: 4096,
    }
}

/// The container's command: the image's entrypoint is `cacheon`.
fn mock_miner(port: &str, extra: &[&str]) -> Vec<String> {
    ["mock-miner", "--port", port]
        .iter()
        .chain(extra)
        .map(|a| a.to_string())
        .collect()
}

fn labels(round: &str, role: &str) -> Labels {
    Labels {
        round: round.into(),
        submission: "5F3sa2TJAWMqDhXG6jhV4N8ko9SxwGy8TpaNS1repo5EYjQX:100".into(),
        role: role.into(),
    }
}

async fn containers_of_round(engine: &Engine, round: &str) -> usize {
    let filter = format!("{LABEL_ROUND}={round}");
    let filters = HashMap::from([("label", vec![filter.as_str()])]);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    engine
        .docker()
        .list_containers(Some(options))
        .await
        .unwrap()
        .len()
}

async fn pulled(engine: &Engine) -> String {
    let (image, digest) = test_image().await;
    engine
        .pull(&image, &digest, None, 1 << 30, &|_| {})
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulled_by_digest_sandboxed_healthy_streaming_then_removed() {
    let _turn = TURN.lock().await;
    let engine = Engine::connect().await.unwrap();
    let models = tempfile::tempdir().unwrap();
    std::fs::write(models.path().join("config.json"), "{}").unwrap();
    let cfg = config("cacheon-test-sandbox", models.path());
    let pinned = pulled(&engine).await;

    let running = engine
        .start(
            &pinned,
            &mock_miner("8000", &[]),
            &labels("r-stream", "challenger"),
            &cfg,
        )
        .await
        .unwrap();
    running.wait_healthy().await.unwrap();

    // A streamed chat completion over the internal network, through the real harness.
    let target = Target::new(&running.base_url(), 1, Duration::from_secs(2)).unwrap();
    let hc = HarnessConfig {
        max_tokens: 16,
        ..HarnessConfig::default()
    };
    let msg = [ChatMessage {
        role: "user".into(),
        content: "Explain ownership.".into(),
    }];
    let record = stream_chat(
        &target,
        &hc,
        tokio::time::Instant::now(),
        0,
        Phase::Latency,
        &msg,
    )
    .await;
    assert_eq!(record.fault, None, "{:?}", record.detail);
    assert!(!record.text.is_empty() && record.done);

    // Every sandbox property, as the engine reports it.
    let inspect = engine
        .docker()
        .inspect_container(&running.id, None::<InspectContainerOptions>)
        .await
        .unwrap();
    let host = inspect.host_config.clone().unwrap();
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
    assert!(host.cap_add.unwrap_or_default().is_empty());
    assert!(host
        .security_opt
        .unwrap()
        .iter()
        .any(|o| o.starts_with("no-new-privileges")));
    assert_eq!(host.privileged, Some(false));
    assert_eq!(host.init, Some(true));
    assert_eq!(host.pids_limit, Some(256));
    assert_eq!(host.memory, Some(512 << 20));
    assert_eq!(host.shm_size, Some(64 << 20));
    assert_eq!(host.network_mode.as_deref(), Some("cacheon-test-sandbox"));
    assert!(host.device_requests.unwrap_or_default().is_empty());
    for ns in [
        host.pid_mode,
        host.userns_mode,
        host.uts_mode,
        host.cgroupns_mode.map(|m| format!("{m:?}")),
    ] {
        assert_ne!(ns.as_deref(), Some("host"));
    }
    let mounts = inspect.mounts.unwrap();
    let models_mount = mounts
        .iter()
        .find(|m| m.destination.as_deref() == Some("/models"))
        .unwrap();
    assert_eq!(models_mount.rw, Some(false));
    assert!(!mounts.iter().any(|m| m
        .source
        .as_deref()
        .is_some_and(|s| s.contains("docker.sock"))));
    let labels = inspect.config.unwrap().labels.unwrap();
    assert_eq!(labels["cacheon.round"], "r-stream");
    assert_eq!(labels["cacheon.role"], "challenger");
    assert!(labels["cacheon.submission"].ends_with(":100"));
    let network = engine
        .docker()
        .inspect_network(
            "cacheon-test-sandbox",
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .unwrap();
    assert_eq!(network.internal, Some(true));

    // Read-only models and no way out.
    let exec = |cmd: &str| {
        Command::new("docker")
            .args(["exec", &running.id, "/bin/busybox", "sh", "-c", cmd])
            .output()
            .unwrap()
    };
    assert!(exec("test -f /models/config.json").status.success());
    assert!(!exec("echo x > /models/written").status.success());
    let out = exec("/bin/busybox nc -w 3 1.1.1.1 80 </dev/null");
    assert!(!out.status.success(), "reached 1.1.1.1 from the sandbox");

    let logs = running.teardown().await.unwrap();
    assert!(String::from_utf8_lossy(&logs).contains("listening on"));
    assert!(logs.len() <= 4096);
    assert_eq!(containers_of_round(&engine, "r-stream").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_big_and_wrong_digest_are_refused_before_running() {
    let _turn = TURN.lock().await;
    let engine = Engine::connect().await.unwrap();
    let (image, digest) = test_image().await;

    // The registry's layer sizes exceed a small limit: refused without pulling.
    let err = engine
        .pull(&image, &digest, None, 1000, &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ContainerError::ImageTooLarge { .. }), "{err}");
    assert_eq!(err.blame(), Blame::Miner(DisqualifyReason::ImageTooLarge));
    // The engine's own size check, after a real pull.
    pulled(&engine).await;
    let err = engine.verify(&image, &digest, 1000).await.unwrap_err();
    assert!(matches!(err, ContainerError::ImageTooLarge { .. }), "{err}");

    // A committed digest the registry does not serve for this image.
    let other = Digest::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
    let err = engine
        .pull(&image, &other, None, 1 << 30, &|_| {})
        .await
        .unwrap_err();
    assert_eq!(
        err.blame(),
        Blame::Miner(DisqualifyReason::ImageNotFound),
        "{err}"
    );
    // A pulled image whose repo digests do not include the committed one.
    let err = cacheon_containers::check_repo_digest(
        &image,
        &other,
        &[format!("{}@{digest}", image.repository())],
    )
    .unwrap_err();
    assert_eq!(err.blame(), Blame::Miner(DisqualifyReason::DigestMismatch));

    // A registry serving other bytes than the committed digest: a lying registry.
    let lying = lying_registry().await;
    let fake = ImageRef::parse(&format!("{lying}/miner/x:v1")).unwrap();
    let claimed = Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap();
    let err = engine
        .pull(&fake, &claimed, None, 1 << 30, &|_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, ContainerError::DigestMismatch { .. }),
        "{err}"
    );

    // An unknown image.
    let missing = ImageRef::parse(&format!("{REGISTRY}/cacheon-test/absent:v1")).unwrap();
    let err = engine
        .pull(&missing, &digest, None, 1 << 30, &|_| {})
        .await
        .unwrap_err();
    assert_eq!(
        err.blame(),
        Blame::Miner(DisqualifyReason::ImageNotFound),
        "{err}"
    );
}

/// A registry on loopback that serves the same manifest whatever digest is asked for.
async fn lying_registry() -> String {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/v2/{*rest}",
        get(|| async {
            (
                [("content-type", "application/vnd.oci.image.manifest.v1+json")],
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"sha256:00","size":10},"layers":[]}"#,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("localhost:{}", addr.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_and_a_never_healthy_server_are_reported_and_removed() {
    let _turn = TURN.lock().await;
    let engine = Engine::connect().await.unwrap();
    let models = tempfile::tempdir().unwrap();
    let cfg = config("cacheon-test-sandbox", models.path());
    let pinned = pulled(&engine).await;

    // Exits at once with clap's usage error (code 2).
    let crashing = engine
        .start(
            &pinned,
            &mock_miner("not-a-port", &[]),
            &labels("r-crash", "challenger"),
            &cfg,
        )
        .await
        .unwrap();
    let err = crashing.wait_healthy().await.unwrap_err();
    assert!(
        matches!(err, ContainerError::Crashed { exit_code: 2 }),
        "{err}"
    );
    assert_eq!(err.blame(), Blame::Miner(DisqualifyReason::Crashed));
    crashing.teardown().await.unwrap();
    assert_eq!(containers_of_round(&engine, "r-crash").await, 0);

    // Up, but /health never answers 200.
    let cfg = SandboxConfig {
        startup_timeout: Duration::from_secs(2),
        ..cfg
    };
    let sulking = engine
        .start(
            &pinned,
            &mock_miner("8000", &["--fault", "failing-health"]),
            &labels("r-sulk", "challenger"),
            &cfg,
        )
        .await
        .unwrap();
    let err = sulking.wait_healthy().await.unwrap_err();
    assert!(matches!(err, ContainerError::NeverHealthy(_)), "{err}");
    assert_eq!(err.blame(), Blame::Miner(DisqualifyReason::Unhealthy));
    // Dropped without teardown (a cancelled caller): still removed.
    drop(sulking);
    for _ in 0..50 {
        if containers_of_round(&engine, "r-sulk").await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(containers_of_round(&engine, "r-sulk").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_a_dead_pod_are_reaped() {
    let _turn = TURN.lock().await;
    let engine = Engine::connect().await.unwrap();
    let models = tempfile::tempdir().unwrap();
    let cfg = config("cacheon-test-sandbox", models.path());
    // Pulled in the background, as the pod prefetches the next contestant.
    let (image, digest) = test_image().await;
    let pinned = engine
        .prefetch(image, digest, None, 1 << 30)
        .await
        .unwrap()
        .unwrap();
    let orphan: Running = engine
        .start(
            &pinned,
            &mock_miner("8000", &[]),
            &labels("r-orphan", "king"),
            &cfg,
        )
        .await
        .unwrap();
    // The pod died: nobody tears this container down.
    std::mem::forget(orphan);
    assert_eq!(containers_of_round(&engine, "r-orphan").await, 1);
    assert!(engine.reap().await.unwrap() >= 1);
    assert_eq!(containers_of_round(&engine, "r-orphan").await, 0);
}
