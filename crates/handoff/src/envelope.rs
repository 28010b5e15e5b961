//! Sealing and opening hand-off documents.
//!
//! A document is a JSON object with a `schema_version` ("MAJOR.MINOR") and, when a secret is
//! configured, a `mac`: hex HMAC-SHA256 over the document's canonical bytes, which are its
//! compact JSON without `mac`, keys sorted (serde_json's map is ordered), so the writer and
//! every reader compute the same bytes whatever order the fields arrived in. Readers refuse
//! an unknown major version, a missing or wrong MAC, and anything that is not the expected
//! shape, and say which; nothing from a refused document is used.

use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::Sha256;

/// The version this build writes. Readers accept any minor of the same major: minor bumps
/// only add fields, which older readers ignore.
pub const SCHEMA_MAJOR: u32 = 1;
pub const SCHEMA_VERSION: &str = "1.0";
/// Documents are small; a larger object is not one of ours.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

const VERSION_FIELD: &str = "schema_version";
const MAC_FIELD: &str = "mac";

/// The shared secret (`CACHEON_HANDOFF_SECRET`). Zeroed on drop; `Debug` hides it.
#[derive(Clone)]
pub struct HandoffSecret(zeroize::Zeroizing<Vec<u8>>);

impl HandoffSecret {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self(zeroize::Zeroizing::new(secret.into()))
    }
}

impl std::fmt::Debug for HandoffSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandoffSecret(<redacted>)")
    }
}

/// Why a document was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("document is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    #[error("document is not a JSON object: {0}")]
    NotJson(String),
    #[error("document has no schema_version")]
    NoVersion,
    #[error("document has schema_version {0:?}; this build reads {SCHEMA_MAJOR}.x (upgrade cacheon on both sides)")]
    UnknownVersion(String),
    #[error("document has no MAC but a hand-off secret is configured")]
    Unauthenticated,
    #[error("document MAC does not verify (wrong secret, or the document was altered)")]
    BadMac,
    #[error("document does not have the expected fields: {0}")]
    Shape(String),
    #[error("cannot serialize the document: {0}")]
    Serialize(String),
}

/// Serializes `doc` (a struct: a JSON object) with the schema version and, given a secret,
/// its MAC.
pub fn seal<T: Serialize>(
    doc: &T,
    secret: Option<&HandoffSecret>,
) -> Result<Vec<u8>, EnvelopeError> {
    let value = serde_json::to_value(doc).map_err(|e| EnvelopeError::Serialize(e.to_string()))?;
    let Value::Object(mut map) = value else {
        return Err(EnvelopeError::Serialize(
            "a document must be a JSON object".into(),
        ));
    };
    map.remove(MAC_FIELD);
    map.insert(VERSION_FIELD.into(), Value::String(SCHEMA_VERSION.into()));
    if let Some(secret) = secret {
        let mut mac = hmac(secret)?;
        mac.update(&canonical(&map)?);
        map.insert(
            MAC_FIELD.into(),
            Value::String(hex::encode(mac.finalize().into_bytes())),
        );
    }
    let bytes = serde_json::to_vec_pretty(&Value::Object(map))
        .map_err(|e| EnvelopeError::Serialize(e.to_string()))?;
    // Never write what no reader would accept: the writer learns it now, with the
    // document still in hand, instead of every reader refusing it later.
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(EnvelopeError::TooLarge);
    }
    Ok(bytes)
}

/// Parses and checks a document: size, JSON, schema major version, MAC (required exactly
/// when a secret is configured), then the expected shape.
pub fn open<T: DeserializeOwned>(
    bytes: &[u8],
    secret: Option<&HandoffSecret>,
) -> Result<T, EnvelopeError> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(EnvelopeError::TooLarge);
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    let Value::Object(mut map) = value else {
        return Err(EnvelopeError::NotJson("not an object".into()));
    };
    let version = map
        .get(VERSION_FIELD)
        .and_then(Value::as_str)
        .ok_or(EnvelopeError::NoVersion)?
        .to_owned();
    if major(&version) != Some(SCHEMA_MAJOR) {
        return Err(EnvelopeError::UnknownVersion(version));
    }
    let claimed = map.remove(MAC_FIELD);
    if let Some(secret) = secret {
        let claimed = claimed.ok_or(EnvelopeError::Unauthenticated)?;
        let claimed = claimed
            .as_str()
            .and_then(|s| hex::decode(s).ok())
            .ok_or(EnvelopeError::BadMac)?;
        let mut check =
            <Hmac<Sha256> as Mac>::new_from_slice(&secret.0).map_err(|_| EnvelopeError::BadMac)?;
        check.update(&canonical(&map)?);
        // Constant-time comparison.
        check
            .verify_slice(&claimed)
            .map_err(|_| EnvelopeError::BadMac)?;
    }
    map.remove(VERSION_FIELD);
    serde_json::from_value(Value::Object(map)).map_err(|e| EnvelopeError::Shape(e.to_string()))
}

/// Compact JSON with every object's keys sorted, at every depth. Sorted explicitly rather
/// than trusting serde_json's map order, which a dependency enabling `preserve_order` would
/// silently change.
fn canonical(map: &Map<String, Value>) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = Vec::new();
    write_object(map, &mut out)?;
    Ok(out)
}

fn write_object(map: &Map<String, Value>, out: &mut Vec<u8>) -> Result<(), EnvelopeError> {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    out.push(b'{');
    for (i, key) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, key)
            .map_err(|e| EnvelopeError::Serialize(e.to_string()))?;
        out.push(b':');
        if let Some(value) = map.get(key) {
            write_value(value, out)?;
        }
    }
    out.push(b'}');
    Ok(())
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), EnvelopeError> {
    match value {
        Value::Object(map) => write_object(map, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
            Ok(())
        }
        scalar => serde_json::to_writer(&mut *out, scalar)
            .map_err(|e| EnvelopeError::Serialize(e.to_string())),
    }
}

/// HMAC-SHA256 keyed with the secret (HMAC takes keys of any length: this cannot fail).
fn hmac(secret: &HandoffSecret) -> Result<Hmac<Sha256>, EnvelopeError> {
    <Hmac<Sha256> as Mac>::new_from_slice(&secret.0).map_err(|_| EnvelopeError::BadMac)
}

fn major(version: &str) -> Option<u32> {
    version.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Doc {
        round_id: String,
        contestants: Vec<String>,
        deadline_unix: u64,
    }

    fn doc() -> Doc {
        Doc {
            round_id: "r-42".into(),
            contestants: vec!["5F…:100".into(), "5G…:101".into()],
            deadline_unix: 1_800_000_000,
        }
    }

    /// Scores and gate statistics are floats: every one must read back to the very bits
    /// that were MACed, or a pod's honest document is refused as tampered.
    #[test]
    fn floats_survive_the_mac() {
        let secret = HandoffSecret::new(b"s".to_vec());
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let values: Vec<f64> = (0..20_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                f64::from_bits(x >> 2) // finite, spread over every exponent
            })
            .chain([0.1 + 0.2, 1e-7, 2.0 / 3.0, 1.005])
            .collect();
        let sealed = seal(&serde_json::json!({ "v": values }), Some(&secret)).unwrap();
        let opened: serde_json::Value = open(&sealed, Some(&secret)).unwrap();
        assert_eq!(opened["v"].as_array().unwrap().len(), values.len());
    }

    #[test]
    fn round_trips_with_and_without_a_secret() {
        let secret = HandoffSecret::new(b"shared".to_vec());
        for s in [None, Some(&secret)] {
            let bytes = seal(&doc(), s).expect("seal");
            assert_eq!(open::<Doc>(&bytes, s).expect("open"), doc());
        }
        let sealed: Value =
            serde_json::from_slice(&seal(&doc(), Some(&secret)).expect("seal")).expect("json");
        assert_eq!(sealed["schema_version"], SCHEMA_VERSION);
        assert_eq!(sealed["mac"].as_str().map(str::len), Some(64));
    }

    #[test]
    fn field_order_does_not_matter_but_any_change_does() {
        let secret = HandoffSecret::new(b"shared".to_vec());
        let sealed: Value =
            serde_json::from_slice(&seal(&doc(), Some(&secret)).expect("seal")).expect("json");
        // Re-serialised with keys in another order (a different writer): still verifies.
        let map = sealed.as_object().expect("object");
        let mut reordered = String::from("{");
        for (i, (k, v)) in map.iter().rev().enumerate() {
            if i > 0 {
                reordered.push(',');
            }
            reordered.push_str(&format!("{}:{}", Value::String(k.clone()), v));
        }
        reordered.push('}');
        assert_eq!(
            open::<Doc>(reordered.as_bytes(), Some(&secret)).expect("reordered"),
            doc()
        );
        // One changed value: refused.
        let mut altered = sealed.clone();
        altered["deadline_unix"] = Value::from(1_900_000_000u64);
        let bytes = serde_json::to_vec(&altered).expect("json");
        assert!(matches!(
            open::<Doc>(&bytes, Some(&secret)),
            Err(EnvelopeError::BadMac)
        ));
        // The wrong secret: refused.
        let bytes = serde_json::to_vec(&sealed).expect("json");
        assert!(matches!(
            open::<Doc>(&bytes, Some(&HandoffSecret::new(b"other".to_vec()))),
            Err(EnvelopeError::BadMac)
        ));
    }

    #[test]
    fn canonical_bytes_sort_keys_at_every_depth() {
        let value: Value =
            serde_json::from_str(r#"{"b":{"z":1,"a":[{"y":2,"x":"é"}]},"a":null}"#).expect("json");
        let Value::Object(map) = value else {
            panic!("object")
        };
        let bytes = canonical(&map).expect("canonical");
        assert_eq!(
            String::from_utf8(bytes).expect("utf-8"),
            r#"{"a":null,"b":{"a":[{"x":"é","y":2}],"z":1}}"#
        );
    }

    #[test]
    fn refusals_say_why() {
        let secret = HandoffSecret::new(b"shared".to_vec());
        let unsigned = seal(&doc(), None).expect("seal");
        assert!(matches!(
            open::<Doc>(&unsigned, Some(&secret)),
            Err(EnvelopeError::Unauthenticated)
        ));
        let future =
            br#"{"schema_version":"2.0","round_id":"r","contestants":[],"deadline_unix":1}"#;
        let err = open::<Doc>(future, None).expect_err("major 2");
        assert!(err.to_string().contains("\"2.0\""), "{err}");
        let minor = br#"{"schema_version":"1.7","round_id":"r","contestants":[],"deadline_unix":1,"new_field":true}"#;
        assert!(
            open::<Doc>(minor, None).is_ok(),
            "a newer minor with extra fields is read"
        );
        assert!(matches!(
            open::<Doc>(br#"{"round_id":"r"}"#, None),
            Err(EnvelopeError::NoVersion)
        ));
        assert!(matches!(
            open::<Doc>(b"\xff\x00garbage", None),
            Err(EnvelopeError::NotJson(_))
        ));
        assert!(matches!(
            open::<Doc>(b"[1,2]", None),
            Err(EnvelopeError::NotJson(_))
        ));
        let wrong = br#"{"schema_version":"1.0","round_id":7}"#;
        assert!(matches!(
            open::<Doc>(wrong, None),
            Err(EnvelopeError::Shape(_))
        ));
        assert!(!format!("{secret:?}").contains("shared"));
    }
}
