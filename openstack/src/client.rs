//! [`Compute`] against a real cloud, on reqwest (rustls with ring, as kube uses).
//!
//! Why not the `openstack` crate (0.6.0): its server API cannot set or filter by tags, cannot read
//! `OS-EXT-SRV-ATTR:user_data`, picks microversions per call instead of letting us pin one, does not
//! re-export application-credential auth, and reads clouds.yaml only from fixed paths. What we need
//! is a few Nova and Neutron calls, a few look-ups and Keystone's token API, so we speak HTTP directly.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::future::BoxFuture;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

pub use config::{Auth, CloudConfig};
use wire::{
    decode_failure, enc, join, not_found, parse_server, read_json, root_volume_mapping, send, transport,
};

use super::{COMPUTE_MICROVERSION, Compute, Error, Failure, Port, PortSpec, Result, Server, ServerSpec};

mod config;
mod network;
mod wire;

/// Tokens are renewed well before Keystone's default one-hour expiry, and on any 401.
const TOKEN_REFRESH_AFTER: Duration = Duration::from_secs(30 * 60);

/// A token and the endpoints it came with.
struct Session {
    token: String,
    issued: Instant,
    catalog: Vec<CatalogService>,
}

#[derive(Deserialize)]
struct CatalogService {
    #[serde(rename = "type")]
    kind: String,
    endpoints: Vec<CatalogEndpoint>,
}

#[derive(Deserialize)]
struct CatalogEndpoint {
    interface: String,
    region_id: Option<String>,
    region: Option<String>,
    url: String,
}

/// The OpenStack client. Cheap to share: clone the `Arc` it lives in.
pub struct Client {
    http: reqwest::Client,
    config: CloudConfig,
    session: Mutex<Option<Arc<Session>>>,
}

impl Client {
    pub fn new(config: CloudConfig) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(10).min(config.timeout))
            .user_agent(concat!("nestplane/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &config.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::Config(format!("cacert: {e}")))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            config,
            session: Mutex::new(None),
        })
    }

    pub fn config(&self) -> &CloudConfig {
        &self.config
    }

    fn cached_session(&self) -> Option<Arc<Session>> {
        let guard = self
            .session
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        guard
            .as_ref()
            .filter(|s| s.issued.elapsed() < TOKEN_REFRESH_AFTER)
            .cloned()
    }

    async fn session(&self, op: &'static str, renew: bool) -> Result<Arc<Session>> {
        if !renew && let Some(session) = self.cached_session() {
            return Ok(session);
        }
        let session = Arc::new(self.authenticate(op).await?);
        *self
            .session
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(session.clone());
        Ok(session)
    }

    async fn authenticate(&self, op: &'static str) -> Result<Session> {
        let identity = match &self.config.auth {
            Auth::ApplicationCredential { id, secret } => json!({"identity": {
                "methods": ["application_credential"],
                "application_credential": {"id": id, "secret": secret}}}),
            Auth::Password {
                username,
                password,
                user_domain,
                project,
                project_domain,
            } => json!({
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": username, "domain": {"name": user_domain}, "password": password}}},
                "scope": {"project": {"name": project, "domain": {"name": project_domain}}}}),
        };
        let base = self.config.auth_url.trim_end_matches('/');
        let url = if base.ends_with("/v3") {
            format!("{base}/auth/tokens")
        } else {
            format!("{base}/v3/auth/tokens")
        };
        let request = self.http.post(&url).json(&json!({ "auth": identity }));
        let response = send(op, Method::POST, &url, request).await?;
        let token = response
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| Error::op(op, decode_failure(&url, "no X-Subject-Token header")))?;
        let body: Value = read_json(op, &url, response).await?;
        let catalog = serde_json::from_value(body["token"]["catalog"].clone())
            .map_err(|e| Error::op(op, decode_failure(&url, &format!("token catalog: {e}"))))?;
        Ok(Session {
            token,
            issued: Instant::now(),
            catalog,
        })
    }

    fn endpoint(&self, session: &Session, service: &str) -> Result<String, Failure> {
        let region = self.config.region.as_deref();
        session
            .catalog
            .iter()
            .filter(|s| s.kind == service)
            .flat_map(|s| &s.endpoints)
            .find(|e| {
                e.interface == self.config.interface
                    && region
                        .is_none_or(|r| e.region_id.as_deref() == Some(r) || e.region.as_deref() == Some(r))
            })
            .map(|e| e.url.trim_end_matches('/').to_string())
            .ok_or_else(|| Failure::NoEndpoint {
                service: service.into(),
                interface: self.config.interface.clone(),
                region: region.unwrap_or("any").into(),
            })
    }

    /// One authenticated request to `service` at `path` (relative to its catalog URL, with the
    /// version prefix the service needs). Returns `None` for 404. Re-authenticates once on 401.
    async fn call(
        &self,
        op: &'static str,
        service: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>> {
        let mut renew = false;
        loop {
            let session = self.session(op, renew).await?;
            let base = self.endpoint(&session, service).map_err(|f| Error::op(op, f))?;
            let url = join(service, &base, path);
            let mut request = self
                .http
                .request(method.clone(), &url)
                .header("X-Auth-Token", &session.token);
            if service == "compute" {
                request = request
                    .header("OpenStack-API-Version", format!("compute {COMPUTE_MICROVERSION}"))
                    .header("X-OpenStack-Nova-API-Version", COMPUTE_MICROVERSION);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            match send(op, method.clone(), &url, request).await {
                Ok(response) if response.status() == StatusCode::NO_CONTENT => return Ok(Some(Value::Null)),
                Ok(response) => {
                    let bytes = response
                        .bytes()
                        .await
                        .map_err(|e| Error::op(op, transport(&method, &url, &e)))?;
                    if bytes.is_empty() {
                        return Ok(Some(Value::Null));
                    }
                    return serde_json::from_slice(&bytes)
                        .map(Some)
                        .map_err(|e| Error::op(op, decode_failure(&url, &e.to_string())));
                }
                Err(e) if e.status() == Some(404) => return Ok(None),
                Err(e) if e.status() == Some(401) && !renew => renew = true,
                Err(e) => return Err(e),
            }
        }
    }

    async fn find(&self, op: &'static str, kind: &'static str, name_or_id: &str) -> Result<String> {
        let (service, by_id, by_name, key) = match kind {
            "flavor" => (
                "compute",
                format!("/flavors/{}", enc(name_or_id)),
                "/flavors?is_public=None".to_string(),
                "flavors",
            ),
            "image" => (
                "image",
                format!("/images/{}", enc(name_or_id)),
                format!("/images?name={}", enc(name_or_id)),
                "images",
            ),
            _ => (
                "network",
                format!("/networks/{}", enc(name_or_id)),
                format!("/networks?name={}", enc(name_or_id)),
                "networks",
            ),
        };
        if let Some(found) = self.call(op, service, Method::GET, &by_id, None).await? {
            let object = found.get(kind).unwrap_or(&found);
            if let Some(id) = object["id"].as_str() {
                return Ok(id.to_string());
            }
        }
        let list = self
            .call(op, service, Method::GET, &by_name, None)
            .await?
            .unwrap_or(Value::Null);
        let matches: Vec<&str> = list[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| o["name"].as_str() == Some(name_or_id))
            .filter_map(|o| o["id"].as_str())
            .collect();
        crate::the_one_named(op, kind, name_or_id, &matches)
    }

    async fn create(&self, spec: &ServerSpec) -> Result<Server> {
        const OP: &str = "create server";
        let mut server = json!({
            "name": spec.name,
            "flavorRef": spec.flavor_id,
            "networks": spec
                .network_ids
                .iter()
                .map(|id| json!({ "uuid": id }))
                .chain(spec.port_ids.iter().map(|id| json!({ "port": id })))
                .collect::<Vec<_>>(),
            "metadata": spec.metadata,
        });
        match &spec.root_volume {
            None => server["imageRef"] = json!(spec.image_id),
            Some(volume) => server["block_device_mapping_v2"] = json!([root_volume_mapping(spec, volume)]),
        }
        if !spec.user_data.is_empty() {
            server["user_data"] = json!(BASE64.encode(&spec.user_data));
        }
        if !spec.tags.is_empty() {
            server["tags"] = json!(spec.tags);
        }
        if let Some(zone) = &spec.availability_zone {
            server["availability_zone"] = json!(zone);
        }
        if let Some(key) = &spec.key_name {
            server["key_name"] = json!(key);
        }
        if !spec.security_groups.is_empty() {
            server["security_groups"] = json!(
                spec.security_groups
                    .iter()
                    .map(|g| json!({ "name": g }))
                    .collect::<Vec<_>>()
            );
        }
        let mut body = json!({ "server": server });
        if let Some(group) = &spec.server_group_id {
            body["os:scheduler_hints"] = json!({ "group": group });
        }
        let created = self
            .call(OP, "compute", Method::POST, "/servers", Some(&body))
            .await?
            .ok_or_else(|| Error::op(OP, not_found("flavor, image or network", &spec.name)))?;
        let id = created["server"]["id"]
            .as_str()
            .ok_or_else(|| Error::op(OP, decode_failure("/servers", "no server id in the response")))?;
        Ok(Server::building(id.to_string(), spec))
    }

    async fn list_by_tag(&self, tag: &str) -> Result<Vec<Server>> {
        const OP: &str = "list servers by tag";
        let mut servers = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut path = format!("/servers/detail?tags={}&limit=200", enc(tag));
            if let Some(m) = &marker {
                path.push_str(&format!("&marker={}", enc(m)));
            }
            let page = self
                .call(OP, "compute", Method::GET, &path, None)
                .await?
                .unwrap_or(Value::Null);
            let items = page["servers"].as_array().cloned().unwrap_or_default();
            for item in &items {
                servers.push(parse_server(item).map_err(|f| Error::op(OP, f))?);
            }
            let has_next = page["servers_links"]
                .as_array()
                .is_some_and(|links| links.iter().any(|l| l["rel"] == "next"));
            match servers.last() {
                Some(last) if has_next && !items.is_empty() => marker = Some(last.id.clone()),
                _ => return Ok(servers),
            }
        }
    }

    async fn get(&self, op: &'static str, id: &str) -> Result<Option<Value>> {
        let found = self
            .call(op, "compute", Method::GET, &format!("/servers/{}", enc(id)), None)
            .await?;
        Ok(found.map(|mut v| v["server"].take()))
    }

    async fn user_data(&self, id: &str) -> Result<Option<Vec<u8>>> {
        const OP: &str = "get user data";
        let server = self
            .get(OP, id)
            .await?
            .ok_or_else(|| Error::op(OP, not_found("server", id)))?;
        let object = server
            .as_object()
            .ok_or_else(|| Error::op(OP, decode_failure(id, "server is not an object")))?;
        match object.get("OS-EXT-SRV-ATTR:user_data") {
            None => Err(Error::op(
                OP,
                decode_failure(
                    id,
                    "OS-EXT-SRV-ATTR:user_data is not shown: the cloud's policy hides extended server attributes from this credential",
                ),
            )),
            Some(Value::Null) => Ok(None),
            Some(Value::String(encoded)) => BASE64
                .decode(encoded)
                .map(Some)
                .map_err(|e| Error::op(OP, decode_failure(id, &format!("user_data is not base64: {e}")))),
            Some(other) => Err(Error::op(
                OP,
                decode_failure(id, &format!("user_data is {other}")),
            )),
        }
    }
}

impl Client {
    /// IDs of the server groups named `name`.
    async fn server_groups_named(&self, op: &'static str, name: &str) -> Result<Vec<String>> {
        let list = self
            .call(op, "compute", Method::GET, "/os-server-groups", None)
            .await?
            .unwrap_or(Value::Null);
        Ok(list["server_groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| g["name"].as_str() == Some(name))
            .filter_map(|g| g["id"].as_str().map(str::to_string))
            .collect())
    }

    async fn ensure_group(&self, name: &str, policy: &str) -> Result<String> {
        const OP: &str = "ensure server group";
        if let Some(id) = self.server_groups_named(OP, name).await?.into_iter().next() {
            return Ok(id);
        }
        let body = json!({ "server_group": { "name": name, "policy": policy } });
        let created = self
            .call(OP, "compute", Method::POST, "/os-server-groups", Some(&body))
            .await?
            .unwrap_or(Value::Null);
        created["server_group"]["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
                Error::op(
                    OP,
                    decode_failure("/os-server-groups", "no server group id in the response"),
                )
            })
    }

    async fn delete_groups(&self, name: &str) -> Result<()> {
        const OP: &str = "delete server group";
        for id in self.server_groups_named(OP, name).await? {
            // None: already gone.
            self.call(
                OP,
                "compute",
                Method::DELETE,
                &format!("/os-server-groups/{}", enc(&id)),
                None,
            )
            .await?;
        }
        Ok(())
    }
}

impl Compute for Client {
    fn create_server<'a>(&'a self, spec: &'a ServerSpec) -> BoxFuture<'a, Result<Server>> {
        Box::pin(self.create(spec))
    }

    fn get_server<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Server>>> {
        Box::pin(async move {
            const OP: &str = "get server";
            match self.get(OP, id).await? {
                Some(server) => parse_server(&server).map(Some).map_err(|f| Error::op(OP, f)),
                None => Ok(None),
            }
        })
    }

    fn list_servers_by_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<Vec<Server>>> {
        Box::pin(self.list_by_tag(tag))
    }

    fn delete_server<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let path = format!("/servers/{}", enc(id));
            self.call("delete server", "compute", Method::DELETE, &path, None)
                .await
                .map(drop)
        })
    }

    fn get_user_data<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        Box::pin(self.user_data(id))
    }

    fn find_flavor<'a>(&'a self, name_or_id: &'a str) -> BoxFuture<'a, Result<String>> {
        Box::pin(self.find("find flavor", "flavor", name_or_id))
    }

    fn ensure_server_group<'a>(&'a self, name: &'a str, policy: &'a str) -> BoxFuture<'a, Result<String>> {
        Box::pin(self.ensure_group(name, policy))
    }

    fn delete_server_groups<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.delete_groups(name))
    }

    fn find_image<'a>(&'a self, name_or_id: &'a str) -> BoxFuture<'a, Result<String>> {
        Box::pin(self.find("find image", "image", name_or_id))
    }

    fn find_network<'a>(&'a self, name_or_id: &'a str) -> BoxFuture<'a, Result<String>> {
        Box::pin(self.find("find network", "network", name_or_id))
    }

    fn find_subnet<'a>(&'a self, network_id: &'a str, name_or_id: &'a str) -> BoxFuture<'a, Result<String>> {
        Box::pin(self.subnet(network_id, name_or_id))
    }

    fn find_security_group<'a>(&'a self, name_or_id: &'a str) -> BoxFuture<'a, Result<String>> {
        Box::pin(self.security_group(name_or_id))
    }

    fn create_port<'a>(&'a self, spec: &'a PortSpec) -> BoxFuture<'a, Result<Port>> {
        Box::pin(self.ensure_port(spec))
    }

    fn list_ports_by_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<Vec<Port>>> {
        Box::pin(self.ports_by_tag(tag))
    }

    fn delete_port<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.delete_port_request(id))
    }
}
