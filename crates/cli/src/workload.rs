//! Loads the corpus and templates prompts are cut from. The repository's `prompts/`
//! directory is compiled into the binary, so every validator running the same release
//! derives the same prompts without shipping files; an operator may point at a larger
//! corpus directory instead (and every validator of the subnet should then use it too).

use std::path::Path;

use anyhow::{bail, Context};
use cacheon_core::gate::GateThresholds;
use cacheon_core::prompts::WorkloadShape;
use cacheon_core::prompts::{Corpus, Templates};
use cacheon_harness::HarnessConfig;
use include_dir::{include_dir, Dir};
use serde::Deserialize;

use crate::args::WorkloadSource;

static BUNDLED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../prompts");

pub fn load(source: &WorkloadSource) -> anyhow::Result<(Corpus, Templates)> {
    let templates = match &source.templates {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading templates {}", path.display()))?,
        None => BUNDLED
            .get_file("templates.json")
            .and_then(|f| f.contents_utf8())
            .context("bundled templates.json missing from the build")?
            .to_owned(),
    };
    let templates = Templates::from_json(&templates).context("invalid templates")?;
    let documents = match &source.corpus_dir {
        Some(dir) => read_corpus_dir(dir)?,
        None => bundled_documents(),
    };
    if documents.is_empty() {
        bail!("the corpus has no *.txt documents");
    }
    Ok((Corpus::new(documents)?, templates))
}

fn bundled_documents() -> Vec<(String, String)> {
    let mut docs = Vec::new();
    collect_bundled(&BUNDLED, &mut docs);
    docs
}

fn collect_bundled(dir: &Dir<'static>, out: &mut Vec<(String, String)>) {
    for file in dir.files() {
        let path = file.path();
        // Named relative to `corpus/`, like `--corpus-dir prompts/corpus` would name them,
        // so pointing at the repository's own corpus derives the very same prompts.
        let name = path.strip_prefix("corpus").ok();
        if let (Some(name), Some(text)) = (name, file.contents_utf8()) {
            if path.extension().is_some_and(|e| e == "txt") {
                out.push((name.to_string_lossy().replace('\\', "/"), text.to_owned()));
            }
        }
    }
    for sub in dir.dirs() {
        collect_bundled(sub, out);
    }
}

/// Every `*.txt` below `root`, named by its path relative to `root`.
fn read_corpus_dir(root: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut docs = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("reading corpus {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "txt") {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("corpus file {} is not UTF-8 text", path.display()))?;
                let name = path.strip_prefix(root).unwrap_or(&path);
                docs.push((name.to_string_lossy().replace('\\', "/"), text));
            }
        }
    }
    Ok(docs)
}

/// The optional `--workload` file: any part left out keeps the validator's default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadFile {
    pub shape: Option<WorkloadShape>,
    pub harness: Option<HarnessConfig>,
    pub thresholds: Option<GateThresholds>,
}

/// Reads a `--workload` file.
pub fn read_file(path: &Path) -> anyhow::Result<WorkloadFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading workload {}", path.display()))?;
    let file: WorkloadFile = serde_json::from_str(&text)
        .with_context(|| format!("workload {} is not valid", path.display()))?;
    if let Some(h) = &file.harness {
        if h.concurrency == 0 || h.max_tokens == 0 {
            bail!(
                "workload {}: concurrency and max_tokens must be positive",
                path.display()
            );
        }
    }
    Ok(file)
}
