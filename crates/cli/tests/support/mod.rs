//! What the Docker tests share: running a command that must succeed, and the root
//! filesystem of an offline image built around the test build of `cacheon`.

#![allow(dead_code)] // each test target uses a part

use std::path::{Path, PathBuf};
use std::process::Command;

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
    let tar = dir.join("root.tar");
    sh(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg("."));
    tar
}
