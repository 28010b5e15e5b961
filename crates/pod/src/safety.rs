//! Preflight's security half: a pod refuses a machine on which a miner's container could
//! get out. Two kinds of check, both before the first claim:
//!
//! - versions: the Docker engine, the NVIDIA container toolkit and the driver must be at
//!   least the configured minimums (each default names the escape it closes);
//! - a self-test of the sandbox network itself: a probe container, started exactly like a
//!   miner's server, must fail to open a connection to listeners of this machine (on the
//!   network's gateway over IPv4, and on the machine's IPv6 addresses) and must fail to
//!   resolve a public name. A firewall rule that was lost (a reboot without persistence, a
//!   re-created bridge) is found here, not by a miner.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cacheon_containers::{ContainerError, Engine, Labels, SandboxConfig};

/// What the machine's software must be.
#[derive(Debug, Clone)]
pub struct SafetyRequirements {
    /// Docker engine: 26.0.0 stops internal networks from forwarding DNS to the host's
    /// resolvers (CVE-2024-29018), the sandbox's last way to send data out.
    pub min_engine: String,
    /// NVIDIA container toolkit: 1.17.8 closes the hook escapes CVE-2025-23266 and
    /// CVE-2025-23267 (and the earlier CVE-2024-0132/0133).
    pub min_toolkit: String,
    /// NVIDIA driver: the floor for H200 (R550); raise it as NVIDIA publishes bulletins.
    pub min_driver: String,
    /// `nvidia-ctk`, asked for the toolkit's version (only on machines with GPUs).
    pub nvidia_ctk: PathBuf,
    /// The image the self-test probe runs (`cacheon probe-sandbox`; the pod's own image).
    /// `None` skips the self-test (a machine whose network the operator vouches for).
    pub probe_image: Option<String>,
    /// runc's floor per release line (`runtime::RUNC_FLOORS`).
    pub min_runc: Vec<String>,
    /// containerd's floor per release line (`runtime::CONTAINERD_FLOORS`).
    pub min_containerd: Vec<String>,
    /// Accept an engine with neither AppArmor nor SELinux (the operator's word).
    pub allow_no_lsm: bool,
}

impl Default for SafetyRequirements {
    fn default() -> Self {
        Self {
            min_engine: "26.0.0".into(),
            min_toolkit: "1.17.8".into(),
            min_driver: "550.0".into(),
            nvidia_ctk: PathBuf::from("nvidia-ctk"),
            probe_image: None,
            min_runc: crate::runtime::RUNC_FLOORS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            min_containerd: crate::runtime::CONTAINERD_FLOORS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            allow_no_lsm: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SafetyError {
    #[error("{what} version {found} is older than the required {min}: {why}")]
    TooOld {
        what: &'static str,
        found: String,
        min: String,
        why: &'static str,
    },
    #[error("cannot tell the {what} version: {detail}")]
    Unknown { what: &'static str, detail: String },
    #[error("the sandbox network is not closed: {0}")]
    Reachable(String),
    #[error("the sandbox self-test could not run: {0}")]
    SelfTest(String),
    #[error("containers are not confined: {0}")]
    Unconfined(String),
}

/// The leading dotted numbers of a version string (`20.10.24+dfsg1` → 20.10.24).
pub fn parse_version(text: &str) -> Option<Vec<u64>> {
    let text = text.trim().trim_start_matches('v');
    let numeric: String = text
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let parts: Vec<u64> = numeric
        .split('.')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    (!parts.is_empty()).then_some(parts)
}

/// `found >= min`, comparing numbers (missing parts are 0).
pub fn at_least(found: &str, min: &str) -> Option<bool> {
    let (f, m) = (parse_version(found)?, parse_version(min)?);
    let len = f.len().max(m.len());
    let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
    for i in 0..len {
        match at(&f, i).cmp(&at(&m, i)) {
            std::cmp::Ordering::Greater => return Some(true),
            std::cmp::Ordering::Less => return Some(false),
            std::cmp::Ordering::Equal => {}
        }
    }
    Some(true)
}

/// Checks one version against its minimum.
pub fn check_version(
    what: &'static str,
    found: &str,
    min: &str,
    why: &'static str,
) -> Result<(), SafetyError> {
    match at_least(found, min) {
        Some(true) => Ok(()),
        Some(false) => Err(SafetyError::TooOld {
            what,
            found: found.to_string(),
            min: min.to_string(),
            why,
        }),
        None => Err(SafetyError::Unknown {
            what,
            detail: format!("`{found}` is not a version"),
        }),
    }
}

/// The toolkit's and the driver's versions (machines with GPUs).
pub async fn check_gpu_stack(
    req: &SafetyRequirements,
    driver: Option<&str>,
) -> Result<(), SafetyError> {
    let out = tokio::process::Command::new(&req.nvidia_ctk)
        .arg("--version")
        .output()
        .await
        .map_err(|e| SafetyError::Unknown {
            what: "NVIDIA container toolkit",
            detail: format!("{}: {e}", req.nvidia_ctk.display()),
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let found = toolkit_version(&text).ok_or_else(|| SafetyError::Unknown {
        what: "NVIDIA container toolkit",
        detail: format!("unreadable `{}`", text.trim()),
    })?;
    check_version(
        "NVIDIA container toolkit",
        &found,
        &req.min_toolkit,
        "container escapes through its hooks (CVE-2025-23266, CVE-2024-0132)",
    )?;
    let driver = driver.ok_or_else(|| SafetyError::Unknown {
        what: "NVIDIA driver",
        detail: "nvidia-smi named no driver version".into(),
    })?;
    check_version(
        "NVIDIA driver",
        driver,
        &req.min_driver,
        "older drivers carry published kernel-mode vulnerabilities",
    )
}

/// `NVIDIA Container Toolkit CLI version 1.17.8` (and the commit line after it).
pub fn toolkit_version(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.split("version").nth(1))
        .map(|v| v.trim().to_string())
        .filter(|v| parse_version(v).is_some())
}

/// What the self-test saw.
#[derive(Debug, Clone)]
pub struct SelfTestReport {
    /// Every address the probe tried.
    pub targets: Vec<SocketAddr>,
    /// Connections the machine's listeners accepted from the probe (must be 0).
    pub accepted: usize,
    /// The probe's own account, one line per attempt.
    pub probe_output: String,
}

/// Runs the probe container on the sandbox network against listeners on this machine.
pub async fn self_test(
    engine: &Engine,
    sandbox: &SandboxConfig,
    probe_image: &str,
    pod_id: &str,
) -> Result<SelfTestReport, SafetyError> {
    let fail = |e: &dyn std::fmt::Display| SafetyError::SelfTest(e.to_string());
    engine
        .ensure_network(&sandbox.network, sandbox.bridge.as_deref())
        .await
        .map_err(|e| fail(&e))?;
    let accepted = Arc::new(AtomicUsize::new(0));
    let v4 = listen("0.0.0.0:0", &accepted).await.map_err(|e| fail(&e))?;
    let v6 = listen("[::]:0", &accepted).await.ok();
    let mut targets: Vec<SocketAddr> = Vec::new();
    for gateway in engine
        .network_gateways(&sandbox.network)
        .await
        .map_err(|e| fail(&e))?
    {
        let port = if gateway.is_ipv4() { Some(v4) } else { v6 };
        if let Some(port) = port {
            targets.push(SocketAddr::new(gateway, port));
        }
    }
    if let Some(port) = v6 {
        targets.extend(
            host_ipv6_addresses()
                .into_iter()
                .map(|ip| SocketAddr::new(ip, port)),
        );
    }
    if !targets.iter().any(SocketAddr::is_ipv4) {
        return Err(SafetyError::SelfTest(format!(
            "network {} has no IPv4 gateway to test",
            sandbox.network
        )));
    }
    let mut args = vec!["probe-sandbox".to_string()];
    for t in &targets {
        args.extend(["--connect".to_string(), t.to_string()]);
    }
    args.extend(["--resolve".to_string(), "example.com".to_string()]);
    // New namespaces from inside would undo the sandbox's (seccomp must refuse them).
    args.push("--unshare".to_string());
    let labels = Labels {
        round: "preflight".into(),
        submission: "self-test".into(),
        role: "probe".into(),
        pod: pod_id.to_string(),
    };
    let running = engine
        .start(probe_image, &args, &labels, sandbox)
        .await
        .map_err(|e| fail(&e))?;
    let exit = running.wait_exit(Duration::from_secs(60)).await;
    let logs = running.teardown().await.unwrap_or_default();
    let probe_output = String::from_utf8_lossy(&logs).into_owned();
    let report = SelfTestReport {
        targets,
        accepted: accepted.load(Ordering::SeqCst),
        probe_output,
    };
    let code = exit.map_err(|e| fail(&e))?;
    if report.accepted > 0 || code == PROBE_REACHED {
        return Err(SafetyError::Reachable(format!(
            "a container on {} reached this machine or made new namespaces ({} \
             connection(s) accepted): {}; install the firewall rule and keep seccomp on \
             (scripts/gpu_setup/setup.sh)",
            sandbox.network,
            report.accepted,
            report.probe_output.trim()
        )));
    }
    if code != 0 {
        return Err(SafetyError::SelfTest(format!(
            "the probe exited with {code}: {}",
            report.probe_output.trim()
        )));
    }
    Ok(report)
}

/// The probe's exit code when something was reachable.
pub const PROBE_REACHED: i64 = 3;

async fn listen(addr: &str, accepted: &Arc<AtomicUsize>) -> std::io::Result<u16> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let port = listener.local_addr()?.port();
    let count = accepted.clone();
    tokio::spawn(async move {
        // Lives as long as the pod; a listener nobody reaches costs nothing.
        while let Ok((_socket, peer)) = listener.accept().await {
            tracing::error!(%peer, "the sandbox self-test listener was reached");
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    Ok(port)
}

/// This machine's global (and unique-local) IPv6 addresses, from /proc/net/if_inet6.
fn host_ipv6_addresses() -> Vec<IpAddr> {
    let Ok(text) = std::fs::read_to_string("/proc/net/if_inet6") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // address, ifindex, prefix length, scope, flags, name; scope 00 is global.
            let (hex, scope) = (fields.first()?, fields.get(3)?);
            if *scope != "00" || hex.len() != 32 {
                return None;
            }
            let bytes: Vec<u8> = (0..16)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
                .collect::<Option<_>>()?;
            let octets: [u8; 16] = bytes.try_into().ok()?;
            Some(IpAddr::from(octets))
        })
        .collect()
}

impl From<ContainerError> for SafetyError {
    fn from(e: ContainerError) -> Self {
        SafetyError::SelfTest(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_number() {
        assert_eq!(parse_version("20.10.24+dfsg1"), Some(vec![20, 10, 24]));
        assert_eq!(parse_version("v1.17.8"), Some(vec![1, 17, 8]));
        assert_eq!(parse_version("garbage"), None);
        assert_eq!(at_least("26.1.3", "26.0.0"), Some(true));
        assert_eq!(at_least("26.0", "26.0.0"), Some(true));
        assert_eq!(at_least("20.10.24+dfsg1", "26.0.0"), Some(false));
        assert_eq!(at_least("1.17.10", "1.17.8"), Some(true));
        assert_eq!(at_least("1.9.0", "1.17.8"), Some(false));
        assert_eq!(at_least("570.124.06", "550.0"), Some(true));
        assert!(matches!(
            check_version("Docker engine", "20.10.24+dfsg1", "26.0.0", "x"),
            Err(SafetyError::TooOld { .. })
        ));
        assert!(matches!(
            check_version("Docker engine", "", "26.0.0", "x"),
            Err(SafetyError::Unknown { .. })
        ));
    }

    #[test]
    fn the_toolkit_names_its_version() {
        let text = "NVIDIA Container Toolkit CLI version 1.17.8\ncommit: f202b80a9b9d\n";
        assert_eq!(toolkit_version(text).as_deref(), Some("1.17.8"));
        assert_eq!(toolkit_version("nothing here"), None);
    }
}
