//! `cacheon prompts`: print the round's prompts for a seed block hash, so anyone can check
//! what a validator sent (and that every validator derives the same).

use std::fmt::Write as _;
use std::io::Write as _;

use cacheon_core::prompts::{generate, PromptKind, PromptSet, WorkloadShape};

use crate::args::PromptsArgs;
use crate::workload;

pub fn run(args: &PromptsArgs) -> anyhow::Result<()> {
    let (corpus, templates) = workload::load(&args.source)?;
    let set = generate(&args.seed, &corpus, &templates, &WorkloadShape::default())?;
    let out = if args.json {
        serde_json::to_string_pretty(&set)? + "\n"
    } else if args.stats {
        distribution(&set)
    } else {
        human(&set) + "\n" + &distribution(&set)
    };
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(())
}

fn human(set: &PromptSet) -> String {
    let mut s = String::new();
    for p in &set.prompts {
        let _ = writeln!(
            s,
            "=== prompt {} · {:?} · {:?} · ~{} tokens ===",
            p.index, p.phase, p.kind, p.approx_tokens
        );
        for m in &p.messages {
            let _ = writeln!(s, "[{}]\n{}\n", m.role, m.content);
        }
    }
    s
}

/// Token-length distribution (estimated tokens) per prompt kind, plus a histogram.
fn distribution(set: &PromptSet) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "seed block hash  {}", set.seed_block_hash);
    let _ = writeln!(s, "corpus hash      {}", set.corpus_hash);
    let _ = writeln!(s, "prompt set hash  {}", set.prompt_set_hash);
    let _ = writeln!(
        s,
        "\nkind   count    min    p50    p90    max   (estimated tokens)"
    );
    for kind in [PromptKind::Short, PromptKind::Long] {
        let mut t: Vec<usize> = set
            .prompts
            .iter()
            .filter(|p| p.kind == kind)
            .map(|p| p.approx_tokens)
            .collect();
        t.sort_unstable();
        if t.is_empty() {
            continue;
        }
        let q = |f: f64| t[((t.len() - 1) as f64 * f).round() as usize];
        let _ = writeln!(
            s,
            "{:<6} {:>5} {:>6} {:>6} {:>6} {:>6}",
            format!("{kind:?}").to_lowercase(),
            t.len(),
            t[0],
            q(0.5),
            q(0.9),
            t[t.len() - 1]
        );
    }
    let _ = writeln!(s);
    let edges = [0, 256, 512, 1024, 2048, 4096, 8192, usize::MAX];
    for w in edges.windows(2) {
        let n = set
            .prompts
            .iter()
            .filter(|p| (w[0]..w[1]).contains(&p.approx_tokens))
            .count();
        let label = if w[1] == usize::MAX {
            format!(">= {}", w[0])
        } else {
            format!("{}-{}", w[0], w[1] - 1)
        };
        let _ = writeln!(s, "{label:>10} | {:<40} {n}", "#".repeat(n.min(40)));
    }
    s
}
