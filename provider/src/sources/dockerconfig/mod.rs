//! Static credentials from dockerconfigjson files on the node
//! (`--docker-config`): the file format and key rules are in [`file`]; this
//! module routes an image to the entries that match it, keys the cache by
//! the files' content, and checks the credentials against the registry
//! once on a cache miss (`registry_check`).

pub mod file;

pub use file::{
    ConfigEntry, DockerConfig, StaticPlan, host_has_path_keys, load, normalize_key, parse,
    path_key_for_host, resolve,
};

use std::path::PathBuf;

use super::{Credential, FetchContext, Route, Source, SourceError};
use crate::image::ImageRef;
use crate::settings::Options;
use crate::workload::Workload;

/// The node's dockerconfigjson files, read once per request. A file that
/// cannot be used is skipped with a warning, and named if no source serves
/// the image.
pub struct DockerConfigs {
    files: Vec<DockerConfig>,
    skipped: Vec<String>,
}

/// The node's docker configs, in priority order; a file that cannot be used
/// is skipped with a warning and named if no source serves the image.
pub fn load_all(paths: &[PathBuf]) -> DockerConfigs {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for path in paths {
        match load(path) {
            Ok(f) => files.push(f),
            Err(e) => {
                tracing::warn!("{e}; skipping it");
                skipped.push(e);
            }
        }
    }
    DockerConfigs { files, skipped }
}

impl Source for DockerConfigs {
    fn route(&self, image: &ImageRef, _: &Options) -> Option<Box<dyn Route>> {
        resolve(&self.files, image).map(|p| Box::new(StaticRoute(p)) as Box<dyn Route>)
    }

    fn path_scoped(&self, image: &ImageRef, _: &Options) -> bool {
        host_has_path_keys(&self.files, image)
    }

    fn skipped(&self) -> Vec<String> {
        self.skipped.clone()
    }
}

#[derive(Debug)]
struct StaticRoute(StaticPlan);

impl Route for StaticRoute {
    fn id(&self) -> &'static str {
        "static"
    }

    fn describe(&self, _: &ImageRef) -> String {
        "static credentials (docker config)".to_string()
    }

    fn node_identity(&self, _: &Options) -> String {
        let p = &self.0;
        let files: Vec<String> = p
            .auth
            .iter()
            .map(|(k, a)| {
                let from = p
                    .origins
                    .get(k)
                    .map(|o| o.display().to_string())
                    .unwrap_or_default();
                format!("key {k} from {from} (user {})", a.username)
            })
            .collect();
        files.join("; ")
    }

    /// The registry, every file and its content's digest, and the keys.
    fn cache_parts(
        &self,
        image: &ImageRef,
        opts: &Options,
        _: Option<&Workload>,
    ) -> Vec<(&'static str, String)> {
        let p = &self.0;
        let mut parts: Vec<(&str, String)> = vec![
            ("source", "static".into()),
            ("registry", image.registry.clone()),
        ];
        for (path, digest) in opts.docker_configs.iter().zip(&p.digests) {
            parts.push(("file", path.display().to_string()));
            parts.push(("file-sha256", digest.clone()));
        }
        parts.push(("keys", p.auth.keys().cloned().collect::<Vec<_>>().join(",")));
        parts
    }

    fn fetch(&self, ctx: &FetchContext) -> Result<Credential, SourceError> {
        let p = &self.0;
        for (key, creds) in &p.auth {
            let origin = p
                .origins
                .get(key)
                .map(|o| o.display().to_string())
                .unwrap_or_default();
            super::registry_check::verify(
                key,
                creds,
                &format!("docker config {origin}"),
                ctx.opts,
                ctx.deadline,
            )?;
        }
        Ok(Credential::Static {
            auth: p.auth.clone(),
            key_type: p.cache_key_type,
        })
    }
}
