use std::collections::BTreeSet;

use super::*;
use crate::plan::tests::input;
use crate::test_support::{NOW, YEAR, key_signs_for, pem};
use crate::{Verdict, check, check_ca, plan};

fn validity() -> Validity {
    Validity {
        now: NOW,
        ca: YEAR * 10,
        leaf: YEAR,
    }
}

#[test]
fn every_planned_certificate_is_issued_by_its_ca_and_checks_valid() {
    let plan = plan(&input()).expect("plan");
    let bundle = ControlPlaneBundle::generate(&plan, validity()).expect("bundle");
    assert_eq!(bundle.leaves.len(), plan.leaves.len());
    assert_eq!(bundle.kubeconfigs.len(), plan.kubeconfigs.len());
    for role in CaRole::ALL {
        assert_eq!(check_ca(bundle.ca(role), NOW), Verdict::Valid, "{role:?}");
    }
    let issued: BTreeMap<&str, &CertKeyPair> = bundle.certificates().collect();
    assert_eq!(issued.len(), plan.certificates().count());
    for (name, ca, spec) in plan.certificates() {
        let leaf = issued[name];
        let issuer = bundle.ca(ca);
        assert_eq!(
            check(leaf, &issuer.cert_pem, spec, NOW, Duration::days(30)),
            Verdict::Valid,
            "{name}"
        );

        let (leaf_pem, ca_pem) = (pem(&leaf.cert_pem), pem(&issuer.cert_pem));
        let cert = leaf_pem.parse_x509().expect("leaf");
        let ca_cert = ca_pem.parse_x509().expect("ca");
        assert_eq!(
            cert.issuer().to_string(),
            format!("CN={}", ca.common_name()),
            "{name}"
        );
        assert!(
            cert.verify_signature(Some(ca_cert.public_key())).is_ok(),
            "{name}"
        );
        for other in CaRole::ALL.into_iter().filter(|r| *r != ca) {
            let verdict = check(leaf, &bundle.ca(other).cert_pem, spec, NOW, Duration::days(30));
            assert_eq!(
                verdict,
                Verdict::ChainBroken,
                "{name} must not chain to {other:?}"
            );
        }
    }
}

#[test]
fn each_kubeconfig_embeds_its_client_the_cluster_ca_and_its_server() {
    let plan = plan(&input()).expect("plan");
    let bundle = ControlPlaneBundle::generate(&plan, validity()).expect("bundle");
    for planned in &plan.kubeconfigs {
        let issued = bundle.kubeconfig(planned.role).expect("kubeconfig");
        let config: serde_yaml::Value = serde_yaml::from_str(&issued.kubeconfig).expect("yaml");
        let field = |path: &[&str]| {
            let mut value = &config;
            for key in path {
                value = match key.parse::<usize>() {
                    Ok(i) => &value[i],
                    Err(_) => &value[*key],
                };
            }
            value.as_str().unwrap_or_default().to_string()
        };
        let encoded = |pem: &str| crate::kubeconfig::base64(pem.as_bytes());
        let role = planned.role;
        assert_eq!(field(&["clusters", "0", "name"]), "demo", "{role:?}");
        assert_eq!(
            field(&["clusters", "0", "cluster", "server"]),
            planned.server,
            "{role:?}"
        );
        assert_eq!(
            field(&["clusters", "0", "cluster", "certificate-authority-data"]),
            encoded(&bundle.ca.cert_pem),
            "{role:?} trusts the cluster CA"
        );
        assert_eq!(field(&["users", "0", "name"]), planned.user, "{role:?}");
        assert_eq!(
            field(&["users", "0", "user", "client-certificate-data"]),
            encoded(&issued.client.cert_pem),
            "{role:?}"
        );
        assert_eq!(
            check(
                &issued.client,
                &bundle.ca.cert_pem,
                &planned.client,
                NOW,
                Duration::days(30)
            ),
            Verdict::Valid,
            "{role:?}"
        );
    }
    assert!(
        !format!("{bundle:?}").contains("client-key-data"),
        "Debug hides kubeconfigs"
    );
}

#[test]
fn the_three_cas_and_the_service_account_key_are_distinct_keys() {
    let plan = plan(&input()).expect("plan");
    let bundle = ControlPlaneBundle::generate(&plan, validity()).expect("bundle");
    let keys: BTreeSet<&str> = CaRole::ALL
        .iter()
        .map(|r| bundle.ca(*r).key_pem.as_str())
        .chain([bundle.service_account.private_key_pem.as_str()])
        .collect();
    assert_eq!(keys.len(), 4);
    let sa = pem(&bundle.service_account.public_key_pem);
    let (_, spki) =
        <x509_parser::x509::SubjectPublicKeyInfo as x509_parser::prelude::FromDer<_>>::from_der(&sa.contents)
            .expect("SPKI");
    assert!(key_signs_for(&bundle.service_account.private_key_pem, &spki));
    assert!(!format!("{bundle:?}").contains("PRIVATE KEY"), "Debug hides keys");
}
