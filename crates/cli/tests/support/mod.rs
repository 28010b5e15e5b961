//! What the CLI tests share: running a command that must succeed, a `cacheon mock-miner`
//! process on a free port, and the root filesystem of an offline image built around the
//! test build of `cacheon`.

#![allow(dead_code)] // each test target uses a part

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A `cacheon mock-miner` process (the toy model, or the cheating proxy) listening on a
/// free loopback port, killed when dropped.
pub struct MockProcess {
    child: Child,
    pub url: String,
}

impl MockProcess {
    pub fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cacheon"))
            .args(["mock-miner", "--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn cacheon mock-miner");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the port");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .expect("`listening on ADDR`")
            .to_string();
        Self {
            child,
            url: format!("http://{addr}"),
        }
    }
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd`; panics with its stderr unless it succeeds. Returns stdout.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A tarred root filesystem under `dir` (for `docker import`): the shared libraries of the
/// test build of `cacheon`, empty `/models` and `/tmp`, the stripped binary itself at
/// `/bin/cacheon` when `with_cacheon`, and each of `bins` at `/bin/<file name>`.
pub fn rootfs_tar(dir: &Path, with_cacheon: bool, bins: &[&str]) -> PathBuf {
    let exe = env!("CARGO_BIN_EXE_cacheon");
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    if with_cacheon {
        sh(Command::new("strip")
            .arg("-o")
            .arg(root.join("bin/cacheon"))
            .arg(exe));
    }
    for bin in bins {
        let name = Path::new(bin).file_name().expect("file name");
        std::fs::copy(bin, root.join("bin").join(name)).expect("copy binary");
    }
    for lib in sh(Command::new("ldd").arg(exe)).split_whitespace() {
        if lib.starts_with('/') && Path::new(lib).exists() {
            let dest = root.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
            std::fs::copy(lib, dest).expect("copy library");
        }
    }
    std::fs::create_dir_all(root.join("models")).expect("mkdir");
    std::fs::create_dir_all(root.join("tmp")).expect("mkdir");
    // World-writable with the sticky bit, as in every base image: the sandbox's tmpfs at
    // /tmp takes its mode from the image's directory.
    sh(Command::new("chmod").arg("1777").arg(root.join("tmp")));
    let tar = dir.join("root.tar");
    sh(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg("."));
    tar
}

/// Imports `tar` as `127.0.0.1:5000/<repo>:<pid>` with `entrypoint` (JSON), pushes it to the
/// local registry and removes it locally, so every pull is real. Returns (tag, digest).
pub fn push_image(tar: &Path, entrypoint: &str, repo: &str) -> (String, String) {
    push_image_with(tar, &[format!("ENTRYPOINT {entrypoint}")], repo)
}

/// `push_image` with any Dockerfile `changes` (`ENTRYPOINT …`, `LABEL …`).
pub fn push_image_with(tar: &Path, changes: &[String], repo: &str) -> (String, String) {
    let tag = format!("127.0.0.1:5000/{repo}:{}", std::process::id());
    let mut import = Command::new("docker");
    import.arg("import");
    for change in changes {
        import.args(["-c", change]);
    }
    sh(import.arg(tar).arg(&tag));
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
        .expect("a repo digest after the push");
    sh(Command::new("docker").args(["rmi", "-f", &tag]));
    (tag, digest)
}

/// The Docker engine's own hard limits on open files and locked memory (bytes, `None` for
/// unlimited): a container cannot be given more (runc refuses to start it). A developer's
/// dockerd started from a limited shell has far less than a systemd-run production one.
#[allow(dead_code)] // not every test binary starts containers
pub fn engine_limits() -> (i64, Option<i64>) {
    let pid = sh(Command::new("pidof").arg("dockerd"));
    let pid = pid.split_whitespace().next().expect("dockerd is running");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("dockerd's limits");
    let hard = |name: &str| -> Option<i64> {
        let line = limits.lines().find(|l| l.starts_with(name))?;
        let hard = line[name.len()..].split_whitespace().nth(1)?;
        hard.parse().ok()
    };
    let open_files = hard("Max open files").map_or(65_536, |n| n.min(65_536));
    (open_files, hard("Max locked memory"))
}

/// The pod's runtime floors lowered to what Debian 12's docker.io runs (runc 1.1.5,
/// containerd 1.6.20, with fixes backported under the old numbers; no AppArmor here).
#[allow(dead_code)] // not every test binary starts a pod
pub const RUNTIME_FLOORS_OF_THIS_MACHINE: [&str; 5] = [
    "--min-runc-versions",
    "1.0",
    "--min-containerd-versions",
    "1.0",
    "--allow-no-lsm",
];
