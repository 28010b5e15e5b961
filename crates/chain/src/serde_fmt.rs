//! How chain values appear in JSON output (`cacheon chain --json`, dry-run logs): byte
//! strings as `0x` hex, accounts as SS58 addresses.

use subxt::utils::AccountId32;

pub(crate) fn hex<S: serde::Serializer>(bytes: impl AsRef<[u8]>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("0x{}", hex::encode(bytes)))
}

pub(crate) fn hex_opt<S: serde::Serializer>(
    bytes: &Option<[u8; 32]>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match bytes {
        Some(b) => s.serialize_some(&format!("0x{}", hex::encode(b))),
        None => s.serialize_none(),
    }
}

pub(crate) fn ss58<S: serde::Serializer>(id: &AccountId32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&id.to_string())
}
