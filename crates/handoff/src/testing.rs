//! A throwaway S3 server for tests: moto, from the venv `scripts/test-services.sh` installs,
//! one private server (and so one private, in-memory bucket namespace) per [`Moto`], killed
//! when it is dropped. Behind the `testing` feature so that other crates' tests can use it.
//!
//! Tests talk to it with the real aws-sdk-s3 client; nothing is mocked.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::S3Config;

/// How long moto may take to import and start listening (it imports every AWS service).
const START_DEADLINE: Duration = Duration::from_secs(60);

/// Runs moto's server module in the venv's Python with one change: requests are served one
/// at a time. moto checks a write's `If-None-Match` / `If-Match` and then writes, with no
/// lock in between, so its threaded server could let two racing conditional writes both
/// succeed, which real S3 never does; served one at a time, the check and the write are
/// atomic, and the lease race tests test our code rather than moto's threading.
const LAUNCHER: &str = r#"
import sys
import moto.server as server

_run_simple = server.run_simple

def run_simple(*args, **kwargs):
    kwargs["threaded"] = False
    return _run_simple(*args, **kwargs)

server.run_simple = run_simple
server.main(["-H", "127.0.0.1", "-p", sys.argv[1]])
"#;

/// A running moto S3 server on 127.0.0.1.
pub struct Moto {
    /// `http://127.0.0.1:{port}`
    pub endpoint: String,
    child: Child,
    log: PathBuf,
}

impl Moto {
    /// Starts a server on a free port and waits until it answers HTTP. Panics, saying to
    /// run `scripts/test-services.sh`, when moto is not installed.
    pub fn start() -> Moto {
        let state = std::env::var_os("CACHEON_TEST_STATE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp/cacheon-test-services"));
        let bin = state.join("venv/bin");
        let moto_server = bin.join("moto_server");
        let python = bin.join("python");
        assert!(
            moto_server.exists() && python.exists(),
            "moto is not installed ({} is missing): run scripts/test-services.sh \
             (or set CACHEON_TEST_STATE to where it put its venv)",
            moto_server.display()
        );
        let mut last_error = String::new();
        // A free port can be taken by someone else between our look and moto's bind;
        // then moto exits and we try another.
        for _ in 0..5 {
            let port = free_port();
            let log = std::env::temp_dir()
                .join(format!("cacheon-moto-{}-{port}.log", std::process::id()));
            let log_file = std::fs::File::create(&log)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
            let log_err = log_file
                .try_clone()
                .unwrap_or_else(|e| panic!("cannot reopen {}: {e}", log.display()));
            let child = Command::new(&python)
                .args(["-c", LAUNCHER, &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log_file)
                .stderr(log_err)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
            let mut moto = Moto {
                endpoint: format!("http://127.0.0.1:{port}"),
                child,
                log,
            };
            match moto.wait_ready(port) {
                Ok(()) => return moto,
                Err(e) => last_error = e,
            }
        }
        panic!("moto did not start: {last_error}");
    }

    fn wait_ready(&mut self, port: u16) -> Result<(), String> {
        let deadline = Instant::now() + START_DEADLINE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("moto exited ({status}): {}", self.log_tail()));
            }
            if answers_http(port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "no answer on port {port} within {START_DEADLINE:?}: {}",
            self.log_tail()
        ))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(2000);
        text.get(start..).unwrap_or(&text).to_owned()
    }

    /// A configuration for a bucket on this server: dummy credentials, path-style URLs.
    pub fn config(&self, bucket: &str, prefix: &str) -> S3Config {
        S3Config {
            endpoint: Some(self.endpoint.clone()),
            region: "us-east-1".into(),
            bucket: bucket.into(),
            prefix: prefix.into(),
            access_key_id: Some("testing".into()),
            secret_access_key: Some("testing".into()),
            force_path_style: true,
        }
    }

    /// Freezes the server (SIGSTOP): connections are accepted by the kernel but never
    /// answered, as in a network outage, and the stored objects survive.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws the server (SIGCONT); it then answers what queued up meanwhile.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill {sig}: {e}"));
        assert!(status.success(), "kill {sig} failed: {status}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // SIGKILL works on a stopped process too.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free port: {e}"))
}

/// Whether something on the port answers an HTTP request with an HTTP status line.
fn answers_http(port: u16) -> bool {
    let timeout = Duration::from_secs(2);
    let Ok(mut stream) = TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), timeout)
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    if stream
        .write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 8];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}
