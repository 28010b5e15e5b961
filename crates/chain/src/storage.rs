//! Typed reads of single storage values at a pinned block, on subxt's dynamic API: types are
//! checked against the node's own metadata at decode time, never against a compiled-in copy.

use subxt::ext::frame_decode::storage::{IntoDecodableValues, IntoEncodableValues};
use subxt::ext::scale_decode::DecodeAsType;

use crate::client::AtBlock;
use crate::error::{self, ChainError};

/// What a storage key tuple must be for the dynamic API, e.g. `(u16,)` or `(u16, AccountId32)`.
pub(crate) trait Keys: IntoEncodableValues + IntoDecodableValues {}
impl<T: IntoEncodableValues + IntoDecodableValues> Keys for T {}

/// Reads `pallet.entry(keys)`, falling back to the entry's default when the key is absent
/// (ValueQuery items) and failing when there is neither.
pub(crate) async fn value<K, V>(
    at: &AtBlock,
    pallet: &'static str,
    entry: &'static str,
    keys: K,
) -> Result<V, ChainError>
where
    K: Keys,
    V: DecodeAsType,
{
    optional(at, pallet, entry, keys)
        .await?
        .ok_or_else(|| error::storage(entry, subxt::error::StorageError::NoValueFound))
}

/// Like [`value`] for an item newer runtimes may lack: `Ok(None)` when the metadata has no
/// such entry, so code can support both runtimes (e.g. the stateful epoch counter).
pub(crate) async fn value_if_present<K, V>(
    at: &AtBlock,
    pallet: &'static str,
    entry: &'static str,
    keys: K,
) -> Result<Option<V>, ChainError>
where
    K: Keys,
    V: DecodeAsType,
{
    if !has_entry(at, pallet, entry) {
        return Ok(None);
    }
    value(at, pallet, entry, keys).await.map(Some)
}

/// Reads a map item: `Ok(None)` when the key is absent and the entry has no default.
pub(crate) async fn optional<K, V>(
    at: &AtBlock,
    pallet: &'static str,
    entry: &'static str,
    keys: K,
) -> Result<Option<V>, ChainError>
where
    K: Keys,
    V: DecodeAsType,
{
    let addr = subxt::dynamic::storage::<K, V>(pallet, entry);
    let found = at
        .storage()
        .try_fetch(addr, keys)
        .await
        .map_err(|e| error::storage(entry, e))?;
    found
        .map(|v| v.decode().map_err(|e| ChainError::decode(entry, e)))
        .transpose()
}

/// Every `(second key, value)` of a double map under the first key `first`, in one prefix
/// iteration (the second key must be stored recoverably, e.g. `Twox64Concat`, `Identity`).
pub(crate) async fn entries<K2, V>(
    at: &AtBlock,
    pallet: &'static str,
    entry: &'static str,
    first: u16,
) -> Result<Vec<(K2, V)>, ChainError>
where
    (u16, K2): Keys,
    (u16,): subxt::storage::PrefixOf<(u16, K2)>,
    V: DecodeAsType,
{
    let addr = subxt::dynamic::storage::<(u16, K2), V>(pallet, entry);
    let mut iter = at
        .storage()
        .iter(addr, (first,))
        .await
        .map_err(|e| error::storage(entry, e))?;
    let mut out = Vec::new();
    while let Some(item) = iter.next().await {
        let item = item.map_err(|e| error::storage(entry, e))?;
        let (_, second) = item
            .key()
            .and_then(|k| k.decode())
            .map_err(|e| ChainError::decode(entry, format!("key: {e}")))?;
        let value = item
            .value()
            .decode()
            .map_err(|e| ChainError::decode(entry, e))?;
        out.push((second, value));
    }
    Ok(out)
}

pub(crate) fn has_entry(at: &AtBlock, pallet: &str, entry: &str) -> bool {
    at.metadata_ref()
        .pallet_by_name(pallet)
        .and_then(|p| p.storage())
        .and_then(|s| s.entry_by_name(entry))
        .is_some()
}
