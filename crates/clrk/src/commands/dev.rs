//! `clrk dev`: check the `-f` manifests, then hand over to the server library until Ctrl-C.
//!
//! Kept to one small function so the wiring to `clrk-server` lives in one place.

use clrk_server::dev::DevOptions;

use crate::cli::DevArgs;
use crate::commands::Session;
use crate::manifests::{self, SourcedDocument};

/// Parses `-f` files (an invalid one stops here, before anything listens), then runs the
/// server with the host root filesystem allowed, as local development needs.
pub async fn run(args: DevArgs, session: &Session) -> anyhow::Result<()> {
    let documents = if args.files.is_empty() {
        Vec::new()
    } else {
        manifests::load(&args.files, false)?
    };
    let options = DevOptions {
        data_dir: args
            .data_dir
            .unwrap_or_else(|| session.clrk_dir.join("dev")),
        clrk_dir: session.clrk_dir.clone(),
        ingress_addr: args.listen,
        api_addr: args.api,
        manifests: by_source(documents),
        allow_host_rootfs: true,
        insecure_registries: args.registries.insecure_registries,
        log_to_terminal: true,
        dns_upstream: args.dns_upstream,
        ingress_connections: args.ingress_limits.max_connections,
        ingress_connections_per_client: args.ingress_limits.max_connections_per_client,
        metrics_addr: args.metrics.addr,
    };
    tracing::info!(data_dir = %options.data_dir.display(), ingress = %options.ingress_addr, api = %options.api_addr, "starting clrk dev");
    args.ingress_limits.apply();
    // The server's messages already carry their causes; a chain would repeat them.
    clrk_server::dev::run(options)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// Groups documents by the file they came from, keeping the order they were read in.
fn by_source(documents: Vec<SourcedDocument>) -> Vec<(String, Vec<clrk_api::Document>)> {
    let mut grouped: Vec<(String, Vec<clrk_api::Document>)> = Vec::new();
    for document in documents {
        match grouped.last_mut() {
            Some((source, group)) if *source == document.source => group.push(document.document),
            _ => grouped.push((document.source, vec![document.document])),
        }
    }
    grouped
}
