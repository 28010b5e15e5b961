//! Pod provisioners (SPEC §9): how a round gets a GPU machine. `static` pods are run by
//! the operator and poll the bucket on their own; `command` runs an operator script with
//! the round id in its environment to start a pod, and another to stop it once the round
//! is closed. Starting twice is harmless (leases let exactly one pod work on a round), so
//! a host that restarts may simply ask again.

use std::time::Duration;

use futures_util::future::BoxFuture;

pub trait Provisioner: Send + Sync {
    /// Asks for a pod for `round`. An error is reported and retried on the next pass.
    fn start(&self, round: i64) -> BoxFuture<'_, Result<(), String>>;
    /// The round is closed: its pod may go.
    fn stop(&self, round: i64) -> BoxFuture<'_, Result<(), String>>;
}

/// Pods are started by the operator; nothing to do.
pub struct StaticProvisioner;

impl Provisioner for StaticProvisioner {
    fn start(&self, _round: i64) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    fn stop(&self, _round: i64) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// Runs `sh -c <start>` / `sh -c <stop>` with `CACHEON_ROUND_ID` set, each with a
/// deadline; a non-zero exit is an error (with the script's last output).
pub struct CommandProvisioner {
    pub start: String,
    pub stop: Option<String>,
    pub timeout: Duration,
}

impl CommandProvisioner {
    async fn run(&self, script: &str, round: i64) -> Result<(), String> {
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("CACHEON_ROUND_ID", round.to_string())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(self.timeout, child)
            .await
            .map_err(|_| format!("provisioner script timed out after {:?}", self.timeout))?
            .map_err(|e| format!("cannot run the provisioner script: {e}"))?;
        if out.status.success() {
            tracing::info!(round, "provisioner script succeeded");
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: String = stderr
            .chars()
            .rev()
            .take(500)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        Err(format!(
            "provisioner script exited with {}: {}",
            out.status,
            tail.trim()
        ))
    }
}

impl Provisioner for CommandProvisioner {
    fn start(&self, round: i64) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.run(&self.start, round).await })
    }
    fn stop(&self, round: i64) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            match &self.stop {
                Some(script) => self.run(script, round).await,
                None => Ok(()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn command_gets_the_round_id() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("started");
        let p = CommandProvisioner {
            start: format!("echo \"$CACHEON_ROUND_ID\" >> '{}'", out.display()),
            stop: Some("echo bye >&2; exit 3".into()),
            timeout: Duration::from_secs(10),
        };
        p.start(42).await.unwrap();
        p.start(43).await.unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "42\n43\n");
        let err = p.stop(42).await.unwrap_err();
        assert!(err.contains("bye"), "{err}");
        let slow = CommandProvisioner {
            start: "sleep 5".into(),
            stop: None,
            timeout: Duration::from_millis(100),
        };
        assert!(slow.start(1).await.unwrap_err().contains("timed out"));
        assert!(slow.stop(1).await.is_ok());
    }
}
