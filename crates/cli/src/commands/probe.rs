//! `cacheon probe-sandbox`: the pod's self-test, run inside a sandboxed container exactly
//! like a miner's server. It tries every way out it is told about and reports each; the
//! pod's own listeners count what actually arrived.

use std::time::Duration;

use crate::args::ProbeSandboxArgs;

/// Exit code when anything was reached (`cacheon_pod::safety::PROBE_REACHED`).
const REACHED: i32 = 3;

/// Tries to make new user and mount namespaces (single-threaded: call before the runtime
/// starts). Returns the ones made, which the sandbox's seccomp profile must refuse; what
/// was blocked is printed.
pub fn try_unshare() -> Vec<String> {
    use nix::sched::{unshare, CloneFlags};
    let mut made = Vec::new();
    for (name, flag) in [
        ("user", CloneFlags::CLONE_NEWUSER),
        ("mount", CloneFlags::CLONE_NEWNS),
    ] {
        match unshare(flag) {
            Ok(()) => made.push(name.to_string()),
            Err(e) => println!("blocked unshare({name}): {e}"),
        }
    }
    made
}

/// `unshared`: the namespaces `try_unshare` made before the runtime started.
pub async fn run(a: &ProbeSandboxArgs, unshared: &[String]) -> anyhow::Result<()> {
    let limit = Duration::from_secs(a.timeout_secs.max(1));
    let mut reached = false;
    for addr in &a.connect {
        match tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => {
                reached = true;
                println!("REACHED {addr}");
            }
            Ok(Err(e)) => println!("blocked {addr}: {e}"),
            Err(_) => println!("blocked {addr}: no answer in {limit:?}"),
        }
    }
    for name in &a.resolve {
        match tokio::time::timeout(limit, tokio::net::lookup_host((name.as_str(), 80))).await {
            Ok(Ok(mut addrs)) => match addrs.next() {
                Some(ip) => {
                    reached = true;
                    println!("RESOLVED {name} to {}", ip.ip());
                }
                None => println!("blocked {name}: no address"),
            },
            Ok(Err(e)) => println!("blocked {name}: {e}"),
            Err(_) => println!("blocked {name}: no answer in {limit:?}"),
        }
    }
    for name in unshared {
        reached = true;
        println!("UNSHARED a new {name} namespace");
    }
    if reached {
        std::process::exit(REACHED);
    }
    Ok(())
}
