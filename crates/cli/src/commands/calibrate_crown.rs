//! `cacheon calibrate-crown`: how often each crown rule crowns a challenger of known true
//! advantage, simulated with per-request jitter (core's `calibration`). The table behind
//! the king's margin and the confirmation rule's noise multiple.

use cacheon_core::calibration::{advantage_for_lead, rates, Conditions, CrownRule, TrueServer};
use cacheon_core::confirm::ConfirmRule;

use crate::args::CalibrateCrownArgs;

pub fn run(a: &CalibrateCrownArgs) -> anyhow::Result<()> {
    let confirm = ConfirmRule {
        within: a.within,
        multiple: a.multiple,
    };
    if !(0.0..1.0).contains(&a.jitter) || a.rounds == 0 || !confirm.is_valid() {
        anyhow::bail!(
            "--jitter must be in [0, 1), --rounds positive, --within and --multiple non-negative"
        );
    }
    let conditions = Conditions {
        jitter: a.jitter,
        resamples: a.resamples.max(20),
        ..Conditions::default()
    };
    // A baseline like the pinned vLLM, and a king 30 % faster than it.
    let baseline = TrueServer {
        ttft_s: 0.2,
        tpot_s: 0.02,
    };
    let king = baseline.faster(0.3);
    let rules = [
        ("one pass, margin 1%", CrownRule::OnePass, 0.01),
        ("one pass, margin 0", CrownRule::OnePass, 0.0),
        ("confirmed, margin 1%", CrownRule::Confirmed(confirm), 0.01),
        ("confirmed, margin 0", CrownRule::Confirmed(confirm), 0.0),
    ];
    // The noise of a comparison under these conditions, to express advantages in it.
    let probe = rates(
        baseline,
        king,
        0.0,
        CrownRule::OnePass,
        0.0,
        &conditions,
        a.rounds.min(200),
        [a.seed; 32],
    );
    let noise = probe.mean_lead_noise;
    let mut advantages: Vec<(String, f64)> = a
        .advantages
        .iter()
        .map(|p| (format!("{p}%"), p / 100.0))
        .collect();
    for k in [1.0, 3.0] {
        let advantage = advantage_for_lead(baseline, king, k * noise, &conditions);
        advantages.push((format!("{k}× noise ({:.2}%)", 100.0 * advantage), advantage));
    }
    println!(
        "calibrate-crown · {} rounds per cell · jitter {:.1}% per request · confirm within {}× \
         noise, bar {}× noise · measured noise of a lead {:.4} (90% half-width; the king \
         scores {:.4})\n",
        a.rounds,
        a.jitter * 100.0,
        a.within,
        a.multiple,
        noise,
        cacheon_core::calibration::true_lead(baseline, baseline, 0.3, &conditions),
    );
    print!("{:<24}", "true advantage");
    for (name, _, _) in &rules {
        print!("{name:>24}");
    }
    println!();
    for (i, (label, advantage)) in advantages.iter().enumerate() {
        print!("{label:<24}");
        for (j, (_, rule, margin)) in rules.iter().enumerate() {
            let seed = [a.seed.wrapping_add(u8::try_from(i * 8 + j).unwrap_or(0)); 32];
            let r = rates(
                baseline,
                king,
                *advantage,
                *rule,
                *margin,
                &conditions,
                a.rounds,
                seed,
            );
            let cell = match rule {
                CrownRule::OnePass => format!("{:.1}%", r.crowned * 100.0),
                CrownRule::Confirmed(_) => format!(
                    "{:.1}% ({:.0}% conf.)",
                    r.crowned * 100.0,
                    r.confirmed * 100.0
                ),
            };
            print!("{cell:>24}");
        }
        println!();
    }
    println!(
        "\ncrowned: share of rounds the challenger took the crown; conf.: share of rounds that \
         needed a confirmation pass (a second measurement of king and challenger)."
    );
    Ok(())
}
