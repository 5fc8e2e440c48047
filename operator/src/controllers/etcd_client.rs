//! A small client for a hosted etcd's JSON gateway (`/v3/maintenance/*`), with the API
//! server's etcd client certificate. The operator runs in the management cluster, so it
//! reaches each member at its stable DNS name behind the headless peer Service (published
//! before the member is ready), which the member certificates name.
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::{Certificate, Identity};
use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::pki_store::{SecretData, pair_of};
use crate::builders::secrets::SecretRole;
use crate::error::{Error, Result};

/// A member that does not answer within this is treated as not answering: a reconcile must
/// not wait on a hung etcd.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Defragmenting blocks the member while it rewrites its database: allow for that.
const DEFRAGMENT_TIMEOUT: Duration = Duration::from_secs(60);

/// The key nestplane writes into every etcd whose cluster ID it records, outside the API
/// server's `/registry` prefix. etcd derives its cluster ID from the initial cluster token and
/// peer URLs only, so a member started again on an empty claim under the same StatefulSet has
/// the old ID: the missing marker is what tells it apart.
pub const MARKER_KEY: &str = "/nestplane.io/cluster-id";

/// What `POST /v3/maintenance/status` says about one member.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    pub header: ResponseHeader,
    /// Size of the backend database file, in bytes.
    #[serde(default, deserialize_with = "number")]
    pub db_size: u64,
    /// Bytes of that file in use; the rest is free pages that only defragmenting returns.
    #[serde(default, deserialize_with = "number")]
    pub db_size_in_use: u64,
    /// Problems the member reports about itself (e.g. a corrupt database).
    #[serde(default)]
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ResponseHeader {
    #[serde(default, alias = "clusterId", deserialize_with = "number")]
    pub cluster_id: u64,
    #[serde(default, alias = "memberId", deserialize_with = "number")]
    pub member_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct RangeResponse {
    #[serde(default)]
    kvs: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct KeyValue {
    /// Base64, as the gateway writes bytes.
    #[serde(default)]
    value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct AlarmResponse {
    #[serde(default)]
    alarms: Vec<AlarmMember>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct AlarmMember {
    #[serde(default)]
    alarm: String,
}

/// The gateway writes 64-bit integers as JSON strings (proto3 JSON); accept numbers too.
fn number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Text(String),
        Plain(u64),
    }
    match Number::deserialize(deserializer)? {
        Number::Plain(n) => Ok(n),
        Number::Text(text) => text.parse().map_err(de::Error::custom),
    }
}

pub struct EtcdClient {
    http: reqwest::Client,
}

impl EtcdClient {
    /// A client with the `apiserver-etcd-client` certificate, trusting only the etcd CA.
    pub fn new(data: &SecretData, cluster: &str) -> Result<EtcdClient> {
        let client = pair_of(data, SecretRole::ApiServerEtcdClient, cluster)?;
        let ca = pair_of(data, SecretRole::EtcdCa, cluster)?;
        let setup = |source| Error::Etcd {
            action: "set up a client for",
            endpoint: format!("the etcd of {cluster}"),
            source,
        };
        let identity = Identity::from_pem(format!("{}\n{}", client.cert_pem, client.key_pem).as_bytes())
            .map_err(setup)?;
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(Certificate::from_pem(ca.cert_pem.as_bytes()).map_err(setup)?)
            .identity(identity)
            .connect_timeout(TIMEOUT)
            .timeout(TIMEOUT)
            .build()
            .map_err(setup)?;
        Ok(EtcdClient { http })
    }

    /// The member's cluster ID and database sizes.
    pub async fn status(&self, endpoint: &str) -> Result<MemberStatus> {
        self.call(
            "get the status of",
            endpoint,
            "maintenance/status",
            "{}".into(),
            TIMEOUT,
        )
        .await
    }

    /// The alarms raised anywhere in the cluster (`NOSPACE`, `CORRUPT`).
    pub async fn alarms(&self, endpoint: &str) -> Result<Vec<String>> {
        let response: AlarmResponse = self
            .call(
                "get the alarms of",
                endpoint,
                "maintenance/alarm",
                r#"{"action":"GET"}"#.into(),
                TIMEOUT,
            )
            .await?;
        Ok(response.alarms.into_iter().map(|a| a.alarm).collect())
    }

    /// Rewrites the member's database without its free pages.
    pub async fn defragment(&self, endpoint: &str) -> Result<()> {
        let _: serde_json::Value = self
            .call(
                "defragment",
                endpoint,
                "maintenance/defragment",
                "{}".into(),
                DEFRAGMENT_TIMEOUT,
            )
            .await?;
        Ok(())
    }

    /// The marker's value (the cluster ID it was written for), if the key exists.
    pub async fn read_marker(&self, endpoint: &str) -> Result<Option<String>> {
        let body = serde_json::json!({ "key": BASE64.encode(MARKER_KEY) }).to_string();
        let response: RangeResponse = self
            .call("read the marker of", endpoint, "kv/range", body, TIMEOUT)
            .await?;
        Ok(response.kvs.first().map(|kv| {
            BASE64
                .decode(&kv.value)
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default()
        }))
    }

    /// Writes the marker for cluster `cluster_id`.
    pub async fn write_marker(&self, endpoint: &str, cluster_id: &str) -> Result<()> {
        let body = serde_json::json!({
            "key": BASE64.encode(MARKER_KEY),
            "value": BASE64.encode(cluster_id),
        })
        .to_string();
        let _: serde_json::Value = self
            .call("write the marker into", endpoint, "kv/put", body, TIMEOUT)
            .await?;
        Ok(())
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        action: &'static str,
        endpoint: &str,
        method: &str,
        body: String,
        timeout: Duration,
    ) -> Result<T> {
        let failed = |source| Error::Etcd {
            action,
            endpoint: endpoint.to_string(),
            source,
        };
        self.http
            .post(format!("{endpoint}/v3/{method}"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .timeout(timeout)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(failed)?
            .json()
            .await
            .map_err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_gateway_status_answer() {
        // As etcd 3.6 answers `POST /v3/maintenance/status`.
        let answer = r#"{"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437",
            "revision":"5","raft_term":"2"},"version":"3.6.16","dbSize":"20480","leader":"10276657743932975437",
            "raftIndex":"8","raftTerm":"2","raftAppliedIndex":"8","dbSizeInUse":"16384","isLearner":false,
            "storageVersion":"3.6.0"}"#;
        let status: MemberStatus = serde_json::from_str(answer).expect("status");
        assert_eq!(status.header.cluster_id, 14841639068965178418);
        assert_eq!((status.db_size, status.db_size_in_use), (20480, 16384));
        assert!(status.errors.is_empty());
    }

    #[test]
    fn reads_the_range_answer_of_the_marker() {
        // As etcd 3.6 answers `POST /v3/kv/range` for a key that exists, and for one that does not.
        let found = r#"{"header":{"cluster_id":"1"},"kvs":[{"key":"L25lc3RwbGFuZS5pby9jbHVzdGVyLWlk",
            "create_revision":"7","mod_revision":"7","version":"1","value":"ZjJhMDFlMDBiMGNlYzBkYw=="}],"count":"1"}"#;
        let response: RangeResponse = serde_json::from_str(found).expect("range");
        let value = BASE64.decode(&response.kvs[0].value).expect("base64");
        assert_eq!(value, b"f2a01e00b0cec0dc");
        let missing: RangeResponse = serde_json::from_str(r#"{"header":{"cluster_id":"1"}}"#).expect("none");
        assert!(missing.kvs.is_empty());
    }

    #[test]
    fn reads_the_alarm_answer() {
        let answer = r#"{"header":{"cluster_id":"1"},"alarms":[{"memberID":"2","alarm":"NOSPACE"}]}"#;
        let response: AlarmResponse = serde_json::from_str(answer).expect("alarms");
        assert_eq!(response.alarms[0].alarm, "NOSPACE");
        let none: AlarmResponse = serde_json::from_str(r#"{"header":{}}"#).expect("no alarms");
        assert!(none.alarms.is_empty());
    }
}
