//! Bad input is refused when it is applied, with a message that names what to change; every
//! input the API accepts is one the operator can run. Each case is a real create or update
//! against the management cluster's API server (the CRD's schema and CEL rules).

use anyhow::{Result, bail, ensure};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use nestplane_api::{HostedCluster, PROTECTED_API_SERVER_FLAGS, PROTECTED_CONTROLLER_FLAGS};
use nestplane_e2e::with_temp_namespace;
use serde_json::{Value, json};

/// Accepted objects are created with a server-side dry run: admission runs in full, and no
/// control plane is started for them.
fn dry_run() -> PostParams {
    PostParams {
        dry_run: true,
        ..PostParams::default()
    }
}

/// HostedClusters as plain JSON, so that what a user can write (a null, a wrong type) reaches
/// the API server as written.
fn api(client: Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client, namespace, &ApiResource::erase::<HostedCluster>(&()))
}

fn hosted_cluster(name: &str, spec: Value) -> Result<DynamicObject> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "nestplane.io/v1alpha1", "kind": "HostedCluster",
        "metadata": { "name": name }, "spec": spec
    }))?)
}

/// Creating `spec` as `name` fails, and the API server's message contains `message`.
async fn refused(api: &Api<DynamicObject>, name: &str, spec: Value, message: &str) -> Result<()> {
    match api
        .create(&PostParams::default(), &hosted_cluster(name, spec.clone())?)
        .await
    {
        Ok(_) => bail!("accepted {name} with {spec}"),
        Err(e) => ensure!(
            e.to_string().contains(message),
            "{name} {spec}: expected {message:?}, got {e}"
        ),
    }
    Ok(())
}

#[tokio::test]
async fn names_that_break_derived_names_are_refused() -> Result<()> {
    with_temp_namespace("hc-admission-names", |client, ns| async move {
        let api = api(client, &ns);
        let spec = json!({ "version": "v1.35.4" });
        refused(
            &api,
            &"a".repeat(41),
            spec.clone(),
            "may not be more than 40 bytes",
        )
        .await?;
        refused(&api, "team.a", spec.clone(), "lowercase letters, digits and '-'").await?;
        refused(&api, "1st", spec.clone(), "starting with a letter").await?;
        // `x` and `x-etcd` would both own a Secret named `x-etcd-ca`.
        for ending in [
            "etcd",
            "apiserver",
            "front-proxy",
            "scheduler",
            "controller-manager",
            "kube",
        ] {
            refused(&api, &format!("x-{ending}"), spec.clone(), "would collide").await?;
        }
        // The longest allowed name and names that merely contain a reserved word are fine.
        let longest = "a".repeat(40);
        for name in [longest.as_str(), "x", "etcd-x", "x-etcd2"] {
            api.create(&dry_run(), &hosted_cluster(name, spec.clone())?)
                .await
                .map_err(|e| anyhow::anyhow!("{name} refused: {e}"))?;
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn networks_that_cannot_work_are_refused() -> Result<()> {
    with_temp_namespace("hc-admission-network", |client, ns| async move {
        let api = api(client, &ns);
        let network = |network: Value| json!({ "version": "v1.35.4", "network": network });
        for (spec, message) in [
            (
                network(json!({ "serviceCIDR": "10.96.0.1/12" })),
                "serviceCIDR must not have host bits set",
            ),
            (
                network(json!({ "podCIDR": "10.244.1.0/16" })),
                "podCIDR must not have host bits set",
            ),
            (
                network(json!({ "serviceCIDR": "10.96.0.0/12", "podCIDR": "10.100.0.0/16" })),
                "serviceCIDR and podCIDR must not overlap",
            ),
            (
                network(json!({ "serviceCIDR": "10.0.0.0/8", "podCIDR": "10.244.0.0/16" })),
                "serviceCIDR must be a /12 to /24 range",
            ),
            (
                network(json!({ "podCIDR": "10.244.0.0/24" })),
                "podCIDR must be a /8 to /22 range",
            ),
            (
                network(json!({ "serviceCIDR": "fd00:10::/108" })),
                "IPv6 is not supported yet",
            ),
            (
                network(json!({ "podCIDR": "fd00:20::/56" })),
                "IPv6 is not supported yet",
            ),
            (
                network(json!({ "dnsDomain": "Cluster Local" })),
                "dnsDomain must be a lowercase DNS name",
            ),
            (
                network(json!({ "dnsDomain": "cluster..local" })),
                "dnsDomain must be a lowercase DNS name",
            ),
        ] {
            refused(&api, "bad", spec, message).await?;
        }
        let fine = network(json!({
            "serviceCIDR": "172.20.0.0/16", "podCIDR": "172.21.0.0/16", "dnsDomain": "team-a.example"
        }));
        api.create(&dry_run(), &hosted_cluster("fine", fine)?).await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn certificates_storage_and_service_inputs_are_checked() -> Result<()> {
    with_temp_namespace("hc-admission-spec", |client, ns| async move {
        let api = api(client, &ns);
        let v = |extra: Value| {
            let mut spec = json!({ "version": "v1.35.4" });
            if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
                spec.extend(extra.clone());
            }
            spec
        };
        for (spec, message) in [
            (
                v(json!({ "certificates": { "caValidityDays": 300, "validityDays": 365 } })),
                "caValidityDays must be longer than validityDays",
            ),
            (
                v(json!({ "etcd": { "storage": { "size": "100Mi" } } })),
                "etcd.storage.size must be a quantity of at least 256Mi",
            ),
            (
                v(json!({ "etcd": { "storage": { "size": "lots" } } })),
                "etcd.storage.size must be a quantity of at least 256Mi",
            ),
            (
                v(json!({ "apiServer": { "service": { "type": "ClusterIP", "address": "192.0.2.10" } } })),
                "apiServer.service.address applies to NodePort only",
            ),
            (
                v(json!({ "apiServer": { "service": { "address": "not an address!" } } })),
                "must be an IP address or a DNS name",
            ),
            (
                v(json!({ "apiServer": { "extraArgs": { "v=4 --x": "1" } } })),
                "keys must be flag names",
            ),
        ] {
            refused(&api, "bad", spec, message).await?;
        }

        // A null size takes the default instead of leaving an object the operator cannot read.
        let created = api
            .create(
                &PostParams::default(),
                &hosted_cluster("null-size", v(json!({ "etcd": { "storage": { "size": null } } })))?,
            )
            .await?;
        let size = &created.data["spec"]["etcd"]["storage"]["size"];
        ensure!(size == "1Gi", "a null size became {size}");
        // Storage grows but never shrinks (updates as dry runs too: no control plane changes).
        match api
            .patch(
                "null-size",
                &PatchParams::default().dry_run(),
                &Patch::Merge(json!({ "spec": { "etcd": { "storage": { "size": "512Mi" } } } })),
            )
            .await
        {
            Ok(_) => bail!("a smaller etcd claim was accepted"),
            Err(e) => ensure!(e.to_string().contains("etcd.storage.size cannot shrink"), "{e}"),
        }
        api.patch(
            "null-size",
            &PatchParams::default().dry_run(),
            &Patch::Merge(json!({ "spec": { "etcd": { "storage": { "size": "2Gi" } } } })),
        )
        .await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn extra_args_cannot_override_security_or_wiring() -> Result<()> {
    with_temp_namespace("hc-admission-args", |client, ns| async move {
        let api = api(client, &ns);
        for flag in PROTECTED_API_SERVER_FLAGS {
            for key in [flag.to_string(), format!("--{flag}")] {
                let spec = json!({ "version": "v1.35.4", "apiServer": { "extraArgs": { key: "x" } } });
                refused(
                    &api,
                    "bad",
                    spec,
                    &format!("apiServer.extraArgs cannot set --{flag}:"),
                )
                .await?;
            }
        }
        for component in ["controllerManager", "scheduler"] {
            for flag in PROTECTED_CONTROLLER_FLAGS {
                let spec = json!({ "version": "v1.35.4", component: { "extraArgs": { *flag: "x" } } });
                refused(&api, "bad", spec, &format!("extraArgs cannot set --{flag}:")).await?;
            }
        }
        // Flags that only tune a component are the user's to set.
        let tuned = json!({
            "version": "v1.35.4",
            "apiServer": { "extraArgs": { "--v": "2", "max-requests-inflight": "800" } },
            "controllerManager": { "extraArgs": { "concurrent-deployment-syncs": "10" } },
        });
        api.create(&dry_run(), &hosted_cluster("tuned", tuned)?).await?;
        Ok(())
    })
    .await
}
