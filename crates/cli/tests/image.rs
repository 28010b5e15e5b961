//! The runtime image builds offline with `scripts/build-image.sh` from a base imported
//! locally (the test binary's shared libraries, nothing else), and `cacheon` runs inside it
//! as the unprivileged user the Dockerfile names.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::process::Command;

mod support;
use support::sh;

#[test]
fn the_runtime_image_builds_offline_and_runs_cacheon() {
    let exe = env!("CARGO_BIN_EXE_cacheon");
    let dir = tempfile::tempdir().unwrap();
    let tar = support::rootfs_tar(dir.path(), false, &[]);
    let id = std::process::id();
    let base = format!("cacheon-test-base:{id}");
    let image = format!("cacheon-test-image:{id}");
    sh(Command::new("docker").arg("import").arg(&tar).arg(&base));

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/build-image.sh");
    let built = Command::new("bash")
        .arg(script)
        .arg(&image)
        .env("BASE", &base)
        .env("BINARY", exe)
        .output()
        .unwrap();
    let user = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Config.User}}", &image])
        .output()
        .unwrap();
    let _ = Command::new("docker")
        .args(["rmi", "-f", &image, &base])
        .output();

    let stdout = String::from_utf8_lossy(&built.stdout);
    assert!(
        built.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let version = format!("cacheon {}", env!("CARGO_PKG_VERSION"));
    assert!(stdout.contains(&version), "{stdout}");
    assert_eq!(String::from_utf8_lossy(&user.stdout).trim(), "10001:10001");
}
