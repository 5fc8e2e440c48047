use crate::CertKeyPair;

/// A kubeconfig with one cluster, one user authenticated by a client certificate, and one context.
#[derive(Debug, Clone, Copy)]
pub struct KubeconfigSpec<'a> {
    pub cluster_name: &'a str,
    pub server: &'a str,
    pub ca_cert_pem: &'a str,
    pub user_name: &'a str,
    pub client: &'a CertKeyPair,
}

/// Renders `spec` as kubeconfig YAML (base64 `*-data` fields, so the file stands alone).
pub fn kubeconfig(spec: &KubeconfigSpec) -> String {
    let context = format!("{}@{}", spec.user_name, spec.cluster_name);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: {server}\n    \
         certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {cert}\n    \
         client-key-data: {key}\ncontexts:\n- name: {context}\n  context:\n    cluster: {cluster}\n    user: {user}\n\
         current-context: {context}\n",
        cluster = quote(spec.cluster_name),
        server = quote(spec.server),
        ca = base64(spec.ca_cert_pem.as_bytes()),
        user = quote(spec.user_name),
        cert = base64(spec.client.cert_pem.as_bytes()),
        key = base64(spec.client.key_pem.as_bytes()),
        context = quote(&context),
    )
}

/// The kubeconfig kubeadm publishes in `kube-public/cluster-info`: the cluster only, no user.
pub fn cluster_info_kubeconfig(server: &str, ca_cert_pem: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: \"\"\n  cluster:\n    server: {server}\n    \
         certificate-authority-data: {ca}\ncontexts: []\ncurrent-context: \"\"\nusers: []\n",
        server = quote(server),
        ca = base64(ca_cert_pem.as_bytes()),
    )
}

/// YAML double-quoted scalar: names may contain `:` or `@`.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(crate) fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
