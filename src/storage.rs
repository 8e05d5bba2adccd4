//! Storage by URL: the only module that knows URL schemes. It turns a location
//! (`file://`, a plain local path, `memory://`, `s3://`, `gs://`, `az://`,
//! `http(s)://` for reading) into an object store rooted at the bucket plus a
//! path inside it, and opens Delta tables on the same stores. Credentials come
//! from the config's options (already interpolated from the environment) or
//! the standard AWS/GCP/Azure variables, and never appear in errors or logs.

use crate::config::StorageSettings;
use deltalake::DeltaTable;
use object_store::path::Path as StorePath;
use object_store::ObjectStore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Once};
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{location}: not a URL or path tenure can use ({reason})")]
    BadLocation { location: String, reason: String },
    #[error("{url}: unsupported scheme {scheme:?}; use a local path, file://, memory://, s3://, gs:// or az://")]
    Scheme { url: String, scheme: String },
    #[error("{url}: cannot configure the object store: {source}")]
    Build {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{url}: cannot open the Delta table: {source}")]
    Delta {
        url: String,
        #[source]
        source: deltalake::DeltaTableError,
    },
}

/// Check the option names in the config before anything runs.
pub fn check_options(settings: &StorageSettings) -> Result<(), String> {
    for key in settings.options.keys() {
        let k = key.to_ascii_lowercase();
        let known = k.parse::<object_store::aws::AmazonS3ConfigKey>().is_ok()
            || k.parse::<object_store::gcp::GoogleConfigKey>().is_ok()
            || k.parse::<object_store::azure::AzureConfigKey>().is_ok()
            || k.parse::<object_store::ClientConfigKey>().is_ok();
        if !known {
            return Err(format!("unknown object store option {key:?}"));
        }
    }
    Ok(())
}

/// A parsed location: the URL and the store it lives in.
#[derive(Clone)]
pub struct Location {
    pub url: Url,
    pub store: Arc<dyn ObjectStore>,
    /// Path of the location inside `store` (no leading slash).
    pub prefix: StorePath,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", redact(&self.url))
    }
}

/// How much of an object a reader will use, for `Location::read_once_written`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A few pages (a lookup in a key segment).
    Sparse,
    /// Every byte (a state file, checksummed before it is decoded).
    Whole,
}

impl Location {
    /// A child location (`events`, `marts/mrr_monthly`, ...).
    pub fn join(&self, child: &str) -> Location {
        let mut url = self.url.clone();
        let path = format!("{}/{}", url.path().trim_end_matches('/'), child.trim_matches('/'));
        url.set_path(&path);
        let mut prefix = self.prefix.clone();
        for part in child.split('/').filter(|p| !p.is_empty()) {
            prefix = prefix.join(part);
        }
        Location {
            url,
            store: self.store.clone(),
            prefix,
        }
    }

    /// A path inside this location.
    pub fn path(&self, relative: &str) -> StorePath {
        let mut p = self.prefix.clone();
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            p = p.join(part);
        }
        p
    }

    /// The local filesystem path of `relative` inside this location, when the
    /// location is on the local filesystem (`file://` or a plain path); `None`
    /// for every object store. For the few things object_store cannot do on
    /// local files (the scheduler's lease needs a file lock there).
    pub fn local_path(&self, relative: &str) -> Option<std::path::PathBuf> {
        if self.url.scheme() != "file" {
            return None;
        }
        let mut p = self.url.to_file_path().ok()?;
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            p.push(part);
        }
        Some(p)
    }

    /// The bytes of the object `relative`, for objects written once and never
    /// changed in place (state files, key segments): mapped into memory when
    /// the location is on the local filesystem, so that only the pages a run
    /// uses are ever read (with `Access::Whole`, every page is mapped at
    /// once: one call instead of a page fault per page); read whole from an
    /// object store.
    pub async fn read_once_written(&self, relative: &str, access: Access) -> object_store::Result<bytes::Bytes> {
        use object_store::ObjectStoreExt;
        let Some(file) = self.local_path(relative) else {
            return self.store.get(&self.path(relative)).await?.bytes().await;
        };
        let path = self.path(relative);
        let mapped = tokio::task::spawn_blocking(move || -> std::io::Result<bytes::Bytes> {
            let file = std::fs::File::open(file)?;
            // SAFETY: the caller reads only objects that are written once under
            // a name of their own and never changed after; a delete leaves the
            // mapping valid, and object_store replaces a file by renaming.
            let mut options = memmap2::MmapOptions::new();
            if access == Access::Whole {
                options.populate();
            }
            let map = unsafe { options.map(&file)? };
            Ok(bytes::Bytes::from_owner(map))
        })
        .await
        .map_err(|e| object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(e),
        })?;
        mapped.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => object_store::Error::NotFound {
                path: path.to_string(),
                source: Box::new(e),
            },
            _ => object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(e),
            },
        })
    }

    /// The path relative to this location of a path inside it.
    pub fn relative<'a>(&self, path: &'a StorePath) -> Option<String> {
        let parts: Vec<_> = path.prefix_match(&self.prefix)?.map(|p| p.as_ref().to_string()).collect();
        Some(parts.join("/"))
    }

    /// The URL shown to people: no credentials, no query.
    pub fn display(&self) -> String {
        redact(&self.url)
    }
}

fn redact(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.set_query(None);
    u.to_string()
}

/// Object stores by URL, cached per bucket so that `memory://` and every
/// remote bucket is one store for the whole process.
pub struct Storage {
    settings: StorageSettings,
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

static MEMORY: std::sync::LazyLock<Arc<dyn ObjectStore>> =
    std::sync::LazyLock::new(|| Arc::new(object_store::memory::InMemory::new()));

impl Storage {
    pub fn new(settings: StorageSettings) -> Self {
        static HANDLERS: Once = Once::new();
        HANDLERS.call_once(|| {
            deltalake::aws::register_handlers(None);
            deltalake::gcp::register_handlers(None);
            deltalake::azure::register_handlers(None);
        });
        Storage {
            settings,
            stores: Mutex::new(HashMap::new()),
        }
    }

    /// Parse a URL or local path (made absolute) into a [`Location`].
    pub fn location(&self, location: &str) -> Result<Location, StorageError> {
        let url = to_url(location)?;
        let (store, prefix) = self.store_for(&url)?;
        Ok(Location { url, store, prefix })
    }

    fn store_for(&self, url: &Url) -> Result<(Arc<dyn ObjectStore>, StorePath), StorageError> {
        let display = redact(url);
        let bucket_key = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
        let path = StorePath::from_url_path(url.path()).map_err(|e| StorageError::BadLocation {
            location: display.clone(),
            reason: e.to_string(),
        })?;
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = stores.get(&bucket_key) {
            return Ok((store.clone(), path));
        }
        let retry = object_store::RetryConfig {
            max_retries: self.settings.max_retries,
            retry_timeout: self.settings.retry_timeout,
            ..Default::default()
        };
        let build_err = |source| StorageError::Build {
            url: display.clone(),
            source,
        };
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            "file" => Arc::new(object_store::local::LocalFileSystem::new()),
            "memory" => MEMORY.clone(),
            "s3" | "s3a" => {
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(url.host_str().unwrap_or_default())
                    .with_retry(retry.clone());
                for (k, v) in &self.settings.options {
                    if let Ok(key) = k.to_ascii_lowercase().parse() {
                        b = b.with_config(key, v);
                    }
                }
                if let Some(e) = &self.settings.endpoint {
                    b = b.with_endpoint(e);
                }
                if let Some(r) = &self.settings.region {
                    b = b.with_region(r);
                }
                if self.settings.allow_http {
                    b = b.with_allow_http(true);
                }
                Arc::new(b.build().map_err(build_err)?)
            }
            "gs" => {
                let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(url.host_str().unwrap_or_default())
                    .with_retry(retry.clone());
                for (k, v) in &self.settings.options {
                    if let Ok(key) = k.to_ascii_lowercase().parse() {
                        b = b.with_config(key, v);
                    }
                }
                Arc::new(b.build().map_err(build_err)?)
            }
            "az" | "abfs" | "abfss" => {
                let mut b = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_container_name(url.host_str().unwrap_or_default())
                    .with_retry(retry.clone());
                for (k, v) in &self.settings.options {
                    if let Ok(key) = k.to_ascii_lowercase().parse() {
                        b = b.with_config(key, v);
                    }
                }
                if self.settings.allow_http {
                    b = b.with_allow_http(true);
                }
                Arc::new(b.build().map_err(build_err)?)
            }
            "http" | "https" => {
                let base = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
                let base = match url.port() {
                    Some(p) => format!("{base}:{p}"),
                    None => base,
                };
                Arc::new(
                    object_store::http::HttpBuilder::new()
                        .with_url(base)
                        .build()
                        .map_err(build_err)?,
                )
            }
            other => {
                return Err(StorageError::Scheme {
                    url: display,
                    scheme: other.to_string(),
                })
            }
        };
        stores.insert(bucket_key, store.clone());
        Ok((store, path))
    }
}

/// Open (or prepare to create) the Delta table at `location`, on the store the
/// location carries.
pub async fn open_delta_table(location: &Location) -> Result<DeltaTable, StorageError> {
    let err = |source| StorageError::Delta {
        url: location.display(),
        source,
    };
    if location.url.scheme() == "file" {
        if let Ok(dir) = location.url.to_file_path() {
            std::fs::create_dir_all(&dir).map_err(|e| StorageError::BadLocation {
                location: location.display(),
                reason: format!("cannot create the folder: {e}"),
            })?;
        }
    }
    let mut root = location.url.clone();
    root.set_path("/");
    let mut table_url = location.url.clone();
    if !table_url.path().ends_with('/') {
        let p = format!("{}/", table_url.path());
        table_url.set_path(&p);
    }
    let mut table = deltalake::DeltaTableBuilder::from_url(table_url)
        .map_err(err)?
        .with_storage_backend(location.store.clone(), root)
        .build()
        .map_err(err)?;
    match table.load().await {
        Ok(()) | Err(deltalake::DeltaTableError::NotATable(_)) => Ok(table),
        Err(e) => Err(err(e)),
    }
}

/// A URL for a location string; local paths become absolute `file://` URLs.
pub fn to_url(location: &str) -> Result<Url, StorageError> {
    let bad = |reason: String| StorageError::BadLocation {
        location: location.to_string(),
        reason,
    };
    if location.contains("://") {
        let url = Url::parse(location).map_err(|e| bad(e.to_string()))?;
        if url.scheme() == "file" {
            // Normalise `file:///a/b/` to `file:///a/b`.
            let mut u = url.clone();
            let p = u.path().trim_end_matches('/').to_string();
            u.set_path(if p.is_empty() { "/" } else { &p });
            return Ok(u);
        }
        return Ok(url);
    }
    let path = std::path::Path::new(location);
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| bad(e.to_string()))?
            .join(path)
    };
    let normal = normalize(&absolute);
    Url::from_file_path(&normal).map_err(|_| bad("not an absolute path".into()))
}

fn normalize(path: &std::path::Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_become_file_urls() {
        let url = to_url("/tmp/a/../b/").expect("path");
        assert_eq!(url.as_str(), "file:///tmp/b");
        assert_eq!(to_url("file:///tmp/x/").expect("url").as_str(), "file:///tmp/x");
        assert_eq!(to_url("s3://bucket/raw").expect("url").as_str(), "s3://bucket/raw");
    }

    #[test]
    fn secrets_are_not_displayed() {
        let storage = Storage::new(StorageSettings::default());
        let loc = storage.location("memory://user:secret@host/x?token=abc").expect("memory");
        assert!(!loc.display().contains("secret"));
        assert!(!loc.display().contains("abc"));
    }

    #[test]
    fn join_and_relative() {
        let storage = Storage::new(StorageSettings::default());
        let loc = storage.location("memory:///wh").expect("memory");
        let child = loc.join("marts/mrr_monthly");
        assert_eq!(child.url.as_str(), "memory:///wh/marts/mrr_monthly");
        assert_eq!(loc.relative(&child.prefix).as_deref(), Some("marts/mrr_monthly"));
    }
}
