//! `clrk server` and `clrk worker`: hand the flags over to the cluster processes of
//! `clrk-server` and run them until SIGTERM.

use clrk_server::cluster::server::ServerOptions;
use clrk_server::cluster::worker::WorkerOptions;

use crate::cli::{ServerArgs, WorkerArgs};
use crate::commands::Session;

/// Runs a cluster server until SIGTERM or Ctrl-C.
pub async fn server(args: ServerArgs, session: &Session) -> anyhow::Result<()> {
    let options = ServerOptions {
        database: args.database,
        ingress_addr: args.listen,
        api_addr: args.api,
        token_file: args.token_file,
        cluster_secret_file: args.cluster_secret_file,
        data_dir: args
            .data_dir
            .unwrap_or_else(|| session.clrk_dir.join("server")),
        allow_host_rootfs: args.allow_host_rootfs,
        insecure_registries: args.registries.insecure_registries,
        ingress_connections: args.ingress_limits.max_connections,
        ingress_connections_per_client: args.ingress_limits.max_connections_per_client,
        metrics_addr: args.metrics.addr,
    };
    args.ingress_limits.apply();
    // The server's messages already carry their causes; a chain would repeat them.
    clrk_server::cluster::server::run(options)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Runs a cluster worker until SIGTERM or Ctrl-C, then drains it.
pub async fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    let options = WorkerOptions {
        database: args.database,
        pool: args.pool,
        listen: args.listen,
        advertise: args.advertise,
        health: args.health,
        metrics: args.metrics.addr,
        data_dir: args.data_dir,
        cluster_secret_file: args.cluster_secret_file,
        name: args.name,
        allow_host_rootfs: args.allow_host_rootfs,
        insecure_registries: args.registries.insecure_registries,
        dns_upstream: args.dns_upstream,
    };
    clrk_server::cluster::worker::run(options)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}
