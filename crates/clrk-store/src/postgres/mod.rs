//! The PostgreSQL backend (the cluster): a pool of async connections to one database, each
//! call one transaction. Serialisation SQLite gets from its single connection is made
//! explicit here with transaction-scoped advisory locks (see `locks`).

mod agents;
mod columns;
mod egress;
mod executions;
mod histories;
mod leadership;
mod locks;
mod logs;
mod migrations;
mod pools;
mod secrets;
mod spans;
mod supervision;
mod workers;

pub(crate) use leadership::PgLeadership;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod};
use tokio_postgres::NoTls;
use tokio_postgres::config::Host;

use crate::StoreError;

/// Connections kept open per process: enough for the server's concurrent callers without
/// holding many of the server's (default 100) slots.
const POOL_SIZE: usize = 16;

/// How long establishing a connection may take unless the URL says otherwise: an unreachable
/// host otherwise waits out the OS's TCP timeout (minutes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One PostgreSQL database; clones share its pool.
#[derive(Clone)]
pub(crate) struct PgStore {
    pool: Pool,
    /// How to connect, for the dedicated connection a leader holds outside the pool.
    config: Arc<tokio_postgres::Config>,
    /// `user@host:port/database` for messages; never the password.
    target: Arc<str>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects, proves the database answers, and migrates it.
    pub(crate) async fn connect(url: &str) -> Result<PgStore, StoreError> {
        let mut config =
            tokio_postgres::Config::from_str(url).map_err(|source| StoreError::Url { source })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let target: Arc<str> = describe(&config).into();
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| StoreError::Pool {
                target: target.to_string(),
                reason: e.to_string(),
            })?;
        let store = PgStore {
            pool,
            config: Arc::new(config),
            target,
        };
        // The first connection proves the server, login and database; its failure is a
        // `Connect` error naming them.
        let mut client = store.client().await?;
        migrations::migrate(&mut client, &store.target).await?;
        Ok(store)
    }

    /// `user@host:port/database`.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// A pooled connection.
    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            PoolError::Backend(source) => StoreError::Connect {
                target: self.target.to_string(),
                source,
            },
            other => StoreError::Pool {
                target: self.target.to_string(),
                reason: other.to_string(),
            },
        })
    }
}

/// `user@host:port/database` as libpq would resolve the defaults, without the password.
fn describe(config: &tokio_postgres::Config) -> String {
    let user = config.get_user().unwrap_or("postgres");
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or(user);
    format!("{user}@{host}:{port}/{db}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names_user_host_port_and_database_but_not_the_password() {
        let config =
            tokio_postgres::Config::from_str("postgres://clrk:hunter2@db.local:6543/prod").unwrap();
        assert_eq!(describe(&config), "clrk@db.local:6543/prod");
        let defaults = tokio_postgres::Config::from_str("postgres://clrk@db.local").unwrap();
        assert_eq!(describe(&defaults), "clrk@db.local:5432/clrk");
    }
}
