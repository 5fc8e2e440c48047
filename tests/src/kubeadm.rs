//! The worker's side of `kubeadm join`, run on the machine the tests run on (a management node)
//! without touching it: the real kubeadm in a private mount namespace, and a node client
//! certificate requested with a bootstrap token as the kubelet's TLS bootstrap would.
//!
//! Needs root (mount namespaces), `unshare` from util-linux, and the directories
//! `/etc/kubernetes` and `/var/lib/kubelet` (a management node has both; they are covered by an
//! empty tmpfs inside the namespace, so kubeadm sees a fresh machine and writes nothing outside).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestSpec};
use kube::Client;
use kube::api::ObjectMeta;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};

/// The signer of kubelet client certificates, which the controller manager's approver and signer serve.
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// Preflight checks that fail only because the machine running the tests is a management node:
/// its own kubelet holds port 10250, and no kubelet binary is on PATH, so kubeadm can read
/// neither the kubelet's version (`KubeletVersion`) nor check the system against it
/// (`SystemVerification`). A worker image passes all three.
pub const MANAGEMENT_NODE_PREFLIGHT_ERRORS: &[&str] = &["Port-10250", "KubeletVersion", "SystemVerification"];

/// Directories kubeadm join writes to; each is an empty tmpfs inside the namespace.
const WORKER_DIRS: &[&str] = &["/etc/kubernetes", "/var/lib/kubelet"];

/// How long one kubeadm run may take (discovery alone waits up to 5 minutes by default).
const KUBEADM_TIMEOUT: Duration = Duration::from_secs(180);

/// The kubeadm binary: `NESTPLANE_E2E_KUBEADM`, default `/usr/local/bin/kubeadm` (the version
/// the management cluster runs, as `make up` installs it).
pub fn kubeadm_path() -> PathBuf {
    std::env::var("NESTPLANE_E2E_KUBEADM")
        .unwrap_or_else(|_| "/usr/local/bin/kubeadm".into())
        .into()
}

/// What a kubeadm run left: its exit status and its merged output.
#[derive(Debug)]
pub struct KubeadmRun {
    pub success: bool,
    pub output: String,
}

/// Runs `kubeadm join <args> --config <file> --ignore-preflight-errors=<ignore>` with
/// `join_configuration` as the file, in a private mount namespace where the worker directories
/// are empty (e.g. `args = ["phase", "preflight", "--v=1"]`).
pub async fn join(join_configuration: &str, args: &[&str], ignore: &[&str]) -> Result<KubeadmRun> {
    let dir = scratch_dir()?;
    let config = dir.join("kubeadm-join.yaml");
    write_private(&config, join_configuration)?;
    let outcome = run_in_namespace(&config, args, ignore).await;
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    outcome
}

async fn run_in_namespace(config: &std::path::Path, args: &[&str], ignore: &[&str]) -> Result<KubeadmRun> {
    // Mount propagation is private, so the tmpfs mounts never reach the host's namespace.
    let mounts: Vec<String> = WORKER_DIRS
        .iter()
        .map(|dir| format!("mount -t tmpfs tmpfs {dir}"))
        .collect();
    let script = format!("{} && exec \"$0\" \"$@\"", mounts.join(" && "));
    let mut command = tokio::process::Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "--", "sh", "-c", &script])
        .arg(kubeadm_path())
        .arg("join")
        .args(args)
        .arg("--config")
        .arg(config);
    if !ignore.is_empty() {
        command.arg(format!("--ignore-preflight-errors={}", ignore.join(",")));
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command
        .spawn()
        .context("starting unshare (util-linux; the tests must run as root)")?;
    let output = tokio::time::timeout(KUBEADM_TIMEOUT, child.wait_with_output())
        .await
        .with_context(|| {
            format!(
                "kubeadm join {} still running after {KUBEADM_TIMEOUT:?}",
                args.join(" ")
            )
        })?
        .context("waiting for kubeadm")?;
    Ok(KubeadmRun {
        success: output.status.success(),
        output: String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    })
}

fn scratch_dir() -> Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("nestplane-kubeadm-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Writes a file only its owner can read: a JoinConfiguration holds the bootstrap token.
fn write_private(path: &std::path::Path, content: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(content.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// A client that authenticates with a bootstrap token (`<id>.<secret>`), as a joining kubelet
/// does, trusting only `ca_pem`.
pub async fn bootstrap_client(server: &str, ca_pem: &str, token: &str) -> Result<Client> {
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "hosted", "cluster": {
            "server": server,
            "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(ca_pem),
        }}],
        "users": [{ "name": "bootstrap", "user": { "token": token } }],
        "contexts": [{ "name": "bootstrap", "context": { "cluster": "hosted", "user": "bootstrap" } }],
        "current-context": "bootstrap",
    });
    crate::hosted::hosted_client(&serde_yaml::to_string(&kubeconfig)?).await
}

/// A kubelet's client certificate request for Node `node_name` (CN `system:node:<name>`,
/// O `system:nodes`, a fresh P-256 key), as the kubelet's TLS bootstrap makes it.
pub fn node_client_csr(node_name: &str) -> Result<CertificateSigningRequest> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut subject = DistinguishedName::new();
    subject.push(DnType::OrganizationName, "system:nodes");
    subject.push(DnType::CommonName, format!("system:node:{node_name}"));
    params.distinguished_name = subject;
    let request = params.serialize_request(&key)?.pem()?;
    Ok(CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some("node-csr-".into()),
            ..ObjectMeta::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(request.into_bytes()),
            signer_name: KUBELET_CLIENT_SIGNER.into(),
            usages: Some(vec!["digital signature".into(), "client auth".into()]),
            ..CertificateSigningRequestSpec::default()
        },
        status: None,
    })
}

/// Condition: the CSR is approved and carries its certificate.
pub fn csr_issued(csr: Option<&CertificateSigningRequest>) -> bool {
    csr.and_then(|c| c.status.as_ref()).is_some_and(|s| {
        let approved = s
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Approved" && c.status == "True");
        approved && s.certificate.as_ref().is_some_and(|c| !c.0.is_empty())
    })
}

/// The certificate a CSR was issued, as DER; an error when it was denied or failed.
pub fn issued_certificate(csr: &CertificateSigningRequest) -> Result<Vec<u8>> {
    let status = csr.status.as_ref().context("CSR has no status")?;
    if let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| matches!(c.type_.as_str(), "Denied" | "Failed") && c.status == "True")
    {
        bail!(
            "CSR {}: {} {}",
            c.type_,
            c.reason.as_deref().unwrap_or_default(),
            c.message.as_deref().unwrap_or_default()
        );
    }
    let pem = status.certificate.as_ref().context("CSR has no certificate")?;
    let (_, parsed) =
        x509_parser::pem::parse_x509_pem(&pem.0).context("the issued certificate is not PEM")?;
    Ok(parsed.contents)
}

/// `sha256:<hex>` of a certificate's public key (SubjectPublicKeyInfo), as kubeadm's
/// `--discovery-token-ca-cert-hash` pins it.
pub fn ca_cert_hash(cert_pem: &str) -> Result<String> {
    use sha2::Digest;
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).context("CA is not PEM")?;
    let cert = pem.parse_x509().context("CA is not a certificate")?;
    let digest = sha2::Sha256::digest(cert.public_key().raw);
    Ok(format!(
        "sha256:{}",
        digest.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}
