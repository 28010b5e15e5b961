//! The Docker engine as the pod uses it: pull by digest with the size and digest checks,
//! a deadline and a byte budget; the sandbox network; image removal; and the reaping of
//! this pod's leftovers.

use std::collections::HashMap;
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::models::NetworkCreateRequest;
use bollard::query_parameters::{
    CreateImageOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder,
};
use bollard::Docker;
use cacheon_core::content::ImageContent;
use cacheon_core::reference::{Digest, ImageRef};
use futures_util::StreamExt;

use crate::error::{engine, ContainerError};
use crate::registry::{self, Location, RegistryPolicy};
use crate::sandbox::{LABEL_POD, LABEL_ROLE};

/// The Docker option that names a bridge network's Linux interface.
pub const BRIDGE_OPTION: &str = "com.docker.network.bridge.name";
/// Inter-container traffic on the bridge: off, so no sandboxed container reaches another
/// (a contestant the baseline, or one pod's miner another pod's on the same engine). The
/// pod, on the host's network, still reaches each of them through the bridge.
pub const ICC_OPTION: &str = "com.docker.network.bridge.enable_icc";

/// Everything a pull is held to.
#[derive(Debug, Clone)]
pub struct PullPolicy {
    /// Bytes the image may take, compressed at the registry, downloaded, and unpacked
    /// (SPEC §8: 20 GB).
    pub size_limit: u64,
    /// The whole pull, first byte to last.
    pub timeout: Duration,
    /// Longest wait for the next progress event from the engine.
    pub stall: Duration,
    pub registries: RegistryPolicy,
}

impl Default for PullPolicy {
    fn default() -> Self {
        Self {
            size_limit: 20_000_000_000,
            timeout: Duration::from_secs(30 * 60),
            stall: Duration::from_secs(300),
            registries: RegistryPolicy::default(),
        }
    }
}

/// A container some pod labelled, as `Engine::labelled` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labelled {
    pub id: String,
    /// The pod that started it (`None`: a pod from before pods labelled their own).
    pub pod: Option<String>,
    /// Its round id (`preflight` for a self-test probe).
    pub round: Option<String>,
    /// Creation time, Unix seconds.
    pub created: i64,
}

/// A pull's progress, for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullProgress {
    pub status: String,
    pub layer: Option<String>,
}

/// A connected engine.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) docker: Docker,
    http: reqwest::Client,
}

impl Engine {
    /// Connects over the local socket (`DOCKER_HOST` honoured) and agrees on an API version.
    pub async fn connect() -> Result<Self, ContainerError> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(|e| ContainerError::Engine(format!("cannot connect: {e}")))?
            .negotiate_version()
            .await
            .map_err(|e| ContainerError::Engine(format!("engine unreachable: {e}")))?;
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(60))
            // The registry is the miner's: nothing it says moves our requests elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| ContainerError::Engine(e.to_string()))?;
        Ok(Self { docker, http })
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Whether the engine answers at all.
    pub async fn ping(&self) -> Result<(), ContainerError> {
        self.docker
            .ping()
            .await
            .map(|_| ())
            .map_err(|e| ContainerError::Engine(format!("engine unreachable: {e}")))
    }

    /// Pulls `image@digest` after checking, at the registry, that the digest is what it
    /// serves and that the layers fit in the size limit; then checks the engine's view (repo
    /// digest and unpacked size). Returns the pinned reference to run. A pull that fails a
    /// check or its deadline leaves no image behind.
    pub async fn pull(
        &self,
        image: &ImageRef,
        digest: &Digest,
        policy: &PullPolicy,
        progress: &(dyn Fn(PullProgress) + Sync),
    ) -> Result<String, ContainerError> {
        let pinned = image.pinned(digest);
        // One deadline for everything the registry and the engine do: a registry that
        // stalls any step cannot hold the pod longer.
        let pulled = tokio::time::timeout(policy.timeout, async {
            let compressed =
                registry::image_size(&self.http, image, digest, &policy.registries).await?;
            if compressed > policy.size_limit {
                return Err(ContainerError::ImageTooLarge {
                    image: image.to_string(),
                    bytes: compressed,
                    limit: policy.size_limit,
                });
            }
            self.download(image, &pinned, policy, progress).await?;
            self.verify(image, digest, policy.size_limit).await
        })
        .await
        .unwrap_or_else(|_| {
            Err(ContainerError::PullFailed {
                image: image.to_string(),
                reason: format!("not pulled within {:?}", policy.timeout),
            })
        });
        if let Err(e) = pulled {
            self.remove_image(&pinned).await;
            // A registry is the miner's choice, unless the operator runs it (a mirror of
            // theirs): then its failures are ours.
            return Err(match e {
                ContainerError::PullFailed { reason, .. }
                    if policy.registries.operated_by_us(&Location::of(image).host) =>
                {
                    ContainerError::Mirror(reason)
                }
                e => e,
            });
        }
        Ok(pinned)
    }

    /// The engine's pull, watched: every progress event must come within `stall`, and the
    /// bytes downloaded may not pass the size limit (the registry's sizes were only a claim).
    async fn download(
        &self,
        image: &ImageRef,
        pinned: &str,
        policy: &PullPolicy,
        progress: &(dyn Fn(PullProgress) + Sync),
    ) -> Result<(), ContainerError> {
        let options = CreateImageOptionsBuilder::new().from_image(pinned).build();
        // Credentials go to the engine only for the host they belong to.
        let host = Location::of(image).host;
        let credentials = policy
            .registries
            .credentials_for(&host)
            .map(|c| DockerCredentials {
                username: Some(c.username.clone()),
                password: Some(c.password.clone()),
                serveraddress: Some(host.clone()),
                ..Default::default()
            });
        let mut stream = self.docker.create_image(Some(options), None, credentials);
        let mut downloaded: HashMap<String, u64> = HashMap::new();
        loop {
            let event = match tokio::time::timeout(policy.stall, stream.next()).await {
                Err(_) => {
                    return Err(ContainerError::PullFailed {
                        image: image.to_string(),
                        reason: format!("no progress for {:?}", policy.stall),
                    })
                }
                Ok(None) => return Ok(()),
                Ok(Some(event)) => event,
            };
            let info = event.map_err(|e| classify_pull(image, e))?;
            if info.status.as_deref() == Some("Downloading") {
                if let (Some(id), Some(current)) = (
                    info.id.clone(),
                    info.progress_detail.as_ref().and_then(|d| d.current),
                ) {
                    let layer = downloaded.entry(id).or_default();
                    *layer = (*layer).max(u64::try_from(current).unwrap_or(0));
                }
                let total: u64 = downloaded.values().sum();
                if total > policy.size_limit {
                    return Err(ContainerError::ImageTooLarge {
                        image: image.to_string(),
                        bytes: total,
                        limit: policy.size_limit,
                    });
                }
            }
            progress(PullProgress {
                status: info.status.unwrap_or_default(),
                layer: info.id,
            });
        }
    }

    /// Starts pulling the next contestant's image while the current one runs; await the
    /// handle when its turn comes.
    pub fn prefetch(
        &self,
        image: ImageRef,
        digest: Digest,
        policy: PullPolicy,
    ) -> tokio::task::JoinHandle<Result<String, ContainerError>> {
        let engine = self.clone();
        tokio::spawn(async move {
            engine
                .pull(&image, &digest, &policy, &|p| {
                    tracing::debug!(status = %p.status, layer = ?p.layer, "prefetch");
                })
                .await
        })
    }

    /// Removes a pulled image (best effort: a failure is logged, the next pod's disk check
    /// catches what is left).
    pub async fn remove_image(&self, reference: &str) {
        let options = RemoveImageOptionsBuilder::new().force(true).build();
        match self
            .docker
            .remove_image(reference, Some(options), None)
            .await
        {
            Ok(_) => tracing::debug!(image = reference, "image removed"),
            Err(e) if e.to_string().contains("No such image") => {}
            Err(e) => tracing::warn!(image = reference, "could not remove image: {e}"),
        }
    }

    /// The engine's own view of a pulled image: it must carry the committed repo digest and
    /// fit in the limit once unpacked.
    pub async fn verify(
        &self,
        image: &ImageRef,
        digest: &Digest,
        size_limit: u64,
    ) -> Result<(), ContainerError> {
        let inspect = self
            .docker
            .inspect_image(&image.pinned(digest))
            .await
            .map_err(engine)?;
        let repo_digests = inspect.repo_digests.unwrap_or_default();
        check_repo_digest(image, digest, &repo_digests)?;
        let size = u64::try_from(inspect.size.unwrap_or(0)).unwrap_or(0);
        if size > size_limit {
            return Err(ContainerError::ImageTooLarge {
                image: image.to_string(),
                bytes: size,
                limit: size_limit,
            });
        }
        let config = inspect.config.unwrap_or_default();
        let mut volumes: Vec<String> = config.volumes.unwrap_or_default().into_keys().collect();
        volumes.sort();
        refuse_unsandboxable(image, &volumes, &config.env.unwrap_or_default())
    }

    /// What a pulled image is (`cacheon_core::content`), from the engine's own inspection:
    /// the layer digests it computed while unpacking, and the configuration it will run.
    pub async fn content(&self, pinned: &str) -> Result<ImageContent, ContainerError> {
        let inspect = self.docker.inspect_image(pinned).await.map_err(engine)?;
        let config = inspect.config.unwrap_or_default();
        let mut argv = config.entrypoint.unwrap_or_default();
        argv.extend(config.cmd.unwrap_or_default());
        Ok(ImageContent {
            diff_ids: inspect.root_fs.and_then(|r| r.layers).unwrap_or_default(),
            argv,
            env: config.env.unwrap_or_default(),
            working_dir: config.working_dir.unwrap_or_default(),
            user: config.user.unwrap_or_default(),
        })
    }

    /// Creates the internal (no egress, no IPv6) network if it is missing, on the Linux
    /// bridge `bridge` when one is named: the host's firewall rule (scripts/gpu_setup)
    /// matches that fixed interface name, so re-creating the network cannot silently
    /// escape it. An existing network must match.
    pub async fn ensure_network(
        &self,
        name: &str,
        bridge: Option<&str>,
    ) -> Result<(), ContainerError> {
        if let Ok(existing) = self
            .docker
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
        {
            if existing.internal != Some(true) {
                return Err(ContainerError::Network(format!(
                    "network {name} exists but is not internal; refusing to run miners on it"
                )));
            }
            if existing.enable_ipv6 == Some(true) {
                return Err(ContainerError::Network(format!(
                    "network {name} has IPv6 enabled; refusing to run miners on it"
                )));
            }
            let option = |key: &str| {
                existing
                    .options
                    .as_ref()
                    .and_then(|o| o.get(key))
                    .map(String::as_str)
            };
            if option(ICC_OPTION) != Some("false") {
                // One we made before containers were kept apart: made again, if unused.
                let ours = existing
                    .labels
                    .as_ref()
                    .is_some_and(|l| l.get(LABEL_ROLE).map(String::as_str) == Some("network"));
                let unused = existing.containers.as_ref().is_none_or(|c| c.is_empty());
                if ours && unused {
                    tracing::warn!(
                        network = name,
                        "re-creating the sandbox network with inter-container traffic off"
                    );
                    self.docker
                        .remove_network(name)
                        .await
                        .map_err(|e| ContainerError::Network(e.to_string()))?;
                    return Box::pin(self.ensure_network(name, bridge)).await;
                }
                return Err(ContainerError::Network(format!(
                    "network {name} lets containers reach each other ({ICC_OPTION} is not \
                     false); remove it and let the pod create it"
                )));
            }
            let actual = option(BRIDGE_OPTION);
            if let Some(want) = bridge {
                if actual != Some(want) {
                    return Err(ContainerError::Network(format!(
                        "network {name} is on bridge {actual:?}, not {want}: the host's \
                         firewall rule would not apply; remove the network and let the pod \
                         create it"
                    )));
                }
            }
            return Ok(());
        }
        let request = NetworkCreateRequest {
            name: name.to_string(),
            internal: Some(true),
            enable_ipv6: Some(false),
            options: Some(
                bridge
                    .map(|b| (BRIDGE_OPTION.to_string(), b.to_string()))
                    .into_iter()
                    .chain([(ICC_OPTION.to_string(), "false".to_string())])
                    .collect(),
            ),
            labels: Some(HashMap::from([(
                LABEL_ROLE.to_string(),
                "network".to_string(),
            )])),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Ok(_) => Ok(()),
            // Created concurrently by another pod process: fine if it matches.
            Err(e) if e.to_string().contains("already exists") => {
                Box::pin(self.ensure_network(name, bridge)).await
            }
            Err(e) => Err(ContainerError::Network(e.to_string())),
        }
    }

    /// The gateway addresses of a network (this machine's side of its bridge).
    pub async fn network_gateways(
        &self,
        name: &str,
    ) -> Result<Vec<std::net::IpAddr>, ContainerError> {
        let network = self
            .docker
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .map_err(|e| ContainerError::Network(format!("{name}: {e}")))?;
        Ok(network
            .ipam
            .and_then(|i| i.config)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| c.gateway)
            .filter_map(|g| g.parse().ok())
            .collect())
    }

    /// Every container labelled by a pod (any pod) on this engine.
    pub async fn labelled(&self) -> Result<Vec<Labelled>, ContainerError> {
        let filters = HashMap::from([("label", vec![LABEL_ROLE])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let found = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(engine)?;
        Ok(found
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                Some(Labelled {
                    id: c.id?,
                    pod: labels.get(LABEL_POD).cloned(),
                    round: labels.get(crate::sandbox::LABEL_ROUND).cloned(),
                    created: c.created.unwrap_or(0),
                })
            })
            .collect())
    }

    /// Removes one container (gone already is fine).
    pub async fn remove_container(&self, id: &str) -> Result<(), ContainerError> {
        let force = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(force)).await {
            Ok(()) => Ok(()),
            Err(e) if e.to_string().contains("No such container") => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    /// Removes every container this pod (`pod_id`, also a previous run of it) left behind;
    /// other pods' containers on the same engine are not touched. Returns how many.
    pub async fn reap(&self, pod_id: &str) -> Result<usize, ContainerError> {
        let mut removed = 0;
        for c in self.labelled().await? {
            if c.pod.as_deref() == Some(pod_id) {
                self.remove_container(&c.id).await?;
                tracing::info!(container = %c.id, "reaped a leftover container");
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// The committed digest must be among the image's repo digests (`name@sha256:…`).
pub fn check_repo_digest(
    image: &ImageRef,
    digest: &Digest,
    repo_digests: &[String],
) -> Result<(), ContainerError> {
    let suffix = format!("@{digest}");
    if repo_digests.iter().any(|d| d.ends_with(&suffix)) {
        Ok(())
    } else {
        Err(ContainerError::DigestMismatch {
            image: image.to_string(),
            expected: digest.to_string(),
            found: repo_digests.join(", "),
        })
    }
}

/// What the sandbox does not run, found in the image's configuration. A declared `VOLUME`
/// makes Docker create an anonymous volume on its own disk, outside the read-only root,
/// the scratch size and the pull's size check: the image could fill the disk the next
/// contestant's pull needs. The toolkit's feature variables (`TOOLKIT_VARIABLES`) make it
/// inject devices (InfiniBand, NVSwitch, GPUDirect Storage) that bypass the sandbox
/// network; `container_body` also sets them off, but an image that carries them is refused
/// with its reason rather than silently changed.
pub fn refuse_unsandboxable(
    image: &ImageRef,
    volumes: &[String],
    env: &[String],
) -> Result<(), ContainerError> {
    if !volumes.is_empty() {
        return Err(ContainerError::DeclaresVolume {
            image: image.to_string(),
            paths: volumes.iter().take(8).cloned().collect(),
        });
    }
    let names: Vec<String> = env
        .iter()
        .map(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k))
        .filter(|k| crate::sandbox::TOOLKIT_VARIABLES.contains(k))
        .map(str::to_string)
        .collect();
    if !names.is_empty() {
        return Err(ContainerError::ToolkitVariable {
            image: image.to_string(),
            names,
        });
    }
    Ok(())
}

fn classify_pull(image: &ImageRef, e: bollard::errors::Error) -> ContainerError {
    let text = e.to_string();
    let lower = text.to_lowercase();
    if lower.contains("not found") || lower.contains("manifest unknown") {
        ContainerError::ImageNotFound {
            image: image.to_string(),
        }
    } else if lower.contains("unauthorized") || lower.contains("denied") {
        ContainerError::PullDenied {
            image: image.to_string(),
            reason: text,
        }
    } else if lower.contains("verification failed") || lower.contains("digest did not match") {
        ContainerError::DigestMismatch {
            image: image.to_string(),
            expected: String::new(),
            found: text,
        }
    } else if lower.contains("no space left") {
        ContainerError::DiskFull(text)
    } else {
        ContainerError::Engine(text)
    }
}
