//! Approval of a worker's kubelet serving certificate. The hosted kubelet-config has
//! `serverTLSBootstrap: true`, so each kubelet asks for its serving certificate with a CSR for
//! signer `kubernetes.io/kubelet-serving`; kube-controller-manager signs it only once approved,
//! and without it `kubectl logs`, `exec` and metrics fail.
//!
//! nestplane approves the CSRs of its own workers' Nodes, and only for names it can vouch for, as
//! Cluster API providers' CSR controllers (CAPH), OpenShift's machine-approver and
//! postfinance/kubelet-csr-approver do: the requester is the Node itself, the Node is this
//! worker's server (its provider ID), the subject is the one the kubelet uses, the DNS SAN is the
//! Node's name and the IP SANs are addresses Nova reports for the server. Anything else is left
//! pending, with an Event on the Worker, never denied: it may be another approver's.
use std::net::IpAddr;

use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use tracing::{info, instrument, warn};

use super::super::Context;
use super::super::events::{EventExt, event, publish};
use crate::api::Worker;
use crate::error::{Error, Result};

/// The signer of kubelet serving certificates.
pub const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
/// The reason of the `Approved` condition nestplane writes.
pub const APPROVAL_REASON: &str = "NestplaneWorkerApproved";
const NODE_USER_PREFIX: &str = "system:node:";
const NODES_GROUP: &str = "system:nodes";
/// The usages a kubelet asks for: with an RSA key also `key encipherment` (kube-apiserver's
/// own validation of this signer accepts exactly these two sets).
const USAGES: [&str; 2] = ["digital signature", "server auth"];
const USAGES_RSA: [&str; 3] = ["digital signature", "key encipherment", "server auth"];

/// What nestplane knows of a worker: what its Node's serving certificate may name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServingIdentity {
    /// The Node's name (the server's and the Worker's).
    pub node_name: String,
    /// `openstack:///<server id>`: the Node must carry it, so the CSR comes from this server.
    pub provider_id: String,
    /// The server's addresses as Nova reports them.
    pub addresses: Vec<IpAddr>,
}

/// What to do with one CSR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    /// Not a pending serving CSR of this worker's Node: nothing to do or say.
    Ignore,
    /// A pending serving CSR of this worker's Node that asks for more than nestplane can vouch
    /// for (or comes too early): left pending, for the reason given.
    LeavePending(String),
}

/// Whether `csr` is a pending kubelet serving CSR posted by `node_name` (for nestplane to judge).
pub fn is_pending_of(csr: &CertificateSigningRequest, node_name: &str) -> bool {
    let decided = csr
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| matches!(c.type_.as_str(), "Approved" | "Denied" | "Failed"))
        });
    csr.spec.signer_name == KUBELET_SERVING_SIGNER
        && !decided
        && csr.spec.username.as_deref() == Some(&format!("{NODE_USER_PREFIX}{node_name}"))
}

/// Judges `csr` for the worker `identity` describes; `node_provider_id` is the provider ID of
/// its registered Node (`None` while no Node of that name is registered).
pub fn decide(
    csr: &CertificateSigningRequest,
    identity: &ServingIdentity,
    node_provider_id: Option<&str>,
) -> Verdict {
    if !is_pending_of(csr, &identity.node_name) {
        return Verdict::Ignore;
    }
    match check(csr, identity, node_provider_id) {
        Ok(()) => Verdict::Approve,
        Err(reason) => Verdict::LeavePending(reason),
    }
}

fn check(
    csr: &CertificateSigningRequest,
    identity: &ServingIdentity,
    node_provider_id: Option<&str>,
) -> Result<(), String> {
    let node = &identity.node_name;
    let user = format!("{NODE_USER_PREFIX}{node}");
    if !csr.spec.groups.iter().flatten().any(|g| g == NODES_GROUP) {
        return Err(format!("the requester is not in group {NODES_GROUP}"));
    }
    match node_provider_id {
        None => return Err(format!("Node {node} is not registered yet")),
        Some(id) if id != identity.provider_id => {
            return Err(format!(
                "Node {node} has provider ID {id:?}, its worker's server is {:?}",
                identity.provider_id
            ));
        }
        Some(_) => {}
    }
    let request = nestplane_pki::parse_csr(&csr.spec.request.0).map_err(|e| e.to_string())?;
    if request.common_names != [user.as_str()]
        || request.organizations != [NODES_GROUP]
        || request.other_subject_attributes > 0
    {
        return Err(format!(
            "the subject is CN={:?} O={:?} (and {} other attributes), not CN={user} O={NODES_GROUP}",
            request.common_names, request.organizations, request.other_subject_attributes
        ));
    }
    if request.other_sans > 0 {
        return Err("it asks for e-mail, URI or other names besides DNS names and IP addresses".into());
    }
    if request.dns_names.is_empty() && request.ip_addresses.is_empty() {
        return Err("it names neither a DNS name nor an IP address".into());
    }
    if let Some(name) = request.dns_names.iter().find(|n| *n != node) {
        return Err(format!("DNS name {name:?} is not the Node's name"));
    }
    if let Some(ip) = request
        .ip_addresses
        .iter()
        .find(|ip| !identity.addresses.contains(ip))
    {
        return Err(format!(
            "IP address {ip} is not one of the server's ({})",
            identity
                .addresses
                .iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut usages: Vec<&str> = csr.spec.usages.iter().flatten().map(String::as_str).collect();
    usages.sort_unstable();
    usages.dedup();
    if usages != USAGES && usages != USAGES_RSA {
        return Err(format!(
            "usages {usages:?} are not those of a kubelet serving certificate ({USAGES:?}, with an RSA key also key encipherment)"
        ));
    }
    Ok(())
}

/// What happened to one CSR in a pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Approved { csr: String },
    LeftPending { csr: String, reason: String },
}

/// Approves the pending serving CSRs of `identity`'s Node that `decide` accepts, through the
/// hosted cluster's admin client; `node_provider_id` is the registered Node's. One list per pass.
#[instrument(skip_all, fields(node = %identity.node_name))]
pub async fn approve_serving_csrs(
    hosted: &kube::Client,
    identity: &ServingIdentity,
    node_provider_id: Option<&str>,
    now: Time,
) -> Result<Vec<Outcome>> {
    let csrs: Api<CertificateSigningRequest> = Api::all(hosted.clone());
    let listed = csrs
        .list(&ListParams::default().fields(&format!("spec.signerName={KUBELET_SERVING_SIGNER}")))
        .await
        .map_err(|source| Error::HostedKube {
            action: "list",
            object: format!("CertificateSigningRequests of signer {KUBELET_SERVING_SIGNER}"),
            source,
        })?;
    let mut outcomes = Vec::new();
    for csr in &listed.items {
        let name = csr.name_any();
        match decide(csr, identity, node_provider_id) {
            Verdict::Approve => {
                approve(&csrs, csr, now.clone()).await?;
                info!(csr = %name, "approved kubelet serving CSR");
                outcomes.push(Outcome::Approved { csr: name });
            }
            Verdict::LeavePending(reason) => {
                warn!(csr = %name, %reason, "kubelet serving CSR left pending");
                outcomes.push(Outcome::LeftPending { csr: name, reason });
            }
            Verdict::Ignore => {}
        }
    }
    Ok(outcomes)
}

/// Adds an `Approved` condition with an update of the approval subresource, as `kubectl
/// certificate approve` does: the object's resourceVersion makes it fail, rather than overwrite,
/// if another approver decided in between.
async fn approve(
    csrs: &Api<CertificateSigningRequest>,
    csr: &CertificateSigningRequest,
    now: Time,
) -> Result<()> {
    let name = csr.name_any();
    let mut approved = csr.clone();
    let status = approved.status.get_or_insert_with(Default::default);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            reason: Some(APPROVAL_REASON.into()),
            message: Some(format!(
                "the kubelet of {}'s server, with names nestplane knows for it",
                csr.spec
                    .username
                    .as_deref()
                    .unwrap_or_default()
                    .trim_start_matches(NODE_USER_PREFIX)
            )),
            last_update_time: Some(now.clone()),
            last_transition_time: Some(now),
        });
    csrs.replace_subresource("approval", &name, &PostParams::default(), &approved)
        .await
        .map_err(|source| Error::HostedKube {
            action: "approve",
            object: format!("CertificateSigningRequest {name}"),
            source,
        })?;
    Ok(())
}

/// The Worker pass's part: approves what can be approved and says so on the Worker. Best effort:
/// a CSR not approved now is looked at again on the next pass, so a failure only logs.
pub(crate) async fn approve_for_worker(
    ctx: &Context,
    worker: &Worker,
    hosted: &kube::Client,
    server: &nestplane_openstack::Server,
    node_provider_id: Option<&str>,
) {
    let identity = ServingIdentity {
        node_name: worker.name_any(),
        provider_id: format!("openstack:///{}", server.id),
        addresses: server.fixed_ips().iter().filter_map(|a| a.parse().ok()).collect(),
    };
    let outcomes =
        match approve_serving_csrs(hosted, &identity, node_provider_id, Time(ctx.clock.timestamp())).await {
            Ok(outcomes) => outcomes,
            Err(error) => {
                warn!(%error, "could not approve kubelet serving CSRs");
                return;
            }
        };
    for outcome in outcomes {
        let event = match outcome {
            Outcome::Approved { csr } => event(EventType::Normal, "ServingCertificateApproved", "ApproveCSR")
                .note(format!(
                    "approved kubelet serving CSR {csr} of Node {}",
                    identity.node_name
                )),
            Outcome::LeftPending { csr, reason } => {
                event(EventType::Warning, "ServingCertificateNotApproved", "ApproveCSR")
                    .note(format!("kubelet serving CSR {csr} left pending: {reason}"))
            }
        };
        publish(ctx, worker, event).await;
    }
}

#[cfg(test)]
mod tests;
