//! Query-string and path parameters, parsed by hand so every bad value is a JSON 400
//! that names the parameter (axum's own rejections are plain text).

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use cacheon_core::SubmissionState;

use crate::error::ApiError;

/// The longest hotkey accepted in a filter (ss58 addresses are 47 or 48 characters).
const MAX_HOTKEY_LEN: usize = 64;
/// The longest log label accepted.
const MAX_LABEL_LEN: usize = 200;

/// The query string as `(name, value)` pairs. Unknown names are ignored; a known one given
/// twice is an error; an empty value counts as absent (what an empty form field sends).
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|Query(pairs)| Self(pairs))
            .map_err(|_| ApiError::bad("malformed query string"))
    }
}

impl Params {
    fn one(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
        let first = values.next();
        if values.next().is_some() {
            return Err(ApiError::bad(format!(
                "parameter `{name}` is given more than once"
            )));
        }
        Ok(first.map(String::as_str).filter(|v| !v.is_empty()))
    }

    /// `limit`: `default` when absent, at least 1, values above `max` capped to it (a
    /// number too large for `u32` is refused, like any other non-number).
    pub(crate) fn limit(&self, default: u32, max: u32) -> Result<u32, ApiError> {
        match self.one("limit")? {
            None => Ok(default),
            Some(v) => match v.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(n.min(max)),
                _ => Err(ApiError::bad(format!(
                    "parameter `limit` must be a whole number from 1 to {max}"
                ))),
            },
        }
    }

    /// `state`: one of `SubmissionState`'s codes.
    pub(crate) fn state(&self) -> Result<Option<SubmissionState>, ApiError> {
        let Some(v) = self.one("state")? else {
            return Ok(None);
        };
        v.parse().map(Some).map_err(|_| {
            let codes: Vec<&str> = SubmissionState::ALL.iter().map(|s| s.code()).collect();
            ApiError::bad(format!(
                "parameter `state` must be one of: {}",
                codes.join(", ")
            ))
        })
    }

    /// `uid`: 0 to 65535.
    pub(crate) fn uid(&self) -> Result<Option<u16>, ApiError> {
        let Some(v) = self.one("uid")? else {
            return Ok(None);
        };
        v.parse()
            .map(Some)
            .map_err(|_| ApiError::bad("parameter `uid` must be a whole number from 0 to 65535"))
    }

    /// `hotkey`: an ss58 address (base58, so ASCII letters and digits).
    pub(crate) fn hotkey(&self) -> Result<Option<String>, ApiError> {
        let Some(v) = self.one("hotkey")? else {
            return Ok(None);
        };
        if v.len() > MAX_HOTKEY_LEN || !v.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(ApiError::bad("parameter `hotkey` must be an ss58 address"));
        }
        Ok(Some(v.to_owned()))
    }
}

/// A path's parameters, or a JSON 400.
pub(crate) fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(v)| v)
        .map_err(|_| ApiError::bad("malformed path parameter"))
}

/// A round id: a positive integer (SQLite row ids start at 1).
pub(crate) fn round_id(s: &str) -> Result<i64, ApiError> {
    match s.parse::<i64>() {
        Ok(id) if id >= 1 => Ok(id),
        _ => Err(ApiError::bad("round id must be a positive whole number")),
    }
}

/// A log label: `[A-Za-z0-9:._-]{1,200}`, so it can only name a file under the round's
/// `logs/` prefix.
pub(crate) fn log_label(s: &str) -> Result<&str, ApiError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_LABEL_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'_' | b'-'));
    if ok {
        Ok(s)
    } else {
        Err(ApiError::bad(
            "log label must be 1 to 200 of A-Z a-z 0-9 : . _ -",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Params {
        let uri: axum::http::Uri = format!("/x?{q}").parse().unwrap();
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&uri).unwrap();
        Params(pairs)
    }

    #[test]
    fn limit_defaults_caps_and_refuses() {
        assert_eq!(params("").limit(50, 1000).unwrap(), 50);
        assert_eq!(params("limit=").limit(50, 1000).unwrap(), 50);
        assert_eq!(params("limit=7").limit(50, 1000).unwrap(), 7);
        assert_eq!(params("limit=5000").limit(50, 1000).unwrap(), 1000);
        for bad in [
            "limit=0",
            "limit=-1",
            "limit=abc",
            "limit=99999999999",
            "limit=1&limit=2",
        ] {
            assert!(params(bad).limit(50, 1000).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_parse_or_name_the_parameter() {
        assert_eq!(
            params("state=failed_infra").state().unwrap(),
            Some(SubmissionState::FailedInfra)
        );
        let e = params("state=bogus").state().unwrap_err().to_string();
        assert!(e.contains("`state`") && e.contains("pending"), "{e}");
        assert_eq!(params("uid=65535").uid().unwrap(), Some(65535));
        assert!(params("uid=65536")
            .uid()
            .unwrap_err()
            .to_string()
            .contains("`uid`"));
        assert_eq!(
            params("hotkey=5Abc").hotkey().unwrap().as_deref(),
            Some("5Abc")
        );
        assert!(params("hotkey=%3Cscript%3E").hotkey().is_err());
        assert!(params(&format!("hotkey={}", "a".repeat(65)))
            .hotkey()
            .is_err());
    }

    #[test]
    fn labels_and_round_ids() {
        assert!(log_label("5Abc:12").is_ok());
        assert!(log_label("baseline.v1_x-y").is_ok());
        assert!(log_label(&"a".repeat(200)).is_ok());
        for bad in ["", "a/b", "a b", "<x>", "é", &"a".repeat(201)] {
            assert!(log_label(bad).is_err(), "{bad}");
        }
        assert_eq!(round_id("12").unwrap(), 12);
        for bad in ["0", "-3", "x", "1.5", "99999999999999999999"] {
            assert!(round_id(bad).is_err(), "{bad}");
        }
    }
}
