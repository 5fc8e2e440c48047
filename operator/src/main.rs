use kube::CustomResourceExt;
fn main() {
    print!(
        "{}",
        serde_yaml::to_string(&nestplane::api::HostedCluster::crd()).unwrap_or_default()
    );
}
