//! The Namespace everything goes in. Its Pod Security level is `privileged`: the workers
//! run gVisor and build network namespaces and nftables rules, which only a privileged
//! container may; the servers ask for much less in their own securityContext.

use serde_json::{Value, json};

use super::objects::{InstallOptions, labels};

/// The Namespace object.
pub fn objects(options: &InstallOptions) -> Vec<Value> {
    let mut labels = labels("namespace");
    labels.insert(
        "pod-security.kubernetes.io/enforce".into(),
        "privileged".into(),
    );
    vec![json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": { "name": options.namespace, "labels": labels },
    })]
}
