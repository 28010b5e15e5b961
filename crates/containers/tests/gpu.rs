#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

//! The GPU-release wait against a stand-in `nvidia-smi` (a script printing what the real
//! one prints), since this machine has no GPU.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use cacheon_containers::{wait_released, ContainerError, GpuProbe, Gpus};

/// A fake nvidia-smi that reports `busy` MiB on GPU 1 for its first `calls` invocations.
fn fake_smi(dir: &std::path::Path, calls: u32) -> std::path::PathBuf {
    let counter = dir.join("count");
    std::fs::write(&counter, "0").unwrap();
    let script = dir.join("nvidia-smi");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nn=$(cat {c}); echo $((n+1)) > {c}\n\
             if [ \"$n\" -lt {calls} ]; then used=70000; else used=3; fi\n\
             echo \"0, 5\"\necho \"1, $used\"\n",
            c = counter.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn probe(smi: std::path::PathBuf, timeout_ms: u64) -> GpuProbe {
    GpuProbe {
        nvidia_smi: smi,
        free_below_mib: 1024,
        timeout: Duration::from_millis(timeout_ms),
        poll: Duration::from_millis(20),
    }
}

#[tokio::test]
async fn waits_until_memory_is_released_and_only_for_the_gpus_used() {
    let dir = tempfile::tempdir().unwrap();
    let smi = fake_smi(dir.path(), 3);
    wait_released(&Gpus::All, &probe(smi.clone(), 5_000))
        .await
        .unwrap();
    // It really polled until the fourth call.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("count"))
            .unwrap()
            .trim(),
        "4"
    );

    // GPU 0 alone was never busy: no waiting.
    let smi = fake_smi(dir.path(), 1000);
    wait_released(&Gpus::Ids(vec!["0".into()]), &probe(smi.clone(), 5_000))
        .await
        .unwrap();
    // GPU 1 never frees up: an infrastructure failure, not the miner's.
    let err = wait_released(&Gpus::Ids(vec!["1".into()]), &probe(smi, 200))
        .await
        .unwrap_err();
    assert!(matches!(err, ContainerError::GpuBusy(_)), "{err}");
    // No GPUs, nothing to ask.
    let absent = probe(dir.path().join("no-such-binary"), 100);
    wait_released(&Gpus::None, &absent).await.unwrap();
    assert!(wait_released(&Gpus::All, &absent).await.is_err());
}
