//! Real inference servers in the pod's sandbox, started by our own sandbox code: a real
//! vLLM as the baseline with production-shaped arguments (default torch.compile mode, which
//! compiles and loads C++ kernels from the scratch tmpfs), a real vLLM and a real llama.cpp
//! as honest miners, and a cheating proxy in front of a real vLLM. The images come from
//! `scripts/engine-images.sh` (offline, cached by content); the model is the tiny-qwen2
//! fixture of `shared/realvllm`. Our mock only proves the sandbox suits a static binary;
//! these prove it suits the engines miners and the baseline actually run.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// The baseline's arguments, shaped like production's (.env.example) without tensor
/// parallelism, and float32 as the fixture's weights.
pub const BASELINE_ARGS: &str = "--model /models --served-model-name Qwen2.5-72B-Instruct \
     --max-model-len {max_model_len} --generation-config vllm --dtype float32 --port 8000";

/// The images by name (`vllm`, `vllm-miner`, `llama`, `cheater`): (image, digest).
pub struct Engines(Vec<(String, String, String)>);

impl Engines {
    pub fn get(&self, name: &str) -> (String, String) {
        let (_, image, digest) = self
            .0
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no {name} image"));
        (image.clone(), digest.clone())
    }
}

pub fn shared() -> PathBuf {
    std::env::var_os("CACHEON_SHARED").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
        PathBuf::from,
    )
}

pub fn model_dir() -> PathBuf {
    shared().join("realvllm/tiny-qwen2")
}

/// Runs `scripts/engine-images.sh` once per test binary: it waits for a build already
/// under way (test-services.sh starts one in the background) and builds the cheater around
/// this build's `cacheon`.
pub fn engines() -> &'static Engines {
    static ENGINES: OnceLock<Engines> = OnceLock::new();
    ENGINES.get_or_init(|| {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/engine-images.sh");
        let out = Command::new("bash")
            .arg(script)
            .args(["--cacheon", env!("CARGO_BIN_EXE_cacheon")])
            .env("CACHEON_SHARED", shared())
            .output()
            .expect("run scripts/engine-images.sh");
        assert!(
            out.status.success(),
            "scripts/engine-images.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (name, pinned) = l.split_once(char::is_whitespace)?;
                let (image, digest) = pinned.trim().rsplit_once('@')?;
                Some((name.to_string(), image.to_string(), digest.to_string()))
            })
            .collect();
        Engines(lines)
    })
}

/// One line per contestant of a closed round: outcome, gate, speed next to the
/// baseline's, and start-up seconds, from the verdict report the host serves.
pub fn describe(id: &str, sub: &Value) -> String {
    let report = &sub["rounds"][0]["report"];
    let speed = &report["speed"];
    let gate = &report["gate"];
    let timings = &report["timings"];
    format!(
        "{id}: {} {} | gate pass fraction {} | TTFT {} s vs baseline {} s | throughput {} vs {} tok/s | \
         start {} s, ready {} s",
        sub["state"],
        sub["reason"],
        gate["pass_fraction"],
        speed["contestant"]["ttft_s"],
        speed["baseline"]["ttft_s"],
        speed["contestant"]["tps"],
        speed["baseline"]["tps"],
        timings["start_s"],
        timings["ready_s"],
    )
}
