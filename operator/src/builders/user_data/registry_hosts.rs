//! containerd's registry host files for a NodePool's registry mirrors: one
//! `/etc/containerd/certs.d/<registry>/hosts.toml` per upstream registry, the mirrors in the
//! pool's order, the registry itself last (containerd reads them when its CRI registry
//! `config_path` includes `/etc/containerd/certs.d`). A mirror with a CA bundle also gets
//! `certs.d/<registry>/ca.crt`, which every mirror host of that file names as its `ca`.
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use x509_parser::pem::Pem;

use super::{BuildError, invalid};
use crate::api::RegistryMirror;

/// Where containerd looks for registry host files.
pub const CERTS_D: &str = "/etc/containerd/certs.d";
/// What a mirror may do: serve pulls and resolve tags to digests (never pushes).
const MIRROR_CAPABILITIES: [&str; 2] = ["pull", "resolve"];

/// One file under `certs.d` (a hosts.toml or a CA bundle): its path on the worker and its content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertsDFile {
    pub path: String,
    pub content: String,
}

#[derive(Serialize)]
struct Server {
    server: String,
}

/// One `[host."<url>"]` table. Each is serialised on its own: containerd tries hosts in file
/// order, and a map of them would come out sorted by URL.
#[derive(Serialize)]
struct Host<'a> {
    host: BTreeMap<&'a str, HostCapabilities<'a>>,
}

#[derive(Serialize)]
struct HostCapabilities<'a> {
    capabilities: [&'static str; 2],
    /// The CA bundle this host's certificate is checked against, in place of the system's.
    #[serde(skip_serializing_if = "Option::is_none")]
    ca: Option<&'a str>,
}

/// The files of `mirrors` under `certs.d`, in the pool's order; a registry's CA bundle comes
/// before the hosts.toml that names it.
pub fn certs_d_files(mirrors: &[RegistryMirror]) -> Result<Vec<CertsDFile>, BuildError> {
    let mut seen = BTreeSet::new();
    let mut files = Vec::new();
    for mirror in mirrors {
        if !seen.insert(mirror.registry.as_str()) {
            return Err(invalid(
                "registry mirrors",
                format!("registry {} is listed twice", mirror.registry),
            ));
        }
        let ca = mirror
            .ca_bundle
            .as_deref()
            .map(|bundle| ca_file(&mirror.registry, bundle))
            .transpose()?;
        let hosts = hosts_file(mirror, ca.as_ref().map(|f| f.path.as_str()))?;
        files.extend(ca);
        files.push(hosts);
    }
    Ok(files)
}

/// `certs.d/<registry>/ca.crt`: only whole X.509 certificates, since the file is world-readable
/// (a private key pasted by mistake must not land there).
fn ca_file(registry: &str, bundle: &str) -> Result<CertsDFile, BuildError> {
    let refuse = |why: String| invalid("registry mirrors", format!("caBundle of {registry}: {why}"));
    let mut certificates = 0;
    for block in Pem::iter_from_buffer(bundle.as_bytes()) {
        let block = block.map_err(|e| refuse(format!("not PEM: {e}")))?;
        if block.label != "CERTIFICATE" {
            return Err(refuse(format!(
                "holds a {:?} block; only CERTIFICATE blocks belong in a CA bundle",
                block.label
            )));
        }
        block
            .parse_x509()
            .map_err(|e| refuse(format!("certificate {} does not parse: {e}", certificates + 1)))?;
        certificates += 1;
    }
    if certificates == 0 {
        return Err(refuse("holds no PEM certificate".into()));
    }
    Ok(CertsDFile {
        path: format!("{CERTS_D}/{registry}/ca.crt"),
        content: bundle.into(),
    })
}

fn hosts_file(mirror: &RegistryMirror, ca: Option<&str>) -> Result<CertsDFile, BuildError> {
    let registry = mirror.registry.as_str();
    if !is_registry_host(registry) {
        return Err(invalid(
            "registry mirrors",
            format!(
                "{registry:?} is not a registry host such as registry.k8s.io or registry.example.com:5000"
            ),
        ));
    }
    if mirror.endpoints.is_empty() {
        return Err(invalid(
            "registry mirrors",
            format!("registry {registry} has no mirror endpoint"),
        ));
    }
    let mut content = encode(&Server {
        server: upstream(registry),
    })?;
    for endpoint in &mirror.endpoints {
        let url = endpoint.trim_end_matches('/');
        if !is_https_url(url) {
            return Err(invalid(
                "registry mirrors",
                format!(
                    "{endpoint:?} (for {registry}) is not an https URL such as https://mirror.example.com"
                ),
            ));
        }
        content.push('\n');
        content.push_str(&encode(&Host {
            host: BTreeMap::from([(
                url,
                HostCapabilities {
                    capabilities: MIRROR_CAPABILITIES,
                    ca,
                },
            )]),
        })?);
    }
    Ok(CertsDFile {
        path: format!("{CERTS_D}/{registry}/hosts.toml"),
        content,
    })
}

/// The registry's own API, which containerd falls back to after the mirrors. Docker Hub serves
/// `docker.io` images from `registry-1.docker.io`.
fn upstream(registry: &str) -> String {
    match registry {
        "docker.io" => "https://registry-1.docker.io".into(),
        _ => format!("https://{registry}"),
    }
}

/// `host[:port]`, lowercase DNS labels: also a safe directory name.
fn is_registry_host(registry: &str) -> bool {
    let (host, port) = match registry.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    registry.len() <= 253 && host.split('.').all(label_ok) && port_ok
}

/// `https://host[:port][/path]`, without credentials, query, fragment or whitespace.
fn is_https_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    !authority.is_empty()
        && !rest.contains(['?', '#', '@'])
        && !rest.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn encode<T: Serialize>(value: &T) -> Result<String, BuildError> {
    toml::to_string(value).map_err(|source| BuildError::EncodeToml {
        what: "registry mirror hosts.toml",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror(registry: &str, endpoints: &[&str]) -> RegistryMirror {
        RegistryMirror {
            registry: registry.into(),
            endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
            ca_bundle: None,
        }
    }

    /// The hosts of a file in the order containerd reads them, and its server.
    fn read(file: &CertsDFile) -> (String, Vec<String>) {
        let parsed: toml::Table = toml::from_str(&file.content).expect("TOML");
        let server = parsed["server"].as_str().expect("server").to_string();
        // toml::Table sorts keys: take the order from the text, check each entry from the table.
        let hosts: Vec<String> = file
            .content
            .lines()
            .filter_map(|l| l.strip_prefix("[host.\"").and_then(|l| l.strip_suffix("\"]")))
            .map(str::to_string)
            .collect();
        let table = parsed["host"].as_table().expect("host table");
        assert_eq!(table.len(), hosts.len(), "{}", file.content);
        for host in &hosts {
            let capabilities = table[host.as_str()]["capabilities"]
                .as_array()
                .expect("capabilities");
            let capabilities: Vec<&str> = capabilities.iter().filter_map(|c| c.as_str()).collect();
            assert_eq!(capabilities, ["pull", "resolve"], "{host}");
        }
        (server, hosts)
    }

    #[test]
    fn one_file_per_registry_with_its_mirrors_in_order_then_the_registry() {
        let files = certs_d_files(&[
            mirror(
                "registry.k8s.io",
                &[
                    "https://zz-mirror.example.com/k8s/",
                    "https://aa-mirror.example.com:5000",
                ],
            ),
            mirror("docker.io", &["https://hub-cache.example.com"]),
            mirror("registry.example.com:5000", &["https://mirror.example.com/proxy"]),
        ])
        .expect("files");
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/etc/containerd/certs.d/registry.k8s.io/hosts.toml",
                "/etc/containerd/certs.d/docker.io/hosts.toml",
                "/etc/containerd/certs.d/registry.example.com:5000/hosts.toml",
            ]
        );
        let (server, hosts) = read(&files[0]);
        assert_eq!(server, "https://registry.k8s.io");
        assert_eq!(
            hosts,
            [
                "https://zz-mirror.example.com/k8s",
                "https://aa-mirror.example.com:5000"
            ],
            "the pool's order, not sorted"
        );
        assert_eq!(read(&files[1]).0, "https://registry-1.docker.io");
        assert_eq!(read(&files[2]).0, "https://registry.example.com:5000");
    }

    #[test]
    fn refuses_what_containerd_or_the_path_would_misread() {
        let cases = [
            (
                vec![mirror("registry.k8s.io", &["http://mirror.example.com"])],
                "https URL",
            ),
            (
                vec![mirror("registry.k8s.io", &["mirror.example.com"])],
                "https URL",
            ),
            (vec![mirror("registry.k8s.io", &["https://"])], "https URL"),
            (vec![mirror("registry.k8s.io", &["https://a b"])], "https URL"),
            (
                vec![mirror("registry.k8s.io", &["https://user:pw@mirror.example.com"])],
                "https URL",
            ),
            (vec![mirror("registry.k8s.io", &[])], "no mirror endpoint"),
            (
                vec![mirror("../etc", &["https://m.example.com"])],
                "registry host",
            ),
            (
                vec![mirror("https://ghcr.io", &["https://m.example.com"])],
                "registry host",
            ),
            (
                vec![
                    mirror("ghcr.io", &["https://m.example.com"]),
                    mirror("ghcr.io", &["https://n.example.com"]),
                ],
                "twice",
            ),
        ];
        for (mirrors, says) in cases {
            match certs_d_files(&mirrors) {
                Err(BuildError::Invalid { message, .. }) => {
                    assert!(message.contains(says), "{mirrors:?}: {message}")
                }
                other => panic!("{mirrors:?}: expected a refusal, got {other:?}"),
            }
        }
    }
}
