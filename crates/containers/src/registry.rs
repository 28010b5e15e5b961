//! What the registry says about an image before we pull it: that the committed digest is
//! the digest of the manifest it serves, and how big the layers are. An image over the size
//! limit is refused without downloading a byte of it.
//!
//! Speaks the distribution API directly: `GET /v2/<name>/manifests/<digest>`, following a
//! Bearer or Basic challenge once, and descending from an index to its linux/amd64 manifest
//! (whose bytes must hash to the digest the index names).
//!
//! The registry is the miner's choice, so it is treated like the miner's server: loopback,
//! private and IP-literal registries are refused unless the operator allows the host;
//! nothing is followed (no redirects); answers are read up to a cap; credentials are sent
//! only to the host they were configured for, and to a token service only over HTTPS on
//! the same domain (or the very same host, for an allowed local registry).

use std::net::IpAddr;

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
/// Largest token-service answer read.
const MAX_TOKEN_BODY: usize = 64 << 10;

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

/// Credentials for one registry host.
#[derive(Clone, Debug)]
pub struct RegistryAuth {
    /// `ghcr.io`, `registry-1.docker.io`, `localhost:5000`: compared with the image's host.
    pub host: String,
    pub credentials: Credentials,
}

/// What the pod trusts registries with.
#[derive(Clone, Debug, Default)]
pub struct RegistryPolicy {
    /// Credentials, each sent only to its own host.
    pub auth: Vec<RegistryAuth>,
    /// Hosts (`host` or `host:port`) allowed although they are loopback, private or IP
    /// literals: a local mirror, the tests' registry.
    pub allow_hosts: Vec<String>,
    /// Registries the operator runs (`host` or `host:port`): their failures are ours and
    /// void the round instead of disqualifying the miner.
    pub operated: Vec<String>,
}

impl RegistryPolicy {
    /// Whether the operator runs this registry.
    pub fn operated_by_us(&self, host_port: &str) -> bool {
        let host = strip_port(host_port);
        self.operated.iter().any(|a| a == host_port || a == host)
    }

    /// The credentials configured for `host` (the image's registry, Docker Hub's name
    /// normalised), if any.
    pub fn credentials_for(&self, host: &str) -> Option<&Credentials> {
        self.auth
            .iter()
            .find(|a| normalise_host(&a.host) == host)
            .map(|a| &a.credentials)
    }

    fn allows(&self, host_port: &str) -> bool {
        let host = strip_port(host_port);
        self.allow_hosts.iter().any(|a| a == host_port || a == host)
    }

    /// Refuses registries on this machine's own networks unless allowed: a miner must not
    /// make the pod talk to its metadata service, the hand-off bucket or the host.
    pub(crate) async fn check_host(
        &self,
        host_port: &str,
        image: &ImageRef,
    ) -> Result<(), ContainerError> {
        if self.allows(host_port) {
            return Ok(());
        }
        let refuse = |why: String| ContainerError::PullDenied {
            image: image.to_string(),
            reason: format!("registry {host_port}: {why} (an operator may allow it)"),
        };
        let host = strip_port(host_port);
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if host.eq_ignore_ascii_case("localhost") || literal.parse::<IpAddr>().is_ok() {
            return Err(refuse("IP literals and localhost are not allowed".into()));
        }
        let addrs =
            tokio::net::lookup_host((host, 443))
                .await
                .map_err(|e| ContainerError::PullFailed {
                    image: image.to_string(),
                    reason: format!("cannot resolve registry {host}: {e}"),
                })?;
        for addr in addrs {
            if !is_public(addr.ip()) {
                return Err(refuse(format!("it resolves to {}", addr.ip())));
            }
        }
        Ok(())
    }
}

fn strip_port(host_port: &str) -> &str {
    if let Some(rest) = host_port.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or(rest);
    }
    match host_port.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) && !h.contains(':') => h,
        _ => host_port,
    }
}

fn normalise_host(host: &str) -> &str {
    match host {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        h => h,
    }
}

/// Not on any network of this machine: not loopback, private, link-local, shared (CGNAT),
/// unique-local, unspecified or multicast.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || (a == 100 && (64..128).contains(&b))
                || a == 0)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
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
    /// `host[:port]`, Docker Hub's normalised.
    pub(crate) host: String,
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
            host,
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
    policy: &RegistryPolicy,
) -> Result<u64, ContainerError> {
    let loc = Location::of(image);
    policy.check_host(&loc.host, image).await?;
    let creds = policy.credentials_for(&loc.host);
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
        if Digest::parse(&child).is_err() {
            return Err(ContainerError::PullDenied {
                image: image.to_string(),
                reason: format!("the index names a malformed digest `{child}`"),
            });
        }
        let (bytes, found) = fetch(client, &loc, &child, creds, &mut token, image).await?;
        // The engine pulls the platform manifest the index names; it must be the one the
        // sizes below are read from.
        if found != child {
            return Err(ContainerError::DigestMismatch {
                image: format!("{image} (linux/amd64 manifest)"),
                expected: child,
                found,
            });
        }
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
    let unreachable = |e: reqwest::Error| ContainerError::PullFailed {
        image: image.to_string(),
        reason: format!("{url}: {e}"),
    };
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
                *token = Some(bearer_token(client, loc, bearer, creds, image).await?);
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
            _ => {
                return Err(ContainerError::PullFailed {
                    image: image.to_string(),
                    reason: format!("{url}: HTTP {status}"),
                })
            }
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
    loc: &Location,
    challenge: &str,
    creds: Option<&Credentials>,
    image: &ImageRef,
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
    let denied = |reason: String| ContainerError::PullDenied {
        image: image.to_string(),
        reason,
    };
    let realm = realm.ok_or_else(|| denied(format!("bad challenge: {challenge}")))?;
    let url = reqwest::Url::parse(&realm)
        .map_err(|e| denied(format!("token realm `{realm}` is not a URL: {e}")))?;
    if !realm_allowed(loc, &url) {
        return Err(denied(format!(
            "token realm `{realm}` is not HTTPS on the registry's own domain; nothing sent"
        )));
    }
    let mut req = client.get(url).query(&query);
    if let Some(c) = creds {
        req = req.basic_auth(&c.username, Some(&c.password));
    }
    #[derive(Deserialize)]
    struct Token {
        token: Option<String>,
        access_token: Option<String>,
    }
    let failed = |reason: String| ContainerError::PullFailed {
        image: image.to_string(),
        reason,
    };
    let mut resp = req
        .send()
        .await
        .map_err(|e| failed(format!("{realm}: {e}")))?;
    if !resp.status().is_success() {
        return Err(denied(format!("token service answered {}", resp.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| failed(format!("{realm}: {e}")))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_TOKEN_BODY {
            return Err(denied(format!(
                "token answer larger than {MAX_TOKEN_BODY} bytes"
            )));
        }
    }
    let t: Token = serde_json::from_slice(&body).map_err(|e| failed(format!("{realm}: {e}")))?;
    t.token
        .or(t.access_token)
        .ok_or_else(|| failed(format!("{realm}: no token in the answer")))
}

/// A token service may be asked (with credentials) only over HTTPS on the registry's own
/// registrable domain (`auth.docker.io` for `registry-1.docker.io`), or on the very same
/// host as a plain-HTTP registry the operator allowed.
fn realm_allowed(loc: &Location, realm: &reqwest::Url) -> bool {
    let Some(realm_host) = realm.host_str() else {
        return false;
    };
    let registry_host = strip_port(&loc.host);
    if realm_host.eq_ignore_ascii_case(registry_host) {
        return realm.scheme() == "https" || loc.base.starts_with("http://");
    }
    if realm.scheme() != "https" || realm_host.parse::<IpAddr>().is_ok() {
        return false;
    }
    let domain = |h: &str| -> Option<String> {
        let labels: Vec<&str> = h.trim_end_matches('.').rsplitn(3, '.').collect();
        (labels.len() >= 2).then(|| format!("{}.{}", labels[1], labels[0]).to_lowercase())
    };
    domain(realm_host).is_some_and(|d| Some(d) == domain(registry_host))
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

    #[test]
    fn token_realms_stay_on_the_registrys_domain() {
        let loc = |s: &str| Location::of(&ImageRef::parse(s).unwrap());
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        let hub = loc("org/x");
        assert!(realm_allowed(&hub, &url("https://auth.docker.io/token")));
        assert!(!realm_allowed(&hub, &url("http://auth.docker.io/token")));
        assert!(!realm_allowed(&hub, &url("https://evil.example/token")));
        assert!(!realm_allowed(&hub, &url("https://169.254.169.254/token")));
        let ghcr = loc("ghcr.io/org/x");
        assert!(realm_allowed(&ghcr, &url("https://ghcr.io/token")));
        assert!(!realm_allowed(
            &ghcr,
            &url("https://ghcr.io.evil.example/token")
        ));
        let local = loc("localhost:5000/x");
        assert!(realm_allowed(&local, &url("http://localhost:6000/token")));
        assert!(!realm_allowed(&local, &url("http://127.0.0.1:6000/token")));
    }

    #[test]
    fn private_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.17.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "140.82.112.3", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        let p = RegistryPolicy {
            allow_hosts: vec!["localhost:5000".into()],
            ..RegistryPolicy::default()
        };
        assert!(p.allows("localhost:5000"));
        assert!(!p.allows("localhost:5001"));
        assert_eq!(strip_port("[::1]:5000"), "::1");
        assert_eq!(strip_port("ghcr.io"), "ghcr.io");
    }
}
