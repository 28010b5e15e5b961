//! The Docker engine as the pod uses it: pull by digest with the size and digest checks,
//! the sandbox network, and the reaping of leftovers from a previous pod.

use std::collections::HashMap;

use bollard::auth::DockerCredentials;
use bollard::models::NetworkCreateRequest;
use bollard::query_parameters::{
    CreateImageOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use cacheon_core::reference::{Digest, ImageRef};
use futures_util::StreamExt;

use crate::error::{engine, ContainerError};
use crate::registry::{self, Credentials};
use crate::sandbox::LABEL_ROLE;

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
            .build()
            .map_err(|e| ContainerError::Engine(e.to_string()))?;
        Ok(Self { docker, http })
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Pulls `image@digest` after checking, at the registry, that the digest is what it
    /// serves and that the layers fit in `size_limit`; then checks the engine's view (repo
    /// digest and unpacked size). Returns the pinned reference to run.
    pub async fn pull(
        &self,
        image: &ImageRef,
        digest: &Digest,
        creds: Option<&Credentials>,
        size_limit: u64,
        progress: &(dyn Fn(PullProgress) + Sync),
    ) -> Result<String, ContainerError> {
        let compressed = registry::image_size(&self.http, image, digest, creds).await?;
        if compressed > size_limit {
            return Err(ContainerError::ImageTooLarge {
                image: image.to_string(),
                bytes: compressed,
                limit: size_limit,
            });
        }
        let pinned = image.pinned(digest);
        let options = CreateImageOptionsBuilder::new().from_image(&pinned).build();
        let credentials = creds.map(|c| DockerCredentials {
            username: Some(c.username.clone()),
            password: Some(c.password.clone()),
            ..Default::default()
        });
        let mut stream = self.docker.create_image(Some(options), None, credentials);
        while let Some(event) = stream.next().await {
            match event {
                Ok(info) => progress(PullProgress {
                    status: info.status.unwrap_or_default(),
                    layer: info.id,
                }),
                Err(e) => return Err(classify_pull(image, e)),
            }
        }
        self.verify(image, digest, size_limit).await?;
        Ok(pinned)
    }

    /// Starts pulling the next contestant's image while the current one runs; await the
    /// handle when its turn comes.
    pub fn prefetch(
        &self,
        image: ImageRef,
        digest: Digest,
        creds: Option<Credentials>,
        size_limit: u64,
    ) -> tokio::task::JoinHandle<Result<String, ContainerError>> {
        let engine = self.clone();
        tokio::spawn(async move {
            engine
                .pull(&image, &digest, creds.as_ref(), size_limit, &|p| {
                    tracing::debug!(status = %p.status, layer = ?p.layer, "prefetch");
                })
                .await
        })
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
        Ok(())
    }

    /// Creates the internal (no egress) network if it is missing.
    pub async fn ensure_network(&self, name: &str) -> Result<(), ContainerError> {
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
            return Ok(());
        }
        let request = NetworkCreateRequest {
            name: name.to_string(),
            internal: Some(true),
            labels: Some(HashMap::from([(
                LABEL_ROLE.to_string(),
                "network".to_string(),
            )])),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Ok(_) => Ok(()),
            // Created concurrently by another pod process: fine if it is internal.
            Err(e) if e.to_string().contains("already exists") => {
                Box::pin(self.ensure_network(name)).await
            }
            Err(e) => Err(ContainerError::Network(e.to_string())),
        }
    }

    /// Removes every container a previous pod left behind (anything labelled by us).
    /// Returns how many were removed.
    pub async fn reap(&self) -> Result<usize, ContainerError> {
        let filters = HashMap::from([("label", vec![LABEL_ROLE])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let leftovers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(engine)?;
        let mut removed = 0;
        for c in leftovers {
            let Some(id) = c.id else { continue };
            let force = RemoveContainerOptionsBuilder::new()
                .force(true)
                .v(true)
                .build();
            match self.docker.remove_container(&id, Some(force)).await {
                Ok(()) => removed += 1,
                Err(e) if e.to_string().contains("No such container") => {}
                Err(e) => return Err(engine(e)),
            }
            tracing::info!(container = %id, "reaped a leftover container");
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
