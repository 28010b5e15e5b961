//! What the registry says about an image before we pull it: that the committed digest is
//! the digest of the manifest it serves, and how big the layers are. An image over the size
//! limit is refused without downloading a byte of it.
//!
//! Speaks the distribution API directly: `GET /v2/<name>/manifests/<digest>`, following a
//! Bearer or Basic challenge once, and descending from an index to its linux/amd64 manifest.

use cacheon_core::reference::{Digest, ImageRef};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::error::ContainerError;

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest read; real ones are a few KiB.
const MAX_MANIFEST: usize = 4 << 20;

/// Registry credentials (`docker login`).
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password never reaches a log.
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct Manifest {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    config: Option<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct Descriptor {
    #[serde(default)]
    digest: String,
    #[serde(default)]
    size: u64,
    platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

/// Where an image's registry is and how to talk to it.
pub(crate) struct Location {
    base: String,
    name: String,
}

impl Location {
    /// Docker's defaults: no registry means Docker Hub, one-component names are `library/`.
    /// Loopback registries (tests, a local mirror) are plain HTTP.
    pub(crate) fn of(image: &ImageRef) -> Self {
        let repository = image.repository();
        let (host, path) = match image.registry() {
            Some(host) => (host.to_string(), repository[host.len() + 1..].to_string()),
            None => ("registry-1.docker.io".to_string(), repository.to_string()),
        };
        let host = if host == "docker.io" {
            "registry-1.docker.io".to_string()
        } else {
            host
        };
        let name = if host == "registry-1.docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let local = host.starts_with("localhost") || host.starts_with("127.");
        let scheme = if local { "http" } else { "https" };
        Self {
            base: format!("{scheme}://{host}"),
            name,
        }
    }
}

/// Total compressed size of the image's layers and config for linux/amd64, after checking
/// that the manifest the registry serves for `digest` really has that digest.
pub(crate) async fn image_size(
    client: &reqwest::Client,
    image: &ImageRef,
    digest: &Digest,
    creds: Option<&Credentials>,
) -> Result<u64, ContainerError> {
    let loc = Location::of(image);
    let mut token: Option<String> = None;
    let (bytes, found) = fetch(client, &loc, digest.as_str(), creds, &mut token, image).await?;
    if found != digest.as_str() {
        return Err(ContainerError::DigestMismatch {
            image: image.to_string(),
            expected: digest.to_string(),
            found,
        });
    }
    let mut manifest: Manifest = parse(&bytes, image)?;
    let is_index = !manifest.manifests.is_empty()
        || manifest
            .media_type
            .as_deref()
            .is_some_and(|m| m.contains("index") || m.contains("list"));
    if is_index {
        let pick = manifest
            .manifests
            .iter()
            .find(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
            })
            .ok_or_else(|| ContainerError::ImageNotFound {
                image: format!("{image} (no linux/amd64 manifest)"),
            })?;
        let child = pick.digest.clone();
        let (bytes, _) = fetch(client, &loc, &child, creds, &mut token, image).await?;
        manifest = parse(&bytes, image)?;
    }
    let layers: u64 = manifest.layers.iter().map(|l| l.size).sum();
    Ok(layers + manifest.config.map_or(0, |c| c.size))
}

fn parse(bytes: &[u8], image: &ImageRef) -> Result<Manifest, ContainerError> {
    serde_json::from_slice(bytes).map_err(|e| ContainerError::PullDenied {
        image: image.to_string(),
        reason: format!("the registry's manifest is not valid JSON: {e}"),
    })
}

/// GETs one manifest; returns its bytes and their digest.
async fn fetch(
    client: &reqwest::Client,
    loc: &Location,
    reference: &str,
    creds: Option<&Credentials>,
    token: &mut Option<String>,
    image: &ImageRef,
) -> Result<(Vec<u8>, String), ContainerError> {
    let url = format!("{}/v2/{}/manifests/{}", loc.base, loc.name, reference);
    let unreachable = |e: reqwest::Error| ContainerError::Registry(format!("{url}: {e}"));
    for attempt in 0..2 {
        let mut req = client.get(&url).header(reqwest::header::ACCEPT, ACCEPT);
        match (token.as_deref(), creds) {
            (Some(t), _) => req = req.bearer_auth(t),
            (None, Some(c)) if attempt > 0 => req = req.basic_auth(&c.username, Some(&c.password)),
            _ => {}
        }
        let mut resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED && attempt == 0 {
            let challenge = resp
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            if let Some(bearer) = challenge.strip_prefix("Bearer ") {
                *token = Some(bearer_token(client, bearer, creds).await?);
            }
            continue;
        }
        match status.as_u16() {
            200 => {}
            404 => {
                return Err(ContainerError::ImageNotFound {
                    image: image.to_string(),
                })
            }
            401 | 403 => {
                return Err(ContainerError::PullDenied {
                    image: image.to_string(),
                    reason: format!("the registry answered {status}"),
                })
            }
            _ => return Err(ContainerError::Registry(format!("{url}: HTTP {status}"))),
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() > MAX_MANIFEST {
                return Err(ContainerError::PullDenied {
                    image: image.to_string(),
                    reason: format!("manifest larger than {MAX_MANIFEST} bytes"),
                });
            }
        }
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        return Ok((bytes, digest));
    }
    Err(ContainerError::PullDenied {
        image: image.to_string(),
        reason: "the registry refused our credentials".into(),
    })
}

/// The token-service dance of a `Bearer realm="…",service="…",scope="…"` challenge.
async fn bearer_token(
    client: &reqwest::Client,
    challenge: &str,
    creds: Option<&Credentials>,
) -> Result<String, ContainerError> {
    let mut realm = None;
    let mut query = Vec::new();
    for part in challenge.split(',') {
        if let Some((k, v)) = part.trim().split_once('=') {
            let v = v.trim_matches('"').to_string();
            match k {
                "realm" => realm = Some(v),
                "service" | "scope" => query.push((k.to_string(), v)),
                _ => {}
            }
        }
    }
    let realm =
        realm.ok_or_else(|| ContainerError::Registry(format!("bad challenge: {challenge}")))?;
    let mut req = client.get(&realm).query(&query);
    if let Some(c) = creds {
        req = req.basic_auth(&c.username, Some(&c.password));
    }
    #[derive(Deserialize)]
    struct Token {
        token: Option<String>,
        access_token: Option<String>,
    }
    let resp = req
        .send()
        .await
        .map_err(|e| ContainerError::Registry(format!("{realm}: {e}")))?;
    if !resp.status().is_success() {
        return Err(ContainerError::PullDenied {
            image: realm.clone(),
            reason: format!("token service answered {}", resp.status()),
        });
    }
    let t: Token = resp
        .json()
        .await
        .map_err(|e| ContainerError::Registry(format!("{realm}: {e}")))?;
    t.token
        .or(t.access_token)
        .ok_or_else(|| ContainerError::Registry(format!("{realm}: no token in the answer")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_defaults_and_local_registries() {
        let loc = |s: &str| Location::of(&ImageRef::parse(s).unwrap());
        let l = loc("ubuntu:22.04");
        assert_eq!(
            (l.base.as_str(), l.name.as_str()),
            ("https://registry-1.docker.io", "library/ubuntu")
        );
        let l = loc("docker.io/org/x");
        assert_eq!(
            (l.base.as_str(), l.name.as_str()),
            ("https://registry-1.docker.io", "org/x")
        );
        let l = loc("ghcr.io/org/x:v1");
        assert_eq!(
            (l.base.as_str(), l.name.as_str()),
            ("https://ghcr.io", "org/x")
        );
        let l = loc("localhost:5000/miner:v1");
        assert_eq!(
            (l.base.as_str(), l.name.as_str()),
            ("http://localhost:5000", "miner")
        );
        let l = loc("127.0.0.1:5000/a/b");
        assert_eq!(
            (l.base.as_str(), l.name.as_str()),
            ("http://127.0.0.1:5000", "a/b")
        );
    }
}
