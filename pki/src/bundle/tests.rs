use std::collections::BTreeSet;

use super::*;
use crate::test_support::{NOW, YEAR, key_signs_for, pem};
use crate::{Verdict, check, check_ca};

fn input() -> BundleInput {
    BundleInput {
        apiserver_sans: ApiServerSans {
            service_ip: "10.96.0.1".parse().expect("ip"),
            dns_domain: "cluster.local".into(),
            service_names: vec!["demo-apiserver.team-a.svc".into()],
            endpoint_hosts: vec!["192.0.2.2".into()],
            extra_sans: Vec::new(),
        },
        etcd_dns_names: vec!["demo-etcd-0.demo-etcd.team-a.svc".into()],
        now: NOW,
        ca_validity: YEAR * 10,
        leaf_validity: YEAR,
    }
}

#[test]
fn every_planned_leaf_is_issued_by_its_ca_and_checks_valid() {
    let input = input();
    let bundle = ControlPlaneBundle::generate(&input).expect("bundle");
    let planned = plan(&input);
    assert_eq!(bundle.leaves.len(), planned.len());
    for role in CaRole::ALL {
        assert_eq!(check_ca(bundle.ca(role), NOW), Verdict::Valid, "{role:?}");
    }
    for PlannedLeaf { name, ca, spec } in &planned {
        let leaf = bundle.leaf(name).expect(name);
        let issuer = bundle.ca(*ca);
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
        for other in CaRole::ALL.into_iter().filter(|r| r != ca) {
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
fn the_plan_follows_kubeadm_names_and_cas() {
    let planned: Vec<(&str, CaRole)> = plan(&input()).iter().map(|p| (p.name, p.ca)).collect();
    assert_eq!(
        planned,
        vec![
            ("apiserver", CaRole::Cluster),
            ("apiserver-kubelet-client", CaRole::Cluster),
            ("apiserver-etcd-client", CaRole::Etcd),
            ("front-proxy-client", CaRole::FrontProxy),
            ("etcd/server", CaRole::Etcd),
            ("etcd/peer", CaRole::Etcd),
            ("etcd/healthcheck-client", CaRole::Etcd),
            ("admin", CaRole::Cluster),
            ("controller-manager", CaRole::Cluster),
            ("scheduler", CaRole::Cluster),
        ]
    );
}

#[test]
fn the_three_cas_and_the_service_account_key_are_distinct_keys() {
    let bundle = ControlPlaneBundle::generate(&input()).expect("bundle");
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
