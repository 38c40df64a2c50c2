//! Leadership: which one of several processes sharing a database does a cluster-wide job
//! (the lost-worker sweep, cron). Held until dropped or until its connection is lost.

use crate::postgres::PgLeadership;

/// A held leadership, from [`Store::try_lead`](crate::Store::try_lead). Dropping it gives the
/// leadership up; [`Leadership::lost`] says when it was lost without being dropped.
pub struct Leadership {
    holder: Holder,
}

enum Holder {
    /// One process owns a SQLite file (the data dir is locked), so it always leads.
    Sqlite,
    /// A session advisory lock on a connection of its own.
    Postgres(PgLeadership),
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match self.holder {
            Holder::Sqlite => "sqlite",
            Holder::Postgres(_) => "postgres",
        };
        f.debug_struct("Leadership")
            .field("backend", &backend)
            .finish()
    }
}

impl Leadership {
    pub(crate) fn sqlite() -> Leadership {
        Leadership {
            holder: Holder::Sqlite,
        }
    }

    pub(crate) fn postgres(held: PgLeadership) -> Leadership {
        Leadership {
            holder: Holder::Postgres(held),
        }
    }

    /// Resolves when the leadership is lost: on PostgreSQL, when the connection holding the
    /// lock ends (the leader must stop leading at once: another process may lead already).
    /// On SQLite it never resolves.
    pub async fn lost(&self) {
        match &self.holder {
            Holder::Sqlite => std::future::pending().await,
            Holder::Postgres(held) => held.lost().await,
        }
    }
}
