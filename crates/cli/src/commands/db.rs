//! `cacheon db migrate`: create or upgrade the store.

use anyhow::Context;
use cacheon_store::Store;

use crate::args::DbArgs;

pub async fn migrate(args: &DbArgs) -> anyhow::Result<()> {
    let store = Store::open(&args.database)
        .await
        .with_context(|| format!("opening store {}", args.database.display()))?;
    let versions = store.applied_migrations().await?;
    store.close().await;
    println!(
        "store {} is at schema {} ({} migration(s) applied)",
        args.database.display(),
        versions.last().copied().unwrap_or(0),
        versions.len()
    );
    Ok(())
}
