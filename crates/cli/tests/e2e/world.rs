//! The real parts of an end-to-end run: a moto S3 server, the mock subtensor node over a
//! websocket (finney metadata), mock-miner images in the local registry, a SQLite file, and
//! `cacheon host` / `cacheon pod` as separate processes that can be killed with SIGKILL.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cacheon_chain::mock::{MockNode, ServerHandle};
use cacheon_chain::AccountId32;
use cacheon_handoff::testing::Moto;
use parity_scale_codec::Encode;
use tokio::sync::OnceCell;

use crate::support;

pub const NETUID: u16 = 14;
pub const VERSION_KEY: u64 = 77;
const REGISTRY: &str = "127.0.0.1:5000";
/// The validator's hotkey (a btcli `secretSeed` file) and its address.
const SEED: &str = "0x4ed8d4b17698ddeaa1f1559f152f87b5d472f725ca86d341bd0276f1b61197e2";
pub const VALIDATOR: &str = "5EPCUjPxiHAcNooYipQFWr9NmmXJKpNG5RhcntXwbtUySrgH";
pub const VALIDATOR_UID: u16 = 1;

/// Test miners: uid, mock-miner arguments (the image's entrypoint).
pub const FAST: (u16, &str) = (2, "--ttft-ms 40 --itl-ms 8");
pub const SLOW: (u16, &str) = (3, "--ttft-ms 80 --itl-ms 16");
pub const CHEATER: (u16, &str) = (4, "--ttft-ms 10 --itl-ms 2 --fault wrong-after:2");
pub const MALFORMED_UID: u16 = 5;
pub const SLIGHTLY_FASTER: (u16, &str) = (6, "--ttft-ms 36 --itl-ms 7");
pub const MUCH_FASTER: (u16, &str) = (7, "--ttft-ms 10 --itl-ms 2");
/// Hostile servers (the `hostile` scenario commits them over uids 3, 4, 6 and 7).
pub const STALLING: (u16, &str) = (3, "--ttft-ms 10 --itl-ms 2 --fault stall:600000");
pub const DRIPPING: (u16, &str) = (4, "--ttft-ms 10 --itl-ms 2 --fault drip:3000");
pub const BAD_ENTRYPOINT_UID: u16 = 6;
/// Where the redirecting server's `/health` points: a listener of the test on this machine.
pub const REDIRECT_PORT: u16 = 18798;
pub const REDIRECTING_UID: u16 = 7;
/// A registry "of the operator's" (the pods list it as theirs) that a test may break.
pub const OPERATED_REGISTRY_PORT: u16 = 18797;
/// Much faster than `FAST`, and noisy: every request's timing spread by about 30 %.
pub const JITTERY: &str = "--ttft-ms 10 --itl-ms 2 --speed-jitter 0.3";
/// Valid, but healthy only 20 s after it starts (inside the pods' 30 s start-up), and
/// streaming slower than the honest challenger (still faster than the baseline).
pub const SLOW_KING: (u16, &str) = (6, "--ttft-ms 60 --itl-ms 12 --fault ready-after:20000");
const BASELINE_ARGS: &str = "mock-miner --port 8000 --ttft-ms 100 --itl-ms 20";
/// A challenger must beat the king by 50 %: wide enough that timing noise on a shared
/// machine cannot move a 20 % improvement over it or a 300 % one under it.
pub const KING_MARGIN: &str = "0.5";

const WORKLOAD: &str = r#"{
  "shape": {"warmup": 1, "latency": 4, "throughput": 8, "long_fraction": 0.25,
            "long_tokens": [300, 600], "short_tokens": [32, 128]},
  "harness": {"model": "Qwen2.5-72B-Instruct", "max_tokens": 24, "top_logprobs": 5,
              "concurrency": 4, "deadline": 20000, "stall_timeout": 5000,
              "byte_cap": 1048576, "connect_timeout": 2000}
}"#;

pub fn hotkey(uid: u16) -> AccountId32 {
    if uid == VALIDATOR_UID {
        return VALIDATOR.parse().expect("ss58");
    }
    AccountId32([u8::try_from(uid).expect("small uid") + 100; 32])
}

pub fn ss58(uid: u16) -> String {
    hotkey(uid).to_string()
}

/// Image reference and digest of every test server, built once per test binary.
#[derive(Clone)]
pub struct Images {
    pub by_uid: Vec<(u16, String, String)>,
    pub baseline: (String, String),
    /// Hostile images by name: `stalling`, `dripping`, `bad-entrypoint`, `redirecting`.
    pub hostile: Vec<(String, String, String)>,
}

impl Images {
    pub fn of(&self, uid: u16) -> (String, String) {
        let (_, i, d) = self
            .by_uid
            .iter()
            .find(|(u, _, _)| *u == uid)
            .expect("image");
        (i.clone(), d.clone())
    }

    /// A named (hostile or special) image: (tag, digest).
    pub fn named(&self, name: &str) -> (String, String) {
        let (_, i, d) = self
            .hostile
            .iter()
            .find(|(n, _, _)| n == name)
            .expect("named image");
        (i.clone(), d.clone())
    }

    /// The hostile image `name` as pulled through a registry proxy on `localhost:port`.
    pub fn named_through(&self, name: &str, port: u16) -> (String, String) {
        let (image, digest) = self.named(name);
        let through = image.replacen(REGISTRY, &format!("localhost:{port}"), 1);
        (through, digest)
    }
}

static IMAGES: OnceCell<Images> = OnceCell::const_new();

/// An image from scratch with the `cacheon` binary and its libraries, one per entrypoint,
/// pushed to the local registry and removed locally so every pull is real.
pub async fn images() -> Images {
    IMAGES
        .get_or_init(|| async {
            tokio::task::spawn_blocking(build_images)
                .await
                .expect("build images")
        })
        .await
        .clone()
}

fn build_images() -> Images {
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = support::rootfs_tar(dir.path(), true, &[]);
    // The slow king's layer is its own (one more file): no other image's download can
    // stand in for its dripped pull.
    let king_tar = {
        let root = dir.path().join("root");
        std::fs::write(root.join("slow-king"), std::process::id().to_string()).expect("marker");
        let king_tar = dir.path().join("king.tar");
        support::sh(
            Command::new("tar")
                .arg("-C")
                .arg(&root)
                .arg("-cf")
                .arg(&king_tar)
                .arg("."),
        );
        king_tar
    };
    let build = |name: &str, args: &str| -> (String, String) {
        let mut entry = vec!["/bin/cacheon".to_string()];
        if args == "BAD-ENTRYPOINT" {
            entry = vec!["/bin/nonexistent".to_string()];
        } else if !args.is_empty() {
            entry.extend(["mock-miner", "--port", "8000"].map(String::from));
            entry.extend(args.split_whitespace().map(String::from));
        }
        let entry = serde_json::to_string(&entry).expect("json");
        let mut changes = vec![format!("ENTRYPOINT {entry}")];
        // A rebuild: the same layers and command, another label, so another digest.
        if name.ends_with("-rebuilt") {
            changes.push("LABEL org.example.rebuilt=yes".to_string());
        }
        // Images the sandbox does not run.
        match name {
            "volume" => changes.push("VOLUME /data".to_string()),
            "mofed" => changes.push("ENV NVIDIA_MOFED=enabled".to_string()),
            _ => {}
        }
        let tar = if name == "slow-king" { &king_tar } else { &tar };
        support::push_image_with(tar, &changes, &format!("cacheon-e2e/{name}"))
    };
    let miners = [
        ("fast", FAST),
        ("slow", SLOW),
        ("cheater", CHEATER),
        ("slightly-faster", SLIGHTLY_FASTER),
        ("much-faster", MUCH_FASTER),
    ];
    let by_uid = miners
        .iter()
        .map(|(name, (uid, args))| {
            let (i, d) = build(name, args);
            (*uid, i, d)
        })
        .collect();
    let redirect = format!("--fault redirect-health:{REDIRECT_PORT}");
    let hostile = [
        ("stalling", STALLING.1),
        ("dripping", DRIPPING.1),
        ("bad-entrypoint", "BAD-ENTRYPOINT"),
        ("redirecting", redirect.as_str()),
        ("jittery", JITTERY),
        ("jittery-rebuilt", JITTERY),
        ("slow-king", SLOW_KING.1),
        ("health-no-body", "--fault health-no-body"),
        ("health-endless-body", "--fault health-endless-body"),
        ("bloated", "--ttft-ms 10 --itl-ms 2 --fault bloat:200"),
        ("volume", FAST.1),
        ("mofed", FAST.1),
    ]
    .iter()
    .map(|(name, args)| {
        let (i, d) = build(name, args);
        (name.to_string(), i, d)
    })
    .collect();
    Images {
        by_uid,
        baseline: build("baseline", ""),
        hostile,
    }
}

/// A TCP proxy on `localhost` in front of the test registry: every connection is handed
/// with its upstream to `relay`. Returns its port.
async fn registry_proxy<F, Fut>(relay: F) -> u16
where
    F: Fn(tokio::net::TcpStream, tokio::net::TcpStream) -> Fut + Send + Copy + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(upstream) = tokio::net::TcpStream::connect(REGISTRY).await {
                    relay(client, upstream).await;
                }
            });
        }
    });
    port
}

/// A registry that drips: requests pass at once, answers come at `DRIP_BYTES` per
/// `DRIP_EVERY` (6.4 MB/s), as a miner's registry may. Returns its port.
pub async fn dripping_registry() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const DRIP_BYTES: usize = 64 << 10;
    const DRIP_EVERY: Duration = Duration::from_millis(10);
    registry_proxy(|client, upstream| async move {
        let (mut from_client, mut to_client) = client.into_split();
        let (mut from_upstream, mut to_upstream) = upstream.into_split();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from_client, &mut to_upstream).await;
        });
        let mut buf = vec![0u8; DRIP_BYTES];
        while let Ok(n) = from_upstream.read(&mut buf).await {
            if n == 0 || to_client.write_all(&buf[..n]).await.is_err() {
                break;
            }
            tokio::time::sleep(DRIP_EVERY).await;
        }
    })
    .await
}

/// A registry whose layers fail: every request passes but a blob's, on which the
/// connection is dropped. Its manifests pass every check before the pull; the engine's
/// download then fails with an error nobody can classify. Returns its port.
pub async fn blob_failing_registry() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    registry_proxy(|client, upstream| async move {
        let (mut from_client, mut to_client) = client.into_split();
        let (mut from_upstream, mut to_upstream) = upstream.into_split();
        let answers = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from_upstream, &mut to_client).await;
        });
        // Requests are GET and HEAD (no bodies): each ends at its blank line.
        let mut pending: Vec<u8> = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                match from_client.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => pending.extend_from_slice(&buf[..n]),
                }
                continue;
            };
            let request: Vec<u8> = pending.drain(..end + 4).collect();
            let line = String::from_utf8_lossy(&request);
            if line.lines().next().unwrap_or("").contains("/blobs/")
                || to_upstream.write_all(&request).await.is_err()
            {
                break;
            }
        }
        answers.abort();
    })
    .await
}

/// Everything one scenario runs on.
pub struct World {
    pub dir: tempfile::TempDir,
    pub moto: Moto,
    pub node: MockNode,
    _ws: ServerHandle,
    pub ws_url: String,
    pub images: Images,
    pub db: PathBuf,
    pub status: String,
    status_port: u16,
    network: String,
    /// The baseline the host pins: image, digest, arguments.
    pub baseline: (String, String, String),
    /// The pods' model directory (mounted at /models).
    pub models: PathBuf,
    /// The pods' sandbox sizes: start-up seconds, memory GiB.
    pub pod_startup_secs: u64,
    pub pod_memory_gb: u64,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl World {
    /// A subnet of 8 uids with the validator at uid 1 and the round-1 commitments: fast,
    /// slow and cheating miners, and a malformed commitment.
    pub async fn new(name: &str) -> World {
        let world = World::bare(name).await;
        world.commit(FAST.0, 990);
        world.commit(SLOW.0, 991);
        world.commit(CHEATER.0, 992);
        world
            .node
            .put_plain_commitment(NETUID, &hotkey(MALFORMED_UID), 993, b"not json at all");
        world
    }

    /// The subnet, S3 and the mock baseline with the toy model, and nothing committed.
    pub async fn bare(name: &str) -> World {
        let mut world = World::empty(name, images().await).await;
        world.models = world.toy_models();
        world
    }

    /// The toy model directory the mock servers are judged with.
    fn toy_models(&self) -> PathBuf {
        let models = self.dir.path().join("models");
        std::fs::create_dir_all(&models).expect("mkdir");
        std::fs::write(
            models.join("config.json"),
            r#"{"max_position_embeddings": 4096}"#,
        )
        .expect("config.json");
        std::fs::write(models.join("model-00001-of-00001.safetensors"), b"toy").expect("weights");
        std::fs::write(
            models.join("tokenizer.json"),
            cacheon_mockminer::tokenizer_json(),
        )
        .expect("tokenizer.json");
        models
    }

    /// The subnet, S3, the wallet and the workload, with the mock baseline and no
    /// commitments; the caller sets the models and what is committed.
    pub async fn empty(name: &str, images: Images) -> World {
        let metadata = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../chain/tests/fixtures/finney-spec393.scale"
        ))
        .expect("metadata fixture");
        let node = MockNode::new(metadata, 393);
        node.put_subnet_item("SubnetworkN", NETUID, 8u16);
        for uid in 0..8 {
            node.put_neuron(NETUID, uid, &hotkey(uid));
        }
        let mut permits = vec![false; 8];
        permits[usize::from(VALIDATOR_UID)] = true;
        node.put_subnet_item("ValidatorPermit", NETUID, permits);
        node.put_subnet_item("WeightsVersionKey", NETUID, VERSION_KEY);
        node.put_subnet_item("CommitRevealWeightsEnabled", NETUID, false);
        node.put_subnet_item("LastUpdate", NETUID, vec![0u64; 8]);
        let (addr, ws) = node
            .serve_ws("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("serve");
        let dir = tempfile::tempdir().expect("tempdir");
        let status_port = free_port();
        let world = World {
            moto: Moto::start(),
            node,
            _ws: ws,
            ws_url: format!("ws://{addr}"),
            db: dir.path().join("cacheon.db"),
            status_port,
            status: format!("http://127.0.0.1:{status_port}"),
            network: format!("cacheon-e2e-{name}-{}", std::process::id()),
            baseline: (
                images.baseline.0.clone(),
                images.baseline.1.clone(),
                BASELINE_ARGS.to_string(),
            ),
            models: dir.path().join("models"),
            pod_startup_secs: 30,
            pod_memory_gb: 1,
            images,
            dir,
        };
        std::fs::write(world.dir.path().join("workload.json"), WORKLOAD).expect("workload");
        let hotkeys = world.dir.path().join("wallets/validator/hotkeys");
        std::fs::create_dir_all(&hotkeys).expect("mkdir");
        std::fs::write(
            hotkeys.join("default"),
            format!(r#"{{"secretSeed":"{SEED}","ss58Address":"{VALIDATOR}"}}"#),
        )
        .expect("hotkey");
        world
    }

    /// Reveals a commitment of `uid` to the hostile image `name` at `block`.
    pub fn commit_hostile(&self, uid: u16, name: &str, block: u64) {
        let (image, digest) = self.images.named(name);
        let json = format!(r#"{{"image":"{image}","digest":"{digest}"}}"#);
        self.node
            .put_revealed(NETUID, &hotkey(uid), &[(json.encode(), block)]);
    }

    /// Reveals a commitment of `uid` to `image` (with any digest) at `block`.
    pub fn commit_image(&self, uid: u16, image: &str, block: u64) {
        let digest = format!("sha256:{}", "e".repeat(64));
        let json = format!(r#"{{"image":"{image}","digest":"{digest}"}}"#);
        self.node
            .put_revealed(NETUID, &hotkey(uid), &[(json.encode(), block)]);
    }

    /// Reveals a commitment of `uid` to `image` at `digest` at `block`.
    pub fn commit_pinned(&self, uid: u16, image: &str, digest: &str, block: u64) {
        let json = format!(r#"{{"image":"{image}","digest":"{digest}"}}"#);
        self.node
            .put_revealed(NETUID, &hotkey(uid), &[(json.encode(), block)]);
    }

    /// Reveals a commitment of `uid`'s image at `block`.
    pub fn commit(&self, uid: u16, block: u64) {
        let (image, digest) = self.images.of(uid);
        let json = format!(r#"{{"image":"{image}","digest":"{digest}"}}"#);
        self.node
            .put_revealed(NETUID, &hotkey(uid), &[(json.encode(), block)]);
    }

    pub fn host(&self) -> Daemon {
        self.host_with(true)
    }

    /// The host; without a wallet it runs in observe mode.
    pub fn host_with(&self, wallet: bool) -> Daemon {
        self.host_env(wallet, &[])
    }

    /// The host with extra environment (its `CACHEON_*` settings).
    pub fn host_env(&self, wallet: bool, env: &[(&str, &str)]) -> Daemon {
        let dir = self.dir.path();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cacheon"));
        cmd.args(["host", "run", "--tick-secs", "1", "--rpc-attempts", "3"])
            .arg("--database")
            .arg(&self.db)
            .args(["--subtensor-url", &self.ws_url])
            .args(["--baseline-image", &self.baseline.0])
            .args(["--baseline-digest", &self.baseline.1])
            .args(["--baseline-args", &self.baseline.2])
            .arg("--workload")
            .arg(dir.join("workload.json"))
            .args(["--status-addr", &format!("127.0.0.1:{}", self.status_port)])
            .args(["--king-margin", KING_MARGIN])
            .arg("--wallet-path")
            .arg(dir.join("wallets"));
        if wallet {
            cmd.args(["--wallet-name", "validator"]);
        }
        cmd.envs(env.iter().copied());
        self.handoff_env(&mut cmd);
        Daemon::spawn("host", cmd)
    }

    pub fn pod(&self, name: &str) -> Daemon {
        self.pod_on(name, &self.models)
    }

    /// A pod whose machine has `models` as its model directory.
    pub fn pod_on(&self, name: &str, models: &std::path::Path) -> Daemon {
        let startup = self.pod_startup_secs.to_string();
        let memory = self.pod_memory_gb.to_string();
        let (open_files, locked) = support::engine_limits();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cacheon"));
        cmd.args([
            "pod",
            "--pod-id",
            name,
            "--gpu-count",
            "0",
            "--gpus",
            "none",
            "--min-free-disk-gb",
            "0",
            "--poll-secs",
            "1",
            "--lease-ttl-secs",
            "6",
            "--lease-renew-secs",
            "1",
            "--startup-timeout-secs",
            &startup,
            "--stop-grace-secs",
            "1",
            "--container-memory-gb",
            &memory,
            "--container-shm-gb",
            "1",
            "--sandbox-network",
            &self.network,
            // Several test networks side by side: let Docker name their bridges.
            "--sandbox-bridge",
            "auto",
            "--allow-registries",
            &format!("{REGISTRY},localhost"),
            // CI's engine is Debian's 20.10 (its own security fixes, not upstream's
            // numbers); the self-test has a test of its own (tests/sandbox.rs).
            "--operator-registries",
            &format!("localhost:{OPERATED_REGISTRY_PORT}"),
            "--min-docker-version",
            "20.10",
            "--skip-sandbox-self-test",
        ])
        .args(support::RUNTIME_FLOORS_OF_THIS_MACHINE)
        .args(["--container-open-files", &open_files.to_string()])
        .arg("--models-dir")
        .arg(models);
        if let Some(bytes) = locked {
            cmd.args(["--container-locked-memory-mb", &(bytes >> 20).to_string()]);
        }
        self.handoff_env(&mut cmd);
        Daemon::spawn(name, cmd)
    }

    fn handoff_env(&self, cmd: &mut Command) {
        cmd.env("CACHEON_S3_ENDPOINT", &self.moto.endpoint)
            .env("CACHEON_S3_BUCKET", "cacheon-e2e")
            .env("CACHEON_S3_ACCESS_KEY_ID", "testing")
            .env("CACHEON_S3_SECRET_ACCESS_KEY", "testing")
            .env("CACHEON_HANDOFF_SECRET", "e2e-shared-secret")
            .env("CACHEON_LOG_FORMAT", "json")
            .env("CACHEON_LOG", "info");
    }

    /// `path` when it exists yet.
    pub async fn try_get(&self, path: &str) -> Option<serde_json::Value> {
        let response = reqwest::get(format!("{}{path}", self.status)).await.ok()?;
        response.status().is_success().then_some(())?;
        response.json().await.ok()
    }

    pub async fn get(&self, path: &str) -> serde_json::Value {
        let url = format!("{}{path}", self.status);
        let response = reqwest::get(&url).await.expect("status API");
        assert!(
            response.status().is_success(),
            "{url}: {}",
            response.status()
        );
        response.json().await.expect("json")
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
    }
}

/// A daemon process whose stderr (JSON log lines) is collected as it arrives.
pub struct Daemon {
    pub name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// The process's peak resident memory so far, in bytes (`VmHWM`).
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the daemon's /proc status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
        kib * 1024
    }

    fn spawn(name: &str, mut cmd: Command) -> Daemon {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cacheon");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().expect("lock").push(line);
            }
        });
        Daemon {
            name: name.to_string(),
            child,
            lines,
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lock").clone()
    }

    /// Waits (polling, up to `limit`) for a log line containing every one of `needles`;
    /// panics with the log so far when the process exits or the limit passes.
    pub async fn wait_for(&mut self, needles: &[&str], limit: Duration) -> String {
        self.poll_lines(needles, limit, true).await
    }

    async fn poll_lines(&mut self, needles: &[&str], limit: Duration, alive: bool) -> String {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(l) = self
                .lines()
                .into_iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return l;
            }
            if alive {
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!(
                        "{} exited ({status}) before {needles:?}:\n{}",
                        self.name,
                        self.lines().join("\n")
                    );
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} did not log {needles:?} within {limit:?}:\n{}",
                self.name,
                tail(&self.lines(), 60)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (up to `limit`) for a log line containing every one of `needles`, whether or
    /// not the process still runs (its last lines, after it exited).
    pub async fn wait_for_lines(&mut self, needles: &[&str], limit: Duration) -> String {
        self.poll_lines(needles, limit, false).await
    }

    /// SIGKILL: no cleanup of any kind runs.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn tail(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}
