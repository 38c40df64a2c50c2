//! The PostgreSQL schema, as an append-only list of migrations recorded in
//! `clrk_migrations`. All pending ones are applied in one transaction under an advisory
//! lock, so processes starting together migrate once and never see half a schema.
//!
//! Never edit a migration that has shipped: add a new one at the end. Text keys use the
//! "C" collation so listings sort by bytes, as they do in SQLite, whatever the server's
//! locale. Log lines are BYTEA: PostgreSQL text cannot hold the NUL bytes a program may print.

use crate::{StoreError, error, time};

/// Every migration, oldest first; version N is `MIGRATIONS[N - 1]`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE agents (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    namespace   TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    kind        TEXT   NOT NULL,
    spec        TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (namespace, name)
);

CREATE TABLE revisions (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id      BIGINT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    namespace     TEXT COLLATE "C" NOT NULL,
    name          TEXT COLLATE "C" NOT NULL,
    number        BIGINT NOT NULL,
    shape         TEXT   NOT NULL,
    image_ref     TEXT   NOT NULL,
    image_digest  TEXT COLLATE "C" NOT NULL,
    state         TEXT   NOT NULL,
    reason        TEXT,
    created_at    BIGINT NOT NULL,
    UNIQUE (agent_id, number),
    UNIQUE (namespace, name)
);

-- `ord` orders executions started in the same millisecond as SQLite's rowid does.
CREATE TABLE executions (
    id           TEXT PRIMARY KEY,
    ord          BIGINT GENERATED ALWAYS AS IDENTITY,
    agent_id     BIGINT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    revision_id  BIGINT NOT NULL REFERENCES revisions(id) ON DELETE CASCADE,
    trigger      TEXT   NOT NULL,
    status       TEXT   NOT NULL,
    exit_code    INTEGER,
    reason       TEXT,
    started_at   BIGINT NOT NULL,
    ended_at     BIGINT,
    start        TEXT   NOT NULL DEFAULT 'cold'
);
CREATE INDEX executions_by_agent ON executions (agent_id, started_at);
CREATE INDEX executions_by_revision ON executions (revision_id);
CREATE INDEX executions_running ON executions (status) WHERE status = 'Running';

-- An identity never hands out a value twice, so a follower's `after_seq` stays valid.
CREATE TABLE logs (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id      BIGINT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    execution_id  TEXT   NOT NULL,
    stream        TEXT   NOT NULL,
    time          BIGINT NOT NULL,
    line          BYTEA  NOT NULL
);
CREATE INDEX logs_by_agent ON logs (agent_id, seq);

CREATE TABLE log_sizes (
    agent_id      BIGINT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    execution_id  TEXT   NOT NULL,
    first_seq     BIGINT NOT NULL,
    last_seq      BIGINT NOT NULL,
    bytes         BIGINT NOT NULL,
    PRIMARY KEY (agent_id, execution_id)
);
CREATE INDEX log_sizes_by_age ON log_sizes (agent_id, first_seq);

CREATE TABLE pools (
    name        TEXT COLLATE "C" PRIMARY KEY,
    namespace   TEXT   NOT NULL,
    spec        TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE schedules (
    agent_id            BIGINT PRIMARY KEY REFERENCES agents(id) ON DELETE CASCADE,
    last_schedule_time  BIGINT,
    next_schedule_time  BIGINT
);

CREATE TABLE daemons (
    agent_id          BIGINT PRIMARY KEY REFERENCES agents(id) ON DELETE CASCADE,
    revision          TEXT   NOT NULL,
    phase             TEXT   NOT NULL,
    restart_count     BIGINT NOT NULL,
    up_since          BIGINT,
    run_id            TEXT,
    last_exit_code    INTEGER,
    reason            TEXT,
    restart_delay_ms  BIGINT,
    next_restart_at   BIGINT,
    updated_at        BIGINT NOT NULL
);

CREATE TABLE secrets (
    namespace   TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (namespace, name)
);

CREATE TABLE secret_values (
    namespace  TEXT COLLATE "C" NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    key        TEXT COLLATE "C" NOT NULL,
    value      BYTEA NOT NULL,
    PRIMARY KEY (namespace, name, key),
    FOREIGN KEY (namespace, name) REFERENCES secrets (namespace, name) ON DELETE CASCADE
);

CREATE TABLE egress_objects (
    namespace   TEXT COLLATE "C" NOT NULL,
    kind        TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    spec        TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (namespace, kind, name)
);

CREATE TABLE egress_records (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    namespace          TEXT    NOT NULL,
    agent              TEXT    NOT NULL,
    revision           TEXT    NOT NULL,
    execution_id       TEXT,
    started_at         BIGINT  NOT NULL,
    duration_ms        BIGINT  NOT NULL,
    protocol           TEXT    NOT NULL,
    destination_name   TEXT,
    destination_addr   TEXT    NOT NULL,
    method             TEXT,
    path               TEXT,
    status             INTEGER,
    request_bytes      BIGINT  NOT NULL,
    response_bytes     BIGINT  NOT NULL,
    allowed            BOOLEAN NOT NULL,
    reason             TEXT    NOT NULL,
    injected_header    TEXT,
    provider           TEXT,
    model              TEXT,
    input_tokens       BIGINT,
    output_tokens      BIGINT
);
CREATE INDEX egress_records_by_agent ON egress_records (namespace, agent, id);
CREATE INDEX egress_records_by_execution ON egress_records (execution_id);

CREATE TABLE token_usage (
    namespace  TEXT   NOT NULL,
    agent      TEXT   NOT NULL,
    day        TEXT   NOT NULL,
    tokens     BIGINT NOT NULL,
    PRIMARY KEY (namespace, agent, day)
);
"#,
    // The registry of workers (SPECIFICATION "Workers"): who runs sandboxes, their heartbeats
    // and warm sandboxes, and which worker runs each execution.
    r#"
CREATE TABLE workers (
    name          TEXT COLLATE "C" PRIMARY KEY,
    pool          TEXT COLLATE "C" NOT NULL,
    address       TEXT   NOT NULL,
    capacity      BIGINT NOT NULL,
    state         TEXT   NOT NULL,
    incarnation   TEXT   NOT NULL,
    started_at    BIGINT NOT NULL,
    heartbeat_at  BIGINT NOT NULL
);

CREATE TABLE worker_warm (
    worker     TEXT COLLATE "C" NOT NULL REFERENCES workers(name) ON DELETE CASCADE,
    namespace  TEXT COLLATE "C" NOT NULL,
    agent      TEXT COLLATE "C" NOT NULL,
    revision   TEXT COLLATE "C" NOT NULL,
    ready      BIGINT NOT NULL,
    PRIMARY KEY (worker, namespace, agent, revision)
);

ALTER TABLE executions ADD COLUMN worker TEXT;
CREATE INDEX executions_running_by_worker ON executions (worker) WHERE status = 'Running';
"#,
    // Cron ticks claimed before they fire, so that two servers that both believe they lead
    // cron never fire one tick twice; they go with their agent.
    r#"
CREATE TABLE cron_fires (
    agent_id  BIGINT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    tick      BIGINT NOT NULL,
    PRIMARY KEY (agent_id, tick)
);
"#,
    // Executions and logs outlive their agent (SPECIFICATION §3.5): they belong to the
    // agent's name (its history, kept across deletes and re-creations), and each execution
    // records the uid of the agent that ran it and its revision's name. Histories take their
    // agents' ids so that existing rows keep theirs.
    r#"
CREATE TABLE histories (
    id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    namespace  TEXT COLLATE "C" NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    UNIQUE (namespace, name)
);
INSERT INTO histories (id, namespace, name) SELECT id, namespace, name FROM agents;
SELECT setval(pg_get_serial_sequence('histories', 'id'), COALESCE(MAX(id), 0) + 1, false)
    FROM histories;

ALTER TABLE agents ADD COLUMN uid TEXT COLLATE "C";
UPDATE agents SET uid = gen_random_uuid()::text;
ALTER TABLE agents ALTER COLUMN uid SET NOT NULL;
CREATE UNIQUE INDEX agents_by_uid ON agents (uid);

ALTER TABLE executions DROP CONSTRAINT executions_agent_id_fkey;
ALTER TABLE executions RENAME COLUMN agent_id TO history_id;
ALTER TABLE executions ADD COLUMN agent_uid TEXT COLLATE "C", ADD COLUMN revision TEXT COLLATE "C";
UPDATE executions e SET agent_uid = a.uid, revision = r.name
    FROM agents a, revisions r WHERE a.id = e.history_id AND r.id = e.revision_id;
ALTER TABLE executions
    ALTER COLUMN agent_uid SET NOT NULL,
    ALTER COLUMN revision SET NOT NULL,
    DROP COLUMN revision_id,
    ADD CONSTRAINT executions_history_id_fkey FOREIGN KEY (history_id) REFERENCES histories(id);
ALTER INDEX executions_by_agent RENAME TO executions_by_history;

ALTER TABLE logs DROP CONSTRAINT logs_agent_id_fkey;
ALTER TABLE logs RENAME COLUMN agent_id TO history_id;
ALTER TABLE logs
    ADD CONSTRAINT logs_history_id_fkey FOREIGN KEY (history_id) REFERENCES histories(id);
ALTER INDEX logs_by_agent RENAME TO logs_by_history;

ALTER TABLE log_sizes DROP CONSTRAINT log_sizes_agent_id_fkey;
ALTER TABLE log_sizes RENAME COLUMN agent_id TO history_id;
ALTER TABLE log_sizes
    ADD CONSTRAINT log_sizes_history_id_fkey FOREIGN KEY (history_id) REFERENCES histories(id);
"#,
    // The spans of each execution's trace (SPECIFICATION §9.7), capped per execution by the
    // writer and kept as long as the execution.
    r#"
CREATE TABLE execution_spans (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    execution_id    TEXT   NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    trace_id        TEXT   NOT NULL,
    span_id         TEXT   NOT NULL,
    parent_span_id  TEXT,
    name            TEXT   NOT NULL,
    start_us        BIGINT NOT NULL,
    duration_us     BIGINT NOT NULL,
    attributes      TEXT   NOT NULL,
    error           TEXT
);
CREATE INDEX execution_spans_by_execution ON execution_spans (execution_id, start_us);
"#,
];

/// The advisory lock migrations run under ("clrkmigr" as a number); any fixed key works as
/// long as every clrk version uses the same one.
const LOCK_KEY: i64 = 0x636c_726b_6d69_6772;

/// Applies the migrations the database lacks, all in one transaction.
pub(super) async fn migrate(
    client: &mut deadpool_postgres::Client,
    target: &str,
) -> Result<(), StoreError> {
    migrate_up_to(client, target, MIGRATIONS.len()).await
}

/// Applies the migrations the database lacks up to version `known`.
async fn migrate_up_to(
    client: &mut tokio_postgres::Client,
    target: &str,
    known: usize,
) -> Result<(), StoreError> {
    let fail = |reason: String| StoreError::PgMigrate {
        target: target.to_owned(),
        reason,
    };
    let pg = |e: tokio_postgres::Error| fail(error::pg_message(&e));
    let tx = client.transaction().await.map_err(pg)?;
    // Taken before looking at the schema: a second process waits here until the first has
    // committed, then finds nothing left to do.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(pg)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS clrk_migrations (\
           version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .await
    .map_err(pg)?;
    let current: i32 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM clrk_migrations", &[])
        .await
        .map_err(pg)?
        .get(0);
    let current = usize::try_from(current).unwrap_or(0);
    if current > known {
        return Err(fail(format!(
            "its schema is version {current}, this clrk knows up to {known}"
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().take(known).skip(current) {
        let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
        tx.batch_execute(sql)
            .await
            .map_err(|e| fail(format!("migration {version}: {}", error::pg_message(&e))))?;
        tx.execute(
            "INSERT INTO clrk_migrations (version, applied_at) VALUES ($1, $2)",
            &[&version, &time::to_millis(time::now())],
        )
        .await
        .map_err(pg)?;
        tracing::info!(database = target, version, "PostgreSQL migration applied");
    }
    tx.commit().await.map_err(pg)?;
    Ok(())
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn executions_and_logs_of_existing_agents_are_kept_by_the_upgrade() {
        let db = crate::testing::TempPostgres::database().await;
        let (mut client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        let connection = tokio::spawn(connection);
        migrate_up_to(&mut client, "test", 3).await.unwrap();
        client
            .batch_execute(
                "INSERT INTO agents (namespace, name, kind, spec, created_at, updated_at) \
                 VALUES ('default', 'echo', 'TaskAgent', '{}', 1, 1); \
                 INSERT INTO revisions (agent_id, namespace, name, number, shape, image_ref, \
                   image_digest, state, created_at) \
                 SELECT id, 'default', 'echo-00001', 1, '{}', 'echo', 'sha256:1', 'Ready', 1 FROM agents; \
                 INSERT INTO executions (id, agent_id, revision_id, trigger, status, started_at) \
                 SELECT 'ev-1', a.id, r.id, 'http', 'Succeeded', 1 FROM agents a, revisions r; \
                 INSERT INTO logs (agent_id, execution_id, stream, time, line) \
                 SELECT id, 'ev-1', 'stderr', 1, 'hello'::bytea FROM agents; \
                 INSERT INTO log_sizes (agent_id, execution_id, first_seq, last_seq, bytes) \
                 SELECT id, 'ev-1', 1, 1, 69 FROM agents;",
            )
            .await
            .unwrap();
        migrate_up_to(&mut client, "test", MIGRATIONS.len())
            .await
            .unwrap();
        let row = client
            .query_one(
                "SELECT h.namespace, h.name, e.revision, e.agent_uid = a.uid \
                 FROM executions e JOIN histories h ON h.id = e.history_id \
                 JOIN agents a ON a.namespace = h.namespace AND a.name = h.name",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            (
                row.get::<_, String>(0),
                row.get::<_, String>(1),
                row.get::<_, String>(2),
                row.get::<_, bool>(3)
            ),
            ("default".into(), "echo".into(), "echo-00001".into(), true)
        );
        // The agent's delete leaves its execution, line and size; a new name's history gets
        // an id of its own.
        client
            .batch_execute(
                "DELETE FROM agents; \
                 INSERT INTO histories (namespace, name) VALUES ('default', 'other');",
            )
            .await
            .unwrap();
        let counts = client
            .query_one(
                "SELECT (SELECT count(*) FROM executions), (SELECT count(*) FROM logs), \
                 (SELECT count(*) FROM log_sizes), (SELECT count(DISTINCT id) FROM histories)",
                &[],
            )
            .await
            .unwrap();
        let counts: Vec<i64> = (0..4).map(|i| counts.get(i)).collect();
        assert_eq!(counts, [1, 1, 1, 2]);
        drop(client);
        connection.await.unwrap().unwrap();
    }
}
