//! Preflight (SPEC §6 step 1): before a pod claims anything it checks that it can measure
//! what the subnet's rules say it measures — the GPUs, the model directory, the engine and
//! the disk. A pod that fails here claims nothing, so a broken machine cannot void rounds.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cacheon_harness::Vocab;

use crate::safety::{SafetyError, SafetyRequirements};

use cacheon_handoff::documents::{Gpu, Hardware};
use serde::Deserialize;

/// What the machine must have.
#[derive(Debug, Clone)]
pub struct Requirements {
    /// 0 on machines without GPUs (tests, CPU demos): nvidia-smi is then not asked.
    pub gpu_count: u32,
    /// Every GPU's name must contain this (`H200`); empty accepts any.
    pub gpu_name: String,
    pub min_gpu_memory_mib: u64,
    /// `nvidia-smi`, or a stand-in with the same output.
    pub nvidia_smi: PathBuf,
    pub models_dir: PathBuf,
    /// Where images are unpacked (Docker's data root), checked for free space.
    pub docker_root: PathBuf,
    pub min_free_disk_bytes: u64,
    /// Versions and the sandbox self-test (see `safety`).
    pub safety: SafetyRequirements,
}

impl Default for Requirements {
    fn default() -> Self {
        Self {
            gpu_count: 4,
            gpu_name: "H200".into(),
            min_gpu_memory_mib: 140_000,
            nvidia_smi: PathBuf::from("nvidia-smi"),
            models_dir: PathBuf::from("/workspace/models/Qwen2.5-72B-Instruct"),
            docker_root: PathBuf::from("/var/lib/docker"),
            min_free_disk_bytes: 60 << 30,
            safety: SafetyRequirements::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("cannot list GPUs with {tool}: {detail}")]
    GpuQuery { tool: String, detail: String },
    #[error("found {found} GPU(s), need {need}")]
    GpuCount { found: usize, need: u32 },
    #[error(
        "GPU {index} is `{name}` with {memory_mib} MiB; need `{want}` with at least {min_mib} MiB"
    )]
    GpuKind {
        index: u32,
        name: String,
        memory_mib: u64,
        want: String,
        min_mib: u64,
    },
    #[error("model directory {dir}: {detail}")]
    Model { dir: String, detail: String },
    #[error("cannot read free space under {dir}: {detail}")]
    DiskQuery { dir: String, detail: String },
    #[error("only {free} bytes free under {dir}; need {need}")]
    Disk { dir: String, free: u64, need: u64 },
    #[error("unsafe machine: {0}")]
    Safety(#[from] SafetyError),
}

/// The checked hardware, the model's context limit for the baseline's arguments, and its
/// vocabulary (`tokenizer.json`), which the gate reads streamed tokens against.
#[derive(Debug, Clone)]
pub struct Checked {
    pub hardware: Hardware,
    pub max_model_len: u64,
    pub vocab: Arc<Vocab>,
}

/// vLLM's `--max-model-len` is capped here (SPEC §6).
pub const MAX_MODEL_LEN_CAP: u64 = 32_768;

pub async fn run(req: &Requirements) -> Result<Checked, PreflightError> {
    let hardware = if req.gpu_count == 0 {
        Hardware::default()
    } else {
        let hardware = query_gpus(&req.nvidia_smi).await?;
        check_gpus(req, &hardware)?;
        crate::safety::check_gpu_stack(&req.safety, hardware.driver.as_deref()).await?;
        hardware
    };
    let max_model_len = check_model_dir(&req.models_dir)?;
    let vocab = load_vocab(&req.models_dir)?;
    check_disk(&req.docker_root, req.min_free_disk_bytes)?;
    Ok(Checked {
        hardware,
        max_model_len,
        vocab,
    })
}

pub(crate) async fn query_gpus(tool: &Path) -> Result<Hardware, PreflightError> {
    let err = |detail: String| PreflightError::GpuQuery {
        tool: tool.display().to_string(),
        detail,
    };
    let out = tokio::process::Command::new(tool)
        .args([
            "--query-gpu=index,name,memory.total,driver_version",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .await
        .map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        return Err(err(format!(
            "exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    parse_gpus(&String::from_utf8_lossy(&out.stdout)).map_err(err)
}

/// Parses `index, name, memory.total, driver_version` lines.
pub fn parse_gpus(text: &str) -> Result<Hardware, String> {
    let mut hardware = Hardware::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [index, name, memory, driver] = fields[..] else {
            return Err(format!("unreadable line `{line}`"));
        };
        let index = index
            .parse()
            .map_err(|_| format!("bad GPU index in `{line}`"))?;
        let memory_mib = memory
            .parse()
            .map_err(|_| format!("bad memory in `{line}`"))?;
        hardware.gpus.push(Gpu {
            index,
            name: name.to_string(),
            memory_mib,
        });
        hardware.driver = Some(driver.to_string());
    }
    Ok(hardware)
}

fn check_gpus(req: &Requirements, hardware: &Hardware) -> Result<(), PreflightError> {
    if hardware.gpus.len() < req.gpu_count as usize {
        return Err(PreflightError::GpuCount {
            found: hardware.gpus.len(),
            need: req.gpu_count,
        });
    }
    for gpu in &hardware.gpus {
        if !gpu.name.contains(&req.gpu_name) || gpu.memory_mib < req.min_gpu_memory_mib {
            return Err(PreflightError::GpuKind {
                index: gpu.index,
                name: gpu.name.clone(),
                memory_mib: gpu.memory_mib,
                want: req.gpu_name.clone(),
                min_mib: req.min_gpu_memory_mib,
            });
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct ModelConfig {
    max_position_embeddings: Option<u64>,
}

/// The model directory holds `config.json` and weights; returns the context limit.
fn check_model_dir(dir: &Path) -> Result<u64, PreflightError> {
    let err = |detail: String| PreflightError::Model {
        dir: dir.display().to_string(),
        detail,
    };
    let config =
        std::fs::read(dir.join("config.json")).map_err(|e| err(format!("config.json: {e}")))?;
    let config: ModelConfig =
        serde_json::from_slice(&config).map_err(|e| err(format!("config.json: {e}")))?;
    let entries = std::fs::read_dir(dir).map_err(|e| err(e.to_string()))?;
    let has_weights = entries.filter_map(Result::ok).any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name.ends_with(".safetensors") || name.ends_with(".bin")
    });
    if !has_weights {
        return Err(err("no *.safetensors or *.bin weights".into()));
    }
    Ok(config
        .max_position_embeddings
        .unwrap_or(MAX_MODEL_LEN_CAP)
        .min(MAX_MODEL_LEN_CAP))
}

/// The model's tokenizer: without it the gate could not tell which tokens a server
/// generated, so a pod without one claims nothing.
fn load_vocab(dir: &Path) -> Result<Arc<Vocab>, PreflightError> {
    let vocab = Vocab::load(&dir.join("tokenizer.json")).map_err(|e| PreflightError::Model {
        dir: dir.display().to_string(),
        detail: e.to_string(),
    })?;
    if vocab.is_empty() {
        return Err(PreflightError::Model {
            dir: dir.display().to_string(),
            detail: "tokenizer.json has no tokens".into(),
        });
    }
    Ok(Arc::new(vocab))
}

pub(crate) fn check_disk(dir: &Path, need: u64) -> Result<(), PreflightError> {
    if need == 0 {
        return Ok(());
    }
    // The data root may not exist yet (a fresh engine): its parent holds the space.
    let probe = dir
        .ancestors()
        .find(|d| d.exists())
        .unwrap_or(Path::new("/"));
    let free = fs4::available_space(probe).map_err(|e| PreflightError::DiskQuery {
        dir: probe.display().to_string(),
        detail: e.to_string(),
    })?;
    if free < need {
        return Err(PreflightError::Disk {
            dir: probe.display().to_string(),
            free,
            need,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn gpu_inventory_is_checked() {
        let text = "0, NVIDIA H200, 143771, 570.124.06\n1, NVIDIA H200, 143771, 570.124.06\n";
        let hw = parse_gpus(text).unwrap();
        assert_eq!(hw.gpus.len(), 2);
        assert_eq!(hw.driver.as_deref(), Some("570.124.06"));
        let mut req = Requirements {
            gpu_count: 2,
            ..Requirements::default()
        };
        assert!(check_gpus(&req, &hw).is_ok());
        req.gpu_count = 4;
        assert!(matches!(
            check_gpus(&req, &hw),
            Err(PreflightError::GpuCount { found: 2, need: 4 })
        ));
        let h100 = parse_gpus("0, NVIDIA H100 80GB HBM3, 81559, 570\n").unwrap();
        req.gpu_count = 1;
        assert!(matches!(
            check_gpus(&req, &h100),
            Err(PreflightError::GpuKind { .. })
        ));
        assert!(parse_gpus("0, H200\n").is_err());
        assert!(parse_gpus("x, H200, 1, 2\n").is_err());
    }

    #[test]
    fn model_dir_needs_config_and_weights() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_model_dir(dir.path()).is_err());
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"max_position_embeddings": 131072}"#,
        )
        .unwrap();
        assert!(check_model_dir(dir.path()).is_err());
        std::fs::write(dir.path().join("model-00001.safetensors"), b"x").unwrap();
        assert_eq!(check_model_dir(dir.path()).unwrap(), MAX_MODEL_LEN_CAP);
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"max_position_embeddings": 4096}"#,
        )
        .unwrap();
        assert_eq!(check_model_dir(dir.path()).unwrap(), 4096);
        std::fs::write(dir.path().join("config.json"), b"{").unwrap();
        assert!(check_model_dir(dir.path()).is_err());
    }
}
