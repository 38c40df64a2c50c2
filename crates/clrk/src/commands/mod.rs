//! One module per command; each takes its parsed arguments and a [`Session`].

pub mod agents;
pub mod apply;
pub mod cluster;
pub mod delete;
pub mod dev;
pub mod diff;
pub mod egress;
pub mod get;
pub mod images;
pub mod install;
pub mod pools;
pub mod registry;
pub mod run_task;
pub mod secret;
pub mod workers;

use std::path::PathBuf;

use crate::cli::{
    AgentsCommand, Cli, Command, EgressCommand, GlobalArgs, ImagesCommand, PoolsCommand,
    RegistryCommand, SecretCommand, WorkersCommand,
};
use crate::client::ApiClient;
use crate::discovery::{self, Endpoints};

/// What every command needs to find the server.
#[derive(Debug, Clone)]
pub struct Session {
    /// Flags and environment shared by all commands.
    pub global: GlobalArgs,
    /// `$CLRK_DIR`.
    pub clrk_dir: PathBuf,
}

impl Session {
    /// The server's endpoints (flags, environment, then `dev.json`).
    pub fn endpoints(&self) -> anyhow::Result<Endpoints> {
        Ok(discovery::discover(&self.global, &self.clrk_dir)?)
    }

    /// A client for the server's control API.
    pub fn api(&self) -> anyhow::Result<ApiClient> {
        Ok(ApiClient::new(&self.endpoints()?)?)
    }
}

/// Runs the command `cli` names.
pub async fn run(cli: Cli, clrk_dir: PathBuf) -> anyhow::Result<()> {
    let session = Session {
        global: cli.global,
        clrk_dir,
    };
    match cli.command {
        Command::Dev(args) => dev::run(args, &session).await,
        Command::Server(args) => cluster::server(args, &session).await,
        Command::Worker(args) => cluster::worker(args).await,
        Command::Install(args) => install::install(args).await,
        Command::Upgrade(args) => install::upgrade(args).await,
        Command::Apply(args) => apply::run(args, &session).await,
        Command::Diff(args) => diff::run(args, &session).await,
        Command::Delete(args) => delete::run(args, &session).await,
        Command::Get(args) => get::run(args, &session).await,
        Command::Agents(command) => match command {
            AgentsCommand::List(args) => agents::list::run(args, &session).await,
            AgentsCommand::Get(args) => agents::get::run(args, &session).await,
            AgentsCommand::Delete(args) => agents::delete::run(args, &session).await,
            AgentsCommand::Logs(args) => agents::logs::run(args, &session).await,
            AgentsCommand::Invocations(args) => agents::invocations::run(args, &session).await,
            AgentsCommand::Traces(args) => agents::traces::run(args, &session).await,
            AgentsCommand::RunTask(args) => run_task::run(args, &session).await,
            AgentsCommand::Egress(args) => agents::egress::run(args, &session).await,
        },
        Command::Pools(PoolsCommand::List(args)) => pools::list(args, &session).await,
        Command::Workers(command) => match command {
            WorkersCommand::List(args) => workers::list(args, &session).await,
            WorkersCommand::Drain(args) => workers::drain(args, &session).await,
        },
        Command::Images(command) => match command {
            ImagesCommand::List(args) => images::list(args, &session).await,
            ImagesCommand::Import(args) => images::import(args, &session).await,
            ImagesCommand::Prune => images::prune(&session).await,
        },
        Command::Registry(RegistryCommand::Login(args)) => registry::login(args).await,
        Command::Secret(command) => match command {
            SecretCommand::Set(args) => secret::set(args, &session).await,
            SecretCommand::List(args) => secret::list(args, &session).await,
            SecretCommand::Delete(args) => secret::delete(args, &session).await,
        },
        Command::Egress(command) => match command {
            EgressCommand::List(args) => egress::list(args, &session).await,
            EgressCommand::Get(args) => egress::get(args, &session).await,
        },
    }
}
