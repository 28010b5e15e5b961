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
    Blame, ContainerError, Credentials, Engine, Gpus, Labels, PullPolicy, RegistryAuth,
    RegistryPolicy, Running, SandboxConfig, LABEL_ROUND,
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

/// `support::push_image` under `cacheon-test/<name>`, as references.
fn push_image(tar: &Path, entrypoint: &str, name: &str) -> (ImageRef, Digest) {
    let (tag, digest) = support::push_image(tar, entrypoint, &format!("cacheon-test/{name}"));
    (
        ImageRef::parse(&tag).unwrap(),
        Digest::parse(&digest).unwrap(),
    )
}

/// Builds (once) an image from scratch with the `cacheon` binary, its shared libraries and
/// busybox.
async fn test_image() -> (ImageRef, Digest) {
    IMAGE
        .get_or_init(|| async {
            let dir = tempfile::tempdir().unwrap();
            let tar = support::rootfs_tar(dir.path(), true, &["/bin/busybox"]);
            push_image(&tar, r#"["/bin/cacheon"]"#, "mock")
        })
        .await
        .clone()
}

/// The same files with a busybox shell as the entrypoint: the command is a script.
async fn shell_image() -> (ImageRef, Digest) {
    static SHELL: OnceCell<(ImageRef, Digest)> = OnceCell::const_new();
    SHELL
        .get_or_init(|| async {
            let dir = tempfile::tempdir().unwrap();
            let tar = support::rootfs_tar(dir.path(), false, &["/bin/busybox"]);
            push_image(&tar, r#"["/bin/busybox", "sh", "-c"]"#, "shell")
        })
        .await
        .clone()
}

/// Pulls allowed from the tests' loopback registries only, with `size_limit`.
fn policy(size_limit: u64) -> PullPolicy {
    PullPolicy {
        size_limit,
        timeout: Duration::from_secs(60),
        stall: Duration::from_secs(30),
        registries: RegistryPolicy {
            allow_hosts: vec![REGISTRY.into(), "localhost".into()],
            ..RegistryPolicy::default()
        },
    }
}

fn config(network: &str, models: &Path) -> SandboxConfig {
    let (open_files, locked_memory) = support::engine_limits();
    SandboxConfig {
        network: network.into(),
        bridge: None,
        user: "10001:10001".into(),
        scratch_bytes: 16 << 20,
        models_dir: models.to_path_buf(),
        gpus: Gpus::None,
        shm_bytes: 64 << 20,
        pids_limit: 256,
        memory_bytes: 512 << 20,
        startup_timeout: Duration::from_secs(20),
        health_poll: Duration::from_millis(200),
        stop_grace: Duration::from_secs(2),
        log_cap: 4096,
        open_files,
        locked_memory,
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
        pod: "pod-sandbox-test".into(),
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
        .pull(&image, &digest, &policy(1 << 30), &|_| {})
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
    let env = inspect.config.clone().unwrap().env.unwrap();
    assert!(
        env.contains(&"NVIDIA_VISIBLE_DEVICES=void".to_string()),
        "{env:?}"
    );
    assert!(env.contains(&"HOME=/tmp".to_string()), "{env:?}");
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
    // A read-only root, a small tmpfs for scratch, and not root.
    assert!(!exec("echo x > /written").status.success());
    assert!(exec("echo x > /tmp/scratch").status.success());
    let id = exec("id -u");
    assert_eq!(String::from_utf8_lossy(&id.stdout).trim(), "10001");
    // What real engines need (a real vLLM dies at start-up without `exec`): code written
    // to the scratch space runs, descriptors and locked memory are not starved, and the
    // user has a name without a passwd entry.
    let ran =
        exec("cp /bin/busybox /tmp/busybox && /tmp/busybox true && grep ' /tmp ' /proc/mounts");
    let mounts_line = String::from_utf8_lossy(&ran.stdout).to_string();
    assert!(
        ran.status.success(),
        "a program written to /tmp did not run: {ran:?}"
    );
    assert!(!mounts_line.contains("noexec"), "{mounts_line}");
    assert!(
        mounts_line.contains("nosuid") && mounts_line.contains("nodev"),
        "{mounts_line}"
    );
    let limits = exec("ulimit -n; ulimit -l; ulimit -c");
    let (open_files, locked) = support::engine_limits();
    let locked = locked.map_or("unlimited".to_string(), |b| (b >> 10).to_string());
    assert_eq!(
        String::from_utf8_lossy(&limits.stdout)
            .split_whitespace()
            .collect::<Vec<_>>(),
        [open_files.to_string().as_str(), locked.as_str(), "0"]
    );
    assert!(env.contains(&"USER=cacheon".to_string()), "{env:?}");
    assert_eq!(host.readonly_rootfs, Some(true));
    let log = host.log_config.clone().unwrap();
    assert_eq!(log.typ.as_deref(), Some("json-file"));
    assert_eq!(log.config.unwrap()["max-size"], "4096");
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
        .pull(&image, &digest, &policy(1000), &|_| {})
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
        .pull(&image, &other, &policy(1 << 30), &|_| {})
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
        .pull(&fake, &claimed, &policy(1 << 30), &|_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, ContainerError::DigestMismatch { .. }),
        "{err}"
    );

    // An unknown image.
    let missing = ImageRef::parse(&format!("{REGISTRY}/cacheon-test/absent:v1")).unwrap();
    let err = engine
        .pull(&missing, &digest, &policy(1 << 30), &|_| {})
        .await
        .unwrap_err();
    assert_eq!(
        err.blame(),
        Blame::Miner(DisqualifyReason::ImageNotFound),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_the_sandbox_does_not_run_are_refused_at_pull_time() {
    let _turn = TURN.lock().await;
    let engine = Engine::connect().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tar = support::rootfs_tar(dir.path(), false, &["/bin/busybox"]);
    let refused = |changes: &[&str], name: &str| {
        let changes: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        let (tag, digest) =
            support::push_image_with(&tar, &changes, &format!("cacheon-test/{name}"));
        (
            ImageRef::parse(&tag).unwrap(),
            Digest::parse(&digest).unwrap(),
        )
    };
    let entry = r#"ENTRYPOINT ["/bin/busybox", "sleep", "60"]"#;
    let cases = [
        (
            refused(&[entry, "VOLUME /data"], "volume"),
            DisqualifyReason::DeclaredVolume,
        ),
        (
            refused(&[entry, "ENV NVIDIA_MOFED=enabled"], "mofed"),
            DisqualifyReason::ToolkitVariable,
        ),
        (
            refused(&[entry, "ENV NVIDIA_NVSWITCH=enabled"], "nvswitch"),
            DisqualifyReason::ToolkitVariable,
        ),
    ];
    for ((image, digest), reason) in cases {
        let err = engine
            .pull(&image, &digest, &policy(1 << 30), &|_| {})
            .await
            .unwrap_err();
        assert_eq!(err.blame(), Blame::Miner(reason), "{image}: {err}");
        println!("{image}: {reason}: {err}");
        // Nothing of it is left on the engine.
        assert!(
            engine
                .docker()
                .inspect_image(&image.pinned(&digest))
                .await
                .is_err(),
            "{image} left behind"
        );
    }
    // The next contestant is unaffected: a plain image pulls and runs.
    let pinned = pulled(&engine).await;
    let models = tempfile::tempdir().unwrap();
    let cfg = config("cacheon-test-sandbox", models.path());
    let running = engine
        .start(
            &pinned,
            &mock_miner("8000", &[]),
            &labels("refusals", "challenger"),
            &cfg,
        )
        .await
        .unwrap();
    running.wait_healthy().await.unwrap();
    running.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_on_one_engine_cannot_reach_each_others_containers() {
    let _turn = TURN.lock().await;
    let engine = Engine::connect().await.unwrap();
    let models = tempfile::tempdir().unwrap();
    let cfg = config("cacheon-test-apart", models.path());
    let pinned = pulled(&engine).await;
    let pod = |name: &str| Labels {
        pod: name.into(),
        ..labels("apart", "challenger")
    };
    // Pod A's miner serves; the pod itself (this process, on the host) reaches it.
    let server = engine
        .start(&pinned, &mock_miner("8000", &[]), &pod("pod-a"), &cfg)
        .await
        .unwrap();
    server.wait_healthy().await.unwrap();
    let target = format!("{}:8000", server.ip);
    // Pod B's miner, on the same engine and sandbox network, tries to connect to it.
    let probe = engine
        .start(
            &pinned,
            &[
                "probe-sandbox".to_string(),
                "--connect".to_string(),
                target.clone(),
                "--timeout-secs".to_string(),
                "3".to_string(),
            ],
            &pod("pod-b"),
            &cfg,
        )
        .await
        .unwrap();
    let code = probe.wait_exit(Duration::from_secs(60)).await.unwrap();
    let said = String::from_utf8_lossy(&probe.teardown().await.unwrap()).into_owned();
    println!("probe of pod-b against {target}: exit {code}: {said}");
    assert_eq!(code, 0, "pod-b's container reached pod-a's: {said}");
    assert!(said.contains("blocked"), "{said}");
    server.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_makes_new_namespaces_only_where_seccomp_is_off() {
    let _turn = TURN.lock().await;
    let engine = Engine::connect().await.unwrap();
    let models = tempfile::tempdir().unwrap();
    let cfg = config("cacheon-test-sandbox", models.path());
    let pinned = pulled(&engine).await;
    // In our sandbox: refused.
    let probe = engine
        .start(
            &pinned,
            &["probe-sandbox".to_string(), "--unshare".to_string()],
            &labels("unshare", "probe"),
            &cfg,
        )
        .await
        .unwrap();
    let code = probe.wait_exit(Duration::from_secs(60)).await.unwrap();
    let said = String::from_utf8_lossy(&probe.teardown().await.unwrap()).into_owned();
    println!("sandboxed: exit {code}: {said}");
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("blocked unshare(user)"), "{said}");
    // The same probe where seccomp is off: it makes them, and says so with its exit code.
    let out = std::process::Command::new("docker")
        .args(["run", "--rm", "--network", "none", "--user", "10001"])
        .args(["--security-opt", "seccomp=unconfined", &pinned])
        .args(["probe-sandbox", "--unshare"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    println!("unconfined: {:?}: {said}", out.status.code());
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains("UNSHARED a new user namespace"), "{said}");
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
        .prefetch(image, digest, policy(1 << 30))
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
    // Another pod's reaping leaves it alone; this pod's removes it.
    assert_eq!(engine.reap("some-other-pod").await.unwrap(), 0);
    assert_eq!(containers_of_round(&engine, "r-orphan").await, 1);
    assert!(engine.reap("pod-sandbox-test").await.unwrap() >= 1);
    assert_eq!(containers_of_round(&engine, "r-orphan").await, 0);
}

/// A loopback listener that counts connections; each gets `answer` (raw HTTP) or, with
/// `None`, is held open without a byte (a stalling peer).
async fn listener(answer: Option<String>) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = l.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                match answer {
                    Some(a) => {
                        let _ = socket.write_all(a.as_bytes()).await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(3600)).await,
                }
            });
        }
    });
    (port, hits)
}

fn hits(h: &std::sync::atomic::AtomicUsize) -> usize {
    h.load(std::sync::atomic::Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_registries_are_the_miners_fault_and_learn_nothing() {
    let _turn = TURN.lock().await;
    let engine = Engine::connect().await.unwrap();
    let digest = Digest::parse(&format!("sha256:{}", "b".repeat(64))).unwrap();
    let image = |port: u16| ImageRef::parse(&format!("localhost:{port}/miner/x:v1")).unwrap();

    // A registry answering 500.
    let (port, _) = listener(Some(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n".into(),
    ))
    .await;
    let err = engine
        .pull(&image(port), &digest, &policy(1 << 30), &|_| {})
        .await
        .unwrap_err();
    assert_eq!(
        err.blame(),
        Blame::Miner(DisqualifyReason::PullFailed),
        "{err}"
    );
    // The same failure of a registry the operator runs is the operator's.
    let ours = PullPolicy {
        registries: RegistryPolicy {
            operated: vec![format!("localhost:{port}")],
            ..policy(1 << 30).registries
        },
        ..policy(1 << 30)
    };
    let err = engine
        .pull(&image(port), &digest, &ours, &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err.blame(), Blame::Infra(_)), "{err}");

    // A registry that accepts and never answers: the pull's own deadline ends it.
    let (port, stalled) = listener(None).await;
    let short = PullPolicy {
        timeout: Duration::from_secs(2),
        ..policy(1 << 30)
    };
    let t = std::time::Instant::now();
    let err = engine
        .pull(&image(port), &digest, &short, &|_| {})
        .await
        .unwrap_err();
    assert_eq!(
        err.blame(),
        Blame::Miner(DisqualifyReason::PullFailed),
        "{err}"
    );
    assert!(hits(&stalled) >= 1);
    println!("stalling registry: refused after {:?}", t.elapsed());

    // A registry whose token realm is another host: the credentials configured for the
    // registry are never sent there (nor is anything else).
    let (realm_port, realm_hits) = listener(Some(
        "HTTP/1.1 200 OK\r\ncontent-length: 15\r\n\r\n{\"token\":\"t\"}\r\n".into(),
    ))
    .await;
    let (port, _) = listener(Some(format!(
        "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer realm=\"http://127.0.0.1:{realm_port}/token\",service=\"x\",scope=\"repository:miner/x:pull\"\r\ncontent-length: 0\r\n\r\n"
    )))
    .await;
    let with_creds = PullPolicy {
        registries: RegistryPolicy {
            auth: vec![RegistryAuth {
                host: format!("localhost:{port}"),
                credentials: Credentials {
                    username: "operator".into(),
                    password: "secret".into(),
                },
            }],
            allow_hosts: vec!["localhost".into()],
            operated: Vec::new(),
        },
        ..policy(1 << 30)
    };
    let err = engine
        .pull(&image(port), &digest, &with_creds, &|_| {})
        .await
        .unwrap_err();
    assert_eq!(
        err.blame(),
        Blame::Miner(DisqualifyReason::PullDenied),
        "{err}"
    );
    assert_eq!(hits(&realm_hits), 0, "the foreign realm was contacted");

    // A loopback registry the operator did not allow: refused before any request.
    let (port, contacted) =
        listener(Some("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".into())).await;
    let strict = PullPolicy {
        registries: RegistryPolicy::default(),
        ..policy(1 << 30)
    };
    let local = ImageRef::parse(&format!("127.0.0.1:{port}/miner/x:v1")).unwrap();
    let err = engine
        .pull(&local, &digest, &strict, &|_| {})
        .await
        .unwrap_err();
    assert_eq!(
        err.blame(),
        Blame::Miner(DisqualifyReason::PullDenied),
        "{err}"
    );
    assert_eq!(hits(&contacted), 0);

    // An index with the committed digest whose linux/amd64 entry is served as other bytes.
    let (index_ref, index_digest) = swapping_index_registry().await;
    let err = engine
        .pull(&index_ref, &index_digest, &policy(1 << 30), &|_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, ContainerError::DigestMismatch { .. }),
        "{err}"
    );
}

/// A registry serving an index (under its true digest) that names a platform manifest,
/// and other bytes when that manifest is asked for.
async fn swapping_index_registry() -> (ImageRef, Digest) {
    use axum::routing::get;
    use sha2::Digest as _;
    let child = format!("sha256:{}", "c".repeat(64));
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{child}","size":100,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
    );
    let index_digest = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(index.as_bytes()))
    );
    let swapped = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"sha256:00","size":10},"layers":[]}"#;
    let want = index_digest.clone();
    let app = axum::Router::new().route(
        "/v2/{*rest}",
        get(
            move |axum::extract::Path(rest): axum::extract::Path<String>| {
                let (index, want) = (index.clone(), want.clone());
                async move {
                    if rest.ends_with(&want) {
                        index
                    } else {
                        swapped.to_string()
                    }
                }
            },
        ),
    );
    let l = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await });
    (
        ImageRef::parse(&format!("localhost:{port}/miner/idx:v1")).unwrap(),
        Digest::parse(&index_digest).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_that_expands_past_the_limit_is_refused_and_removed() {
    let _turn = TURN.lock().await;
    let engine = Engine::connect().await.unwrap();
    // 64 MiB of zeros: a few hundred KiB compressed at the registry.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let f = std::fs::File::create(root.join("zeros")).unwrap();
    f.set_len(64 << 20).unwrap();
    let tar = dir.path().join("bomb.tar");
    sh(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg("."));
    let (image, digest) = push_image(&tar, r#"["/zeros"]"#, "bomb");
    let err = engine
        .pull(&image, &digest, &policy(8 << 20), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ContainerError::ImageTooLarge { .. }), "{err}");
    assert_eq!(err.blame(), Blame::Miner(DisqualifyReason::ImageTooLarge));
    // Nothing of it is left on the engine's disk.
    let gone = Command::new("docker")
        .args(["image", "inspect", &image.pinned(&digest)])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "the refused image is still there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_servers_end_with_their_own_reason_and_leave_nothing() {
    let _turn = TURN.lock().await;
    let engine = Engine::connect().await.unwrap();
    let models = tempfile::tempdir().unwrap();
    let cfg = SandboxConfig {
        startup_timeout: Duration::from_secs(4),
        ..config("cacheon-test-sandbox", models.path())
    };

    // An entrypoint that does not exist: the image's fault, not the engine's.
    let dir = tempfile::tempdir().unwrap();
    let tar = support::rootfs_tar(dir.path(), false, &["/bin/busybox"]);
    let (image, digest) = push_image(&tar, r#"["/bin/nonexistent"]"#, "bad-entrypoint");
    let pinned = engine
        .pull(&image, &digest, &policy(1 << 30), &|_| {})
        .await
        .unwrap();
    // runc refuses to start it; with `--init` the init process starts and then fails to
    // exec it. Either way it is the image's.
    let err = match engine
        .start(&pinned, &[], &labels("r-bad-entry", "challenger"), &cfg)
        .await
    {
        Err(e) => e,
        Ok(running) => running.wait_healthy().await.unwrap_err(),
    };
    assert!(
        matches!(
            err.blame(),
            Blame::Miner(DisqualifyReason::StartFailed | DisqualifyReason::Crashed)
        ),
        "{err}"
    );
    engine.ping().await.unwrap();

    // /health redirects to a listener on this machine: never followed.
    let (port, reached) = listener(Some(
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".into(),
    ))
    .await;
    let mock = pulled(&engine).await;
    let redirecting = engine
        .start(
            &mock,
            &mock_miner("8000", &["--fault", &format!("redirect-health:{port}")]),
            &labels("r-redirect", "challenger"),
            &cfg,
        )
        .await
        .unwrap();
    let err = redirecting.wait_healthy().await.unwrap_err();
    assert_eq!(
        err.blame(),
        Blame::Miner(DisqualifyReason::Redirected),
        "{err}"
    );
    assert_eq!(hits(&reached), 0, "the redirect was followed");
    redirecting.teardown().await.unwrap();

    let shell = {
        let (image, digest) = shell_image().await;
        engine
            .pull(&image, &digest, &policy(1 << 30), &|_| {})
            .await
            .unwrap()
    };
    let run = |script: &str, round: &str| {
        let (engine, shell, cfg) = (&engine, &shell, &cfg);
        let script = script.to_string();
        let round = round.to_string();
        async move {
            engine
                .start(shell, &[script], &labels(&round, "challenger"), cfg)
                .await
                .unwrap()
        }
    };

    // Memory exhaustion: killed by the engine at the limit.
    let hog = run("a=0123456789abcdef; while :; do a=$a$a; done", "r-hog").await;
    let err = hog.wait_healthy().await.unwrap_err();
    assert_eq!(
        err.blame(),
        Blame::Miner(DisqualifyReason::OomKilled),
        "{err}"
    );
    hog.teardown().await.unwrap();

    // A fork bomb: held at the pids limit; the engine still answers and removes it.
    let bomb = run("f(){ f|f& }; f; sleep 600", "r-fork").await;
    let err = bomb.wait_healthy().await.unwrap_err();
    assert!(
        matches!(
            err.blame(),
            Blame::Miner(DisqualifyReason::Unhealthy | DisqualifyReason::Crashed)
        ),
        "{err}"
    );
    engine.ping().await.unwrap();
    bomb.teardown().await.unwrap();

    // Writing until the disk is full: the root is read-only and /tmp is a small tmpfs.
    let filler = run(
        "dd if=/dev/zero of=/tmp/fill bs=1M; dd if=/dev/zero of=/fill bs=1M count=1; sleep 600",
        "r-disk",
    )
    .await;
    let err = filler.wait_healthy().await.unwrap_err();
    assert_eq!(
        err.blame(),
        Blame::Miner(DisqualifyReason::Unhealthy),
        "{err}"
    );
    let du = Command::new("docker")
        .args(["exec", &filler.id, "/bin/busybox", "du", "-sk", "/tmp"])
        .output()
        .unwrap();
    let kib: u64 = String::from_utf8_lossy(&du.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(kib <= 16 << 10, "/tmp holds {kib} KiB, over its 16 MiB");
    let sized = engine
        .docker()
        .inspect_container(&filler.id, Some(InspectContainerOptions { size: true }))
        .await
        .unwrap();
    assert_eq!(sized.size_rw.unwrap_or(0), 0, "the writable layer grew");
    println!("disk filler: /tmp {kib} KiB, writable layer 0 bytes");
    filler.teardown().await.unwrap();

    // A log flood: the engine keeps one capped file; teardown reads a bounded tail.
    let flood = run(
        "while :; do echo 0123456789012345678901234567890123456789012345678901234567890123; done",
        "r-flood",
    )
    .await;
    let err = flood.wait_healthy().await.unwrap_err();
    assert_eq!(
        err.blame(),
        Blame::Miner(DisqualifyReason::Unhealthy),
        "{err}"
    );
    let path = engine
        .docker()
        .inspect_container(&flood.id, None::<InspectContainerOptions>)
        .await
        .unwrap()
        .log_path
        .unwrap();
    // Sampled while the flood goes on. The file is absent while the driver rotates, which
    // under this flood can be most of the time on a loaded machine: sample until 200 reads
    // succeeded or 20 s passed, not a fixed number of tries (one CI-like run saw 200 misses).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut sizes: Vec<u64> = Vec::new();
    while sizes.len() < 200 && std::time::Instant::now() < deadline {
        match std::fs::metadata(&path) {
            Ok(m) => sizes.push(m.len()),
            Err(_) => tokio::task::yield_now().await,
        }
    }
    assert!(!sizes.is_empty(), "no log file at {path}");
    let on_disk = sizes.iter().copied().max().unwrap_or(0);
    // The driver rotates at max-size; a line may straddle it.
    assert!(on_disk <= 4096 + 1024, "log file {on_disk} bytes");
    let logs = flood.teardown().await.unwrap();
    assert!(logs.len() <= 4096);
    println!("log flood: {on_disk} bytes on disk, {} kept", logs.len());

    for round in [
        "r-bad-entry",
        "r-redirect",
        "r-hog",
        "r-fork",
        "r-disk",
        "r-flood",
    ] {
        assert_eq!(containers_of_round(&engine, round).await, 0, "{round}");
    }
}

/// Removes the test's firewall rules and network, whatever happened.
struct FirewallCleanup {
    bridge: &'static str,
    network: &'static str,
}

impl Drop for FirewallCleanup {
    fn drop(&mut self) {
        for tool in ["iptables", "ip6tables"] {
            let _ = Command::new(tool)
                .args(["-D", "INPUT", "-i", self.bridge])
                .args(["-m", "conntrack", "--ctstate", "NEW", "-j", "DROP"])
                .output();
        }
        let _ = Command::new("docker")
            .args(["network", "rm", self.network])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_self_test_refuses_a_sandbox_that_reaches_the_machine_until_the_firewall_holds() {
    use cacheon_pod::safety::{self_test, SafetyError};
    let _turn = TURN.lock().await;
    const NETWORK: &str = "cacheon-test-selftest";
    const BRIDGE: &str = "cacheonst0";
    let _cleanup = FirewallCleanup {
        bridge: BRIDGE,
        network: NETWORK,
    };
    let _ = Command::new("docker")
        .args(["network", "rm", NETWORK])
        .output();
    let engine = Engine::connect().await.unwrap();
    let probe = pulled(&engine).await;
    let models = tempfile::tempdir().unwrap();
    let cfg = SandboxConfig {
        bridge: Some(BRIDGE.into()),
        ..config(NETWORK, models.path())
    };

    // Docker's internal network alone: the host answers on the bridge's gateway.
    let err = self_test(&engine, &cfg, &probe, "pod-selftest")
        .await
        .unwrap_err();
    assert!(matches!(err, SafetyError::Reachable(_)), "{err}");
    println!("without the rule: {err}");

    // The operator's script reports the same, then installs the rules, then agrees.
    std::fs::write(models.path().join("config.json"), "{}").unwrap();
    std::fs::write(models.path().join("model.safetensors"), b"toy").unwrap();
    std::fs::write(
        models.path().join("tokenizer.json"),
        cacheon_mockminer::tokenizer_json(),
    )
    .unwrap();
    let (open_files, locked_memory) = support::engine_limits();
    let script = |check: bool| {
        let mut cmd = Command::new("bash");
        if let Some(bytes) = locked_memory {
            cmd.env(
                "CACHEON_CONTAINER_LOCKED_MEMORY_MB",
                (bytes >> 20).to_string(),
            );
        }
        cmd.arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/gpu_setup/sandbox-firewall.sh"
        ));
        if check {
            cmd.arg("--check");
        }
        cmd.env("CACHEON_SANDBOX_NETWORK", NETWORK)
            .env("CACHEON_SANDBOX_BRIDGE", BRIDGE)
            .env("CACHEON_FIREWALL_PERSIST", "0")
            .env("CACHEON_BIN", env!("CARGO_BIN_EXE_cacheon"))
            .env("CACHEON_PROBE_IMAGE", &probe)
            .env("CACHEON_POD_ID", "pod-selftest")
            .env("CACHEON_GPU_COUNT", "0")
            .env("CACHEON_GPUS", "none")
            .env("CACHEON_MIN_FREE_DISK_GB", "0")
            .env("CACHEON_MODELS_DIR", models.path())
            .env("CACHEON_MIN_DOCKER_VERSION", "20.10")
            .env("CACHEON_MIN_RUNC_VERSIONS", "1.0")
            .env("CACHEON_MIN_CONTAINERD_VERSIONS", "1.0")
            .env("CACHEON_ALLOW_NO_LSM", "true")
            .env("CACHEON_CONTAINER_MEMORY_GB", "1")
            .env("CACHEON_CONTAINER_SHM_GB", "1")
            .env("CACHEON_CONTAINER_SCRATCH_GB", "1")
            .env("CACHEON_CONTAINER_OPEN_FILES", open_files.to_string())
            .env("CACHEON_S3_BUCKET", "unused")
            .env("CACHEON_HANDOFF_SECRET", "unused");
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (fit, report) = script(true);
    println!("setup --check before:\n{report}");
    assert!(!fit, "{report}");
    assert!(report.contains("MISSING  iptables -I INPUT"), "{report}");
    assert!(report.contains("self-test failed"), "{report}");
    let (fit, report) = script(false);
    println!("setup:\n{report}");
    assert!(fit, "{report}");
    assert!(report.contains("reaches nothing"), "{report}");

    // The pod's self-test now passes: nothing of this machine was reached.
    let report = self_test(&engine, &cfg, &probe, "pod-selftest")
        .await
        .unwrap();
    assert_eq!(report.accepted, 0);
    assert!(report.targets.iter().any(|t| t.is_ipv4()));
    println!(
        "with the rule: targets {:?}\n{}",
        report.targets, report.probe_output
    );
}
