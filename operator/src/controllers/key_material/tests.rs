use std::collections::BTreeMap;

use time::macros::datetime;

use super::*;
use crate::builders::testing::hosted_cluster;

const NOW: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

fn present(control: Control, fingerprint: Option<&str>, usable: bool) -> FoundMaterial {
    FoundMaterial::Present {
        control,
        fingerprint: fingerprint.map(str::to_string),
        usable,
    }
}

fn ours(fingerprint: &str) -> FoundMaterial {
    present(Control::Ours, Some(fingerprint), true)
}

fn action(recorded: Option<&str>, found: &FoundMaterial, accepted: bool) -> KeyAction {
    compute_key_material(recorded, found, accepted).action
}

#[test]
fn a_new_cluster_creates_its_material_and_an_old_one_records_what_it_has() {
    assert_eq!(action(None, &FoundMaterial::Absent, false), KeyAction::Create);
    // Made before fingerprints were recorded: what is there is the cluster's material.
    assert_eq!(action(None, &ours("aa"), false), KeyAction::Record);
    // Even an expired CA: replacing it is a decision for a person.
    assert_eq!(
        action(None, &present(Control::Ours, Some("aa"), false), false),
        KeyAction::Record
    );
    assert_eq!(action(Some("aa"), &ours("aa"), false), KeyAction::Intact);
}

#[test]
fn recorded_material_that_is_gone_or_different_stops_the_pass() {
    assert_eq!(
        action(Some("aa"), &FoundMaterial::Absent, false),
        KeyAction::Missing
    );
    assert_eq!(action(Some("aa"), &ours("bb"), false), KeyAction::Changed);
    assert_eq!(
        action(Some("aa"), &present(Control::Ours, None, false), false),
        KeyAction::Changed,
        "unreadable"
    );
    assert_eq!(
        action(None, &present(Control::Ours, None, false), false),
        KeyAction::Changed,
        "unreadable and nothing recorded: nothing to build on"
    );
}

#[test]
fn accepting_creates_what_is_gone_and_takes_a_usable_replacement() {
    assert_eq!(
        action(Some("aa"), &FoundMaterial::Absent, true),
        KeyAction::Create
    );
    assert_eq!(action(Some("aa"), &ours("bb"), true), KeyAction::Record);
    assert_eq!(
        action(Some("aa"), &present(Control::Ours, Some("bb"), false), true),
        KeyAction::Replace,
        "an expired or broken replacement is generated anew"
    );
    assert_eq!(
        action(Some("aa"), &present(Control::Ours, None, false), true),
        KeyAction::Replace
    );
    // A stale or repeated request changes nothing once the material is as recorded.
    assert_eq!(action(Some("aa"), &ours("aa"), true), KeyAction::Intact);
}

#[test]
fn a_restored_secret_without_owner_is_adopted_only_with_the_recorded_material() {
    let restored = present(Control::Nobody, Some("aa"), true);
    assert_eq!(
        compute_key_material(Some("aa"), &restored, false),
        KeyVerdict {
            action: KeyAction::Intact,
            adopt: true
        }
    );
    let other = present(Control::Nobody, Some("bb"), true);
    assert!(matches!(
        action(Some("aa"), &other, false),
        KeyAction::NotOwned(owner) if owner.contains("no controller")
    ));
    // Nothing recorded yet (a Secret made before the HostedCluster): not ours.
    assert!(matches!(action(None, &restored, false), KeyAction::NotOwned(_)));
    // Named by a person: taken over.
    assert_eq!(
        compute_key_material(Some("aa"), &other, true),
        KeyVerdict {
            action: KeyAction::Record,
            adopt: true
        }
    );
    assert!(!compute_key_material(Some("aa"), &ours("aa"), false).adopt);
}

#[test]
fn another_owners_secret_is_never_used_even_when_accepted() {
    let theirs = present(Control::Other("HostedCluster x (uid 1)".into()), Some("aa"), true);
    for (recorded, accepted) in [(None, false), (Some("aa"), false), (Some("aa"), true)] {
        assert_eq!(
            action(recorded, &theirs, accepted),
            KeyAction::NotOwned("controlled by HostedCluster x (uid 1)".into())
        );
    }
}

fn problem(secret: &str, reason: &'static str) -> Problem {
    Problem {
        secret: secret.into(),
        reason,
        detail: format!("Secret {secret} is not as recorded"),
    }
}

#[test]
fn key_material_condition_names_the_secrets_and_both_ways_out() {
    let hc = hosted_cluster();
    let intact = key_material_check(&hc, &[]);
    assert!(intact.ok && intact.blocks_available);
    assert_eq!((intact.type_, intact.reason), ("KeyMaterialIntact", "Intact"));

    let check = key_material_check(
        &hc,
        &[
            problem("demo-sa", REASON_KEY_MATERIAL_CHANGED),
            problem("demo-ca", REASON_KEY_MATERIAL_MISSING),
        ],
    );
    assert!(!check.ok && check.blocks_available);
    assert_eq!(check.reason, "KeyMaterialMissing", "missing wins over changed");
    assert!(
        check
            .message
            .starts_with("Secret demo-ca is not as recorded; Secret demo-sa"),
        "{}",
        check.message
    );
    assert!(check.message.contains("restore"), "{}", check.message);
    assert!(
        check.message.contains(
            "kubectl -n team-a annotate hostedcluster demo nestplane.io/accept-new-key-material=demo-ca,demo-sa"
        ),
        "{}",
        check.message
    );
    let changed = key_material_check(&hc, &[problem("demo-sa", REASON_KEY_MATERIAL_CHANGED)]);
    assert_eq!(changed.reason, "KeyMaterialChanged");
}

#[test]
fn a_ca_that_ends_before_a_new_leaf_would_is_reported_without_blocking() {
    let hc = hosted_cluster();
    let year = Duration::days(365);
    let far = ("demo-ca".to_string(), NOW + Duration::days(3650));
    let valid = ca_validity_check(&hc, std::slice::from_ref(&far), NOW, year);
    assert!(valid.ok);
    assert_eq!(
        (valid.type_, valid.reason),
        ("CertificateAuthoritiesValid", "Valid")
    );

    let soon = ("demo-etcd-ca".to_string(), datetime!(2026-06-01 00:00 UTC));
    let check = ca_validity_check(&hc, &[far.clone(), soon], NOW, year);
    assert!(!check.ok && !check.blocks_available);
    assert_eq!(check.reason, "CertificateAuthorityExpiring");
    assert!(
        check
            .message
            .starts_with("CA Secret demo-etcd-ca expires at 2026-06-01T00:00:00Z"),
        "{}",
        check.message
    );
    assert!(
        !check.message.contains("demo-ca "),
        "only the expiring CA: {}",
        check.message
    );
    assert!(
        check.message.contains("accept-new-key-material=demo-etcd-ca"),
        "{}",
        check.message
    );

    let gone = ("demo-ca".to_string(), NOW - Duration::days(1));
    let check = ca_validity_check(&hc, &[gone], NOW, year);
    assert!(
        check.message.contains("demo-ca expired at 2025-12-31T00:00:00Z"),
        "{}",
        check.message
    );
}

#[test]
fn the_accept_annotation_lists_secret_names() {
    let mut hc = hosted_cluster();
    assert!(accepted_names(&hc).is_empty());
    hc.metadata.annotations = Some(BTreeMap::from([(
        ACCEPT_NEW_KEY_MATERIAL_ANNOTATION.to_string(),
        " demo-ca, demo-sa,,".to_string(),
    )]));
    let names: Vec<String> = accepted_names(&hc).into_iter().collect();
    assert_eq!(names, ["demo-ca", "demo-sa"]);
}

#[test]
fn stored_material_is_fingerprinted_and_judged() {
    let ca = pki::generate_ca("kubernetes", NOW, Duration::days(10)).expect("ca");
    let data = BTreeMap::from([
        (TLS_CERT.to_string(), ByteString(ca.cert_pem.clone().into_bytes())),
        (TLS_KEY.to_string(), ByteString(ca.key_pem.clone().into_bytes())),
    ]);
    let material = Material::Ca(CaRole::Cluster);
    let (print, not_after) = fingerprint_of(material, &data).expect("readable");
    assert_eq!(print, pki::fingerprint(&ca.cert_pem).expect("fingerprint"));
    assert_eq!(not_after, Some(NOW + Duration::days(10)));
    assert!(usable(material, &data, NOW));
    assert!(!usable(material, &data, NOW + Duration::days(11)), "expired");
    assert!(fingerprint_of(material, &BTreeMap::new()).is_none());

    let keys = pki::generate_service_account_keys().expect("keys");
    let sa = BTreeMap::from([
        (
            SA_PRIVATE_KEY.to_string(),
            ByteString(keys.private_key_pem.into_bytes()),
        ),
        (
            SA_PUBLIC_KEY.to_string(),
            ByteString(keys.public_key_pem.clone().into_bytes()),
        ),
    ]);
    let (print, not_after) = fingerprint_of(Material::ServiceAccount, &sa).expect("readable");
    assert_eq!(
        print,
        pki::public_key_fingerprint(&keys.public_key_pem).expect("fingerprint")
    );
    assert_eq!(not_after, None);
    assert!(usable(Material::ServiceAccount, &sa, NOW));
}

fn encryption_data(config: &str) -> BTreeMap<String, ByteString> {
    BTreeMap::from([(
        ENCRYPTION_CONFIG_KEY.to_string(),
        ByteString(config.as_bytes().to_vec()),
    )])
}

#[test]
fn the_encryption_configuration_is_fingerprinted_by_its_bytes_and_judged_by_its_keys() {
    let generated = generate(&hosted_cluster(), Material::Encryption, NOW).expect("secret");
    assert_eq!(generated.metadata.name.as_deref(), Some("demo-encryption"));
    let data = generated.data.expect("data");
    let config = String::from_utf8(data[ENCRYPTION_CONFIG_KEY].0.clone()).expect("utf-8");
    let (print, not_after) = fingerprint_of(Material::Encryption, &data).expect("readable");
    assert_eq!(print, crate::builders::encryption::fingerprint(config.as_bytes()));
    assert_eq!(not_after, None);
    assert!(usable(Material::Encryption, &data, NOW));

    // A person's rotation: a second key added in front of the first.
    let mut parsed: serde_json::Value = serde_yaml::from_str(&config).expect("yaml");
    let keys = parsed["resources"][0]["providers"][0]["secretbox"]["keys"]
        .as_array_mut()
        .expect("keys");
    keys.insert(
        0,
        serde_json::json!({ "name": "key2", "secret": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=" }),
    );
    let rotated = serde_yaml::to_string(&parsed).expect("yaml");
    let rotated = encryption_data(&rotated);
    let (rotated_print, _) = fingerprint_of(Material::Encryption, &rotated).expect("readable");
    assert_ne!(rotated_print, print);
    assert!(usable(Material::Encryption, &rotated, NOW), "{rotated:?}");

    let broken = encryption_data("kind: EncryptionConfiguration\nresources: [");
    assert!(fingerprint_of(Material::Encryption, &broken).is_some());
    assert!(!usable(Material::Encryption, &broken, NOW));
    assert!(fingerprint_of(Material::Encryption, &BTreeMap::new()).is_none());
}

#[test]
fn a_deleted_or_edited_encryption_key_stops_the_pass_until_accepted() {
    let config = |key: &str| {
        crate::builders::encryption::encryption_config(key, &[9; crate::builders::encryption::KEY_LEN])
            .expect("config")
    };
    let recorded = crate::builders::encryption::fingerprint(config("key1").as_bytes());
    let edited = crate::builders::encryption::fingerprint(config("key2").as_bytes());
    let found = |print: &str, usable: bool| present(Control::Ours, Some(print), usable);
    // Deleted: nothing is generated, which would make every stored Secret unreadable.
    assert_eq!(
        action(Some(&recorded), &FoundMaterial::Absent, false),
        KeyAction::Missing
    );
    // Edited by a person (a rotation): held until accepted, then kept as edited and recorded.
    assert_eq!(
        action(Some(&recorded), &found(&edited, true), false),
        KeyAction::Changed
    );
    assert_eq!(
        compute_key_material(Some(&recorded), &found(&edited, true), true),
        KeyVerdict {
            action: KeyAction::Record,
            adopt: false
        }
    );
    // An edit the API server could not start with is not taken even when accepted.
    assert_eq!(
        action(Some(&recorded), &found(&edited, false), true),
        KeyAction::Replace
    );
}
