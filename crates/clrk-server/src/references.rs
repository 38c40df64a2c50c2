//! Warnings at apply for references that cannot work now: an agent's `workerPoolRef` naming no
//! pool, its `egressRefs` or a route's `parentRefs` naming no gateway, a `host:` image on a
//! runc pool. The document is still applied (the missing object may come next), and `clrk
//! apply` prints the warning; only what can never work is refused, by validation. The same
//! warnings, computed again when an agent is read, are its `status.conditions`
//! (`crate::conditions`).

use std::collections::HashSet;

use clrk_api::{DEFAULT_POOL, Document, Kind, Resource, RuntimeName, WorkerPoolSpec};
use clrk_store::{Store, StoreError};

use crate::error::ServerError;

/// What the store and the documents applied with these hold: pools by name (with their
/// runtime) and gateways by namespace and name.
#[derive(Default)]
pub(crate) struct Known {
    pools: Vec<(String, RuntimeName)>,
    gateways: HashSet<(String, String)>,
}

/// For each document, the warnings about references nothing satisfies, looking at the store
/// and at the other documents of the same apply.
pub(crate) async fn unsatisfied(
    store: &Store,
    documents: &[&Document],
) -> Result<Vec<Vec<String>>, ServerError> {
    let known = known(store, documents).await?;
    Ok(documents
        .iter()
        .map(|doc| warnings(&known, &doc.resource))
        .collect())
}

/// The pools and gateways the store holds now.
pub(crate) async fn stored(store: &Store) -> Result<Known, StoreError> {
    known(store, &[]).await
}

async fn known(store: &Store, documents: &[&Document]) -> Result<Known, StoreError> {
    let mut pools: Vec<(String, RuntimeName)> = store
        .list_pools()
        .await?
        .into_iter()
        .map(|p| {
            let spec = p.spec.get("spec").cloned().unwrap_or(p.spec);
            let spec: WorkerPoolSpec = serde_json::from_value(spec).unwrap_or_default();
            (p.name, spec.runtime)
        })
        .collect();
    let mut gateways: HashSet<(String, String)> = store
        .egress_objects(None)
        .await?
        .into_iter()
        .filter(|o| o.kind == Kind::EgressGateway.as_str())
        .map(|o| (o.namespace, o.name))
        .collect();
    for doc in documents {
        let meta = doc.resource.metadata();
        match &doc.resource {
            Resource::WorkerPool(pool) => {
                pools.retain(|(name, _)| *name != meta.name);
                pools.push((meta.name.clone(), pool.spec.runtime));
            }
            Resource::EgressGateway(_) => {
                gateways.insert((meta.namespace.clone(), meta.name.clone()));
            }
            _ => {}
        }
    }
    Ok(Known { pools, gateways })
}

/// The warnings about one resource's references.
pub(crate) fn warnings(known: &Known, resource: &Resource) -> Vec<String> {
    let namespace = &resource.metadata().namespace;
    let (pool, image, egress): (&str, &str, Vec<&str>) = match resource {
        Resource::TaskAgent(t) => (
            &t.spec.worker_pool_ref,
            &t.spec.template.spec.image,
            t.spec
                .egress_refs
                .iter()
                .map(|r| r.gateway_ref.as_str())
                .collect(),
        ),
        Resource::DaemonAgent(d) => (
            &d.spec.worker_pool_ref,
            &d.spec.template.spec.image,
            d.spec
                .egress_refs
                .iter()
                .map(|r| r.gateway_ref.as_str())
                .collect(),
        ),
        Resource::EgressL4Route(r) => return parents(known, namespace, &r.spec.parent_refs),
        Resource::AIProviderRoute(r) => return parents(known, namespace, &r.spec.parent_refs),
        Resource::CredentialInjectionPolicy(p) => {
            return parents(known, namespace, &p.spec.parent_refs);
        }
        _ => return Vec::new(),
    };
    let mut found = Vec::new();
    match known.pools.iter().find(|(name, _)| name == pool) {
        None if pool != DEFAULT_POOL => found.push(format!(
            "spec.workerPoolRef: no WorkerPool {pool:?} exists: executions answer 503 until one is applied"
        )),
        Some((_, RuntimeName::Runc)) if image.trim().starts_with("host:") => found.push(format!(
            "spec.template.spec.image: host: images need the runsc runtime, and WorkerPool {pool:?} runs runc: executions fail until the pool runs runsc or the image is an OCI image"
        )),
        _ => {}
    }
    for (i, gateway) in egress.into_iter().enumerate() {
        if !known
            .gateways
            .contains(&(namespace.clone(), gateway.to_string()))
        {
            found.push(format!(
                "spec.egressRefs[{i}].gatewayRef: no EgressGateway {namespace}/{gateway} exists: the agent reaches nothing outside until one is applied"
            ));
        }
    }
    found
}

fn parents(known: &Known, namespace: &str, refs: &[clrk_api::ParentRef]) -> Vec<String> {
    refs.iter()
        .enumerate()
        .filter(|(_, r)| !known.gateways.contains(&(namespace.to_string(), r.name.clone())))
        .map(|(i, r)| {
            format!(
                "spec.parentRefs[{i}].name: no EgressGateway {namespace}/{} exists: this does nothing until one is applied",
                r.name
            )
        })
        .collect()
}
