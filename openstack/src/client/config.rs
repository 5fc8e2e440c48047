//! clouds.yaml: which cloud, how to authenticate, which endpoints to use.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::super::{Error, Result};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// One cloud from a clouds.yaml: where Keystone is, how to authenticate, which endpoints to use.
#[derive(Clone)]
pub struct CloudConfig {
    pub auth_url: String,
    pub auth: Auth,
    pub region: Option<String>,
    /// Catalog interface: `public` unless the cloud entry says otherwise.
    pub interface: String,
    /// PEM bundle of extra CAs (clouds.yaml `cacert`).
    pub ca_pem: Option<Vec<u8>>,
    /// Limit for one request, including the response body (clouds.yaml `api_timeout`).
    pub timeout: Duration,
}

/// Keystone v3 credentials. Debug output never shows secrets.
#[derive(Clone)]
pub enum Auth {
    ApplicationCredential {
        id: String,
        secret: String,
    },
    Password {
        username: String,
        password: String,
        user_domain: String,
        project: String,
        project_domain: String,
    },
}

impl std::fmt::Debug for CloudConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = match &self.auth {
            Auth::ApplicationCredential { id, .. } => format!("application credential {id}"),
            Auth::Password {
                username, project, ..
            } => format!("password for {username} in {project}"),
        };
        f.debug_struct("CloudConfig")
            .field("auth_url", &self.auth_url)
            .field("auth", &auth)
            .field("region", &self.region)
            .field("interface", &self.interface)
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[derive(Deserialize)]
struct CloudsFile {
    clouds: BTreeMap<String, CloudEntry>,
}

#[derive(Deserialize)]
struct CloudEntry {
    auth: BTreeMap<String, String>,
    auth_type: Option<String>,
    region_name: Option<String>,
    interface: Option<String>,
    cacert: Option<String>,
    api_timeout: Option<f64>,
}

impl CloudConfig {
    /// Reads cloud `cloud` from the clouds.yaml at `path`.
    pub fn from_clouds_yaml(path: impl AsRef<Path>, cloud: &str) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))?;
        Self::from_yaml(&text, cloud).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Parses cloud `cloud` from clouds.yaml text (e.g. a Secret's `clouds.yaml` key).
    pub fn from_yaml(text: &str, cloud: &str) -> Result<Self> {
        let file: CloudsFile =
            serde_yaml::from_str(text).map_err(|e| Error::Config(format!("invalid clouds.yaml: {e}")))?;
        let entry = file
            .clouds
            .get(cloud)
            .ok_or_else(|| Error::Config(format!("no cloud {cloud:?} in clouds.yaml")))?;
        let get = |key: &str| entry.auth.get(key).cloned();
        let need =
            |key: &str| get(key).ok_or_else(|| Error::Config(format!("cloud {cloud:?}: auth.{key} missing")));
        let auth = match entry.auth_type.as_deref().unwrap_or("password") {
            "v3applicationcredential" | "applicationcredential" => Auth::ApplicationCredential {
                id: need("application_credential_id")?,
                secret: need("application_credential_secret")?,
            },
            "password" | "v3password" => Auth::Password {
                username: need("username")?,
                password: need("password")?,
                user_domain: get("user_domain_name").unwrap_or_else(|| "Default".into()),
                project: need("project_name")?,
                project_domain: get("project_domain_name").unwrap_or_else(|| "Default".into()),
            },
            other => {
                return Err(Error::Config(format!(
                    "cloud {cloud:?}: auth_type {other:?} is not supported"
                )));
            }
        };
        let ca_pem = match &entry.cacert {
            Some(path) => {
                Some(std::fs::read(path).map_err(|e| Error::Config(format!("reading cacert {path}: {e}")))?)
            }
            None => None,
        };
        Ok(Self {
            auth_url: need("auth_url")?,
            auth,
            region: entry.region_name.clone(),
            interface: entry.interface.clone().unwrap_or_else(|| "public".into()),
            ca_pem,
            timeout: entry
                .api_timeout
                .map(Duration::from_secs_f64)
                .unwrap_or(DEFAULT_TIMEOUT),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLOUDS: &str = r#"
clouds:
  nestplane:
    auth_type: v3applicationcredential
    auth:
      auth_url: http://127.0.0.1:5000/v3
      application_credential_id: abc
      application_credential_secret: s3cret
    region_name: RegionOne
    api_timeout: 5
  admin:
    auth:
      auth_url: http://127.0.0.1:5000
      username: admin
      password: pw
      project_name: admin
"#;

    #[test]
    fn reads_application_credentials_and_passwords() {
        let cloud = CloudConfig::from_yaml(CLOUDS, "nestplane").unwrap();
        assert!(matches!(cloud.auth, Auth::ApplicationCredential { ref id, .. } if id == "abc"));
        assert_eq!(cloud.interface, "public");
        assert_eq!(cloud.timeout, Duration::from_secs(5));
        assert!(!format!("{cloud:?}").contains("s3cret"));
        let admin = CloudConfig::from_yaml(CLOUDS, "admin").unwrap();
        assert!(matches!(admin.auth, Auth::Password { ref user_domain, .. } if user_domain == "Default"));
        let missing = CloudConfig::from_yaml(CLOUDS, "other").unwrap_err();
        assert!(missing.to_string().contains("no cloud \"other\""));
    }
}
