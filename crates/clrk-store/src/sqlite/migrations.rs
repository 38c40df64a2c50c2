//! The schema, as an append-only list of migrations versioned by `PRAGMA user_version`.
//!
//! Never edit a migration that has shipped: add a new one at the end.

use rusqlite_migration::{M, Migrations};

/// Every migration, oldest first.
const MIGRATIONS: &[M<'static>] = &[
    M::up(
        r#"
CREATE TABLE agents (
    id          INTEGER PRIMARY KEY,
    namespace   TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    spec        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (namespace, name)
) STRICT;

CREATE TABLE revisions (
    id            INTEGER PRIMARY KEY,
    agent_id      INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    namespace     TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    number        INTEGER NOT NULL,
    shape         TEXT    NOT NULL,
    image_ref     TEXT    NOT NULL,
    image_digest  TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    reason        TEXT,
    created_at    INTEGER NOT NULL,
    UNIQUE (agent_id, number),
    UNIQUE (namespace, name)
) STRICT;

CREATE TABLE executions (
    id           TEXT    PRIMARY KEY,
    agent_id     INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    revision_id  INTEGER NOT NULL REFERENCES revisions(id) ON DELETE CASCADE,
    trigger      TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    exit_code    INTEGER,
    reason       TEXT,
    started_at   INTEGER NOT NULL,
    ended_at     INTEGER
) STRICT;
CREATE INDEX executions_by_agent ON executions (agent_id, started_at);
CREATE INDEX executions_by_revision ON executions (revision_id);
CREATE INDEX executions_running ON executions (status) WHERE status = 'Running';

-- AUTOINCREMENT so a follower's `after_seq` never sees a reused seq after deletes.
CREATE TABLE logs (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id      INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    execution_id  TEXT    NOT NULL,
    stream        TEXT    NOT NULL,
    time          INTEGER NOT NULL,
    line          TEXT    NOT NULL
) STRICT;
CREATE INDEX logs_by_agent ON logs (agent_id, seq);

CREATE TABLE pools (
    name        TEXT    PRIMARY KEY,
    namespace   TEXT    NOT NULL,
    spec        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;
"#,
    ),
    // Cron times of scheduled TaskAgents and the supervision state of DaemonAgents; both go
    // with their agent.
    M::up(
        r#"
CREATE TABLE schedules (
    agent_id            INTEGER PRIMARY KEY REFERENCES agents(id) ON DELETE CASCADE,
    last_schedule_time  INTEGER,
    next_schedule_time  INTEGER
) STRICT;

CREATE TABLE daemons (
    agent_id          INTEGER PRIMARY KEY REFERENCES agents(id) ON DELETE CASCADE,
    revision          TEXT    NOT NULL,
    phase             TEXT    NOT NULL,
    restart_count     INTEGER NOT NULL,
    up_since          INTEGER,
    run_id            TEXT,
    last_exit_code    INTEGER,
    reason            TEXT,
    restart_delay_ms  INTEGER,
    next_restart_at   INTEGER,
    updated_at        INTEGER NOT NULL
) STRICT;
"#,
    ),
    // Whether an execution took a warm sandbox from its agent's pool or started its own.
    M::up("ALTER TABLE executions ADD COLUMN start TEXT NOT NULL DEFAULT 'cold';"),
    // Secrets for the egress proxy: values only ever read by name and key.
    M::up(
        r#"
CREATE TABLE secrets (
    namespace   TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
) STRICT;

CREATE TABLE secret_values (
    namespace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      BLOB NOT NULL,
    PRIMARY KEY (namespace, name, key),
    FOREIGN KEY (namespace, name) REFERENCES secrets (namespace, name) ON DELETE CASCADE
) STRICT;
"#,
    ),
    // The egress gateway: its configuration objects, what went through it, and the tokens
    // each agent spent per day (budgets survive restarts).
    M::up(
        r#"
CREATE TABLE egress_objects (
    namespace   TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    spec        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (namespace, kind, name)
) STRICT;

CREATE TABLE egress_records (
    id                 INTEGER PRIMARY KEY,
    namespace          TEXT    NOT NULL,
    agent              TEXT    NOT NULL,
    revision           TEXT    NOT NULL,
    execution_id       TEXT,
    started_at         INTEGER NOT NULL,
    duration_ms        INTEGER NOT NULL,
    protocol           TEXT    NOT NULL,
    destination_name   TEXT,
    destination_addr   TEXT    NOT NULL,
    method             TEXT,
    path               TEXT,
    status             INTEGER,
    request_bytes      INTEGER NOT NULL,
    response_bytes     INTEGER NOT NULL,
    allowed            INTEGER NOT NULL,
    reason             TEXT    NOT NULL,
    injected_header    TEXT,
    provider           TEXT,
    model              TEXT,
    input_tokens       INTEGER,
    output_tokens      INTEGER
) STRICT;
CREATE INDEX egress_records_by_agent ON egress_records (namespace, agent, id);
CREATE INDEX egress_records_by_execution ON egress_records (execution_id);

CREATE TABLE token_usage (
    namespace  TEXT    NOT NULL,
    agent      TEXT    NOT NULL,
    day        TEXT    NOT NULL,
    tokens     INTEGER NOT NULL,
    PRIMARY KEY (namespace, agent, day)
) STRICT;
"#,
    ),
    // Log bytes each execution keeps, so an agent's total is held under its cap (oldest
    // executions deleted first) without reading its lines; filled from the lines already kept.
    M::up(
        r#"
CREATE TABLE log_sizes (
    agent_id      INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    execution_id  TEXT    NOT NULL,
    first_seq     INTEGER NOT NULL,
    last_seq      INTEGER NOT NULL,
    bytes         INTEGER NOT NULL,
    PRIMARY KEY (agent_id, execution_id)
) STRICT;
CREATE INDEX log_sizes_by_age ON log_sizes (agent_id, first_seq);
INSERT INTO log_sizes (agent_id, execution_id, first_seq, last_seq, bytes)
    SELECT agent_id, execution_id, MIN(seq), MAX(seq), SUM(length(CAST(line AS BLOB)))
    FROM logs GROUP BY agent_id, execution_id;
"#,
    ),
    // The registry of workers (SPECIFICATION "Workers"): who runs sandboxes, their heartbeats
    // and warm sandboxes, and which worker runs each execution.
    M::up(
        r#"
CREATE TABLE workers (
    name          TEXT    PRIMARY KEY,
    pool          TEXT    NOT NULL,
    address       TEXT    NOT NULL,
    capacity      INTEGER NOT NULL,
    state         TEXT    NOT NULL,
    incarnation   TEXT    NOT NULL,
    started_at    INTEGER NOT NULL,
    heartbeat_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE worker_warm (
    worker     TEXT    NOT NULL REFERENCES workers(name) ON DELETE CASCADE,
    namespace  TEXT    NOT NULL,
    agent      TEXT    NOT NULL,
    revision   TEXT    NOT NULL,
    ready      INTEGER NOT NULL,
    PRIMARY KEY (worker, namespace, agent, revision)
) STRICT;

ALTER TABLE executions ADD COLUMN worker TEXT;
CREATE INDEX executions_running_by_worker ON executions (worker) WHERE status = 'Running';
"#,
    ),
    // Cron ticks claimed before they fire, so that two servers that both believe they lead
    // cron never fire one tick twice; they go with their agent.
    M::up(
        r#"
CREATE TABLE cron_fires (
    agent_id  INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    tick      INTEGER NOT NULL,
    PRIMARY KEY (agent_id, tick)
) STRICT;
"#,
    ),
    // Executions and logs outlive their agent (SPECIFICATION §3.5): they belong to the
    // agent's name (its history, kept across deletes and re-creations), and each execution
    // records the uid of the agent that ran it and its revision's name. Histories take their
    // agents' ids so that copied rows keep theirs; `seq` goes on where it was.
    M::up(
        r#"
CREATE TABLE histories (
    id         INTEGER PRIMARY KEY,
    namespace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    UNIQUE (namespace, name)
) STRICT;
INSERT INTO histories (id, namespace, name) SELECT id, namespace, name FROM agents;

ALTER TABLE agents ADD COLUMN uid TEXT NOT NULL DEFAULT '';
UPDATE agents SET uid = lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4'
    || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + abs(random() % 4), 1)
    || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)));
CREATE UNIQUE INDEX agents_by_uid ON agents (uid);

CREATE TABLE executions_kept (
    id           TEXT    PRIMARY KEY,
    history_id   INTEGER NOT NULL REFERENCES histories(id),
    agent_uid    TEXT    NOT NULL,
    revision     TEXT    NOT NULL,
    trigger      TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    exit_code    INTEGER,
    reason       TEXT,
    started_at   INTEGER NOT NULL,
    ended_at     INTEGER,
    start        TEXT    NOT NULL DEFAULT 'cold',
    worker       TEXT
) STRICT;
INSERT INTO executions_kept (id, history_id, agent_uid, revision, trigger, status, exit_code,
        reason, started_at, ended_at, start, worker)
    SELECT e.id, e.agent_id, a.uid, r.name, e.trigger, e.status, e.exit_code, e.reason,
        e.started_at, e.ended_at, e.start, e.worker
    FROM executions e JOIN agents a ON a.id = e.agent_id JOIN revisions r ON r.id = e.revision_id
    ORDER BY e.rowid;
DROP TABLE executions;
ALTER TABLE executions_kept RENAME TO executions;
CREATE INDEX executions_by_history ON executions (history_id, started_at);
CREATE INDEX executions_running ON executions (status) WHERE status = 'Running';
CREATE INDEX executions_running_by_worker ON executions (worker) WHERE status = 'Running';

CREATE TABLE logs_kept (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    history_id    INTEGER NOT NULL REFERENCES histories(id),
    execution_id  TEXT    NOT NULL,
    stream        TEXT    NOT NULL,
    time          INTEGER NOT NULL,
    line          TEXT    NOT NULL
) STRICT;
INSERT INTO logs_kept (seq, history_id, execution_id, stream, time, line)
    SELECT seq, agent_id, execution_id, stream, time, line FROM logs;
DELETE FROM sqlite_sequence WHERE name = 'logs_kept';
INSERT INTO sqlite_sequence (name, seq) SELECT 'logs_kept', seq FROM sqlite_sequence WHERE name = 'logs';
DROP TABLE logs;
ALTER TABLE logs_kept RENAME TO logs;
CREATE INDEX logs_by_history ON logs (history_id, seq);

CREATE TABLE log_sizes_kept (
    history_id    INTEGER NOT NULL REFERENCES histories(id),
    execution_id  TEXT    NOT NULL,
    first_seq     INTEGER NOT NULL,
    last_seq      INTEGER NOT NULL,
    bytes         INTEGER NOT NULL,
    PRIMARY KEY (history_id, execution_id)
) STRICT;
INSERT INTO log_sizes_kept (history_id, execution_id, first_seq, last_seq, bytes)
    SELECT agent_id, execution_id, first_seq, last_seq, bytes FROM log_sizes;
DROP TABLE log_sizes;
ALTER TABLE log_sizes_kept RENAME TO log_sizes;
CREATE INDEX log_sizes_by_age ON log_sizes (history_id, first_seq);
"#,
    ),
    // The spans of each execution's trace (SPECIFICATION §9.7), capped per execution by the
    // writer and kept as long as the execution.
    M::up(
        r#"
CREATE TABLE execution_spans (
    seq             INTEGER PRIMARY KEY,
    execution_id    TEXT    NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    trace_id        TEXT    NOT NULL,
    span_id         TEXT    NOT NULL,
    parent_span_id  TEXT,
    name            TEXT    NOT NULL,
    start_us        INTEGER NOT NULL,
    duration_us     INTEGER NOT NULL,
    attributes      TEXT    NOT NULL,
    error           TEXT
) STRICT;
CREATE INDEX execution_spans_by_execution ON execution_spans (execution_id, start_us);
"#,
    ),
];

/// The migration runner over [`MIGRATIONS`].
pub(crate) fn migrations() -> Migrations<'static> {
    Migrations::from_slice(MIGRATIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid_sql_and_apply_from_empty() {
        assert!(migrations().validate().is_ok());
    }

    #[test]
    fn executions_and_logs_of_existing_agents_are_kept_by_the_upgrade() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        migrations().to_version(&mut conn, 8).unwrap();
        conn.execute_batch(
            "INSERT INTO agents (namespace, name, kind, spec, created_at, updated_at) \
             VALUES ('default', 'echo', 'TaskAgent', '{}', 1, 1); \
             INSERT INTO revisions (agent_id, namespace, name, number, shape, image_ref, \
               image_digest, state, created_at) \
             VALUES (1, 'default', 'echo-00001', 1, '{}', 'echo', 'sha256:1', 'Ready', 1); \
             INSERT INTO executions (id, agent_id, revision_id, trigger, status, started_at) \
             VALUES ('ev-2', 1, 1, 'http', 'Succeeded', 1), ('ev-1', 1, 1, 'http', 'Failed', 1); \
             INSERT INTO logs (agent_id, execution_id, stream, time, line) \
             VALUES (1, 'ev-2', 'stderr', 1, 'hello'), (1, 'ev-2', 'stderr', 1, 'gone'); \
             DELETE FROM logs WHERE line = 'gone'; \
             INSERT INTO log_sizes (agent_id, execution_id, first_seq, last_seq, bytes) \
             VALUES (1, 'ev-2', 1, 1, 69);",
        )
        .unwrap();
        migrations().to_latest(&mut conn).unwrap();
        let uid: String = conn
            .query_row("SELECT uid FROM agents", [], |r| r.get(0))
            .unwrap();
        assert_eq!(uid.len(), 36, "{uid}");
        // Rows keep their order (the listing's tie-break), agent, uid and revision.
        let mut stmt = conn
            .prepare(
                "SELECT e.id, h.name, e.agent_uid, e.revision FROM executions e \
                 JOIN histories h ON h.id = e.history_id ORDER BY e.rowid",
            )
            .unwrap();
        let rows: Vec<(String, String, String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let echo = |id: &str| (id.into(), "echo".into(), uid.clone(), "echo-00001".into());
        assert_eq!(rows, [echo("ev-2"), echo("ev-1")]);
        // The agent's delete leaves its history; `seq` goes on past the deleted line's.
        conn.execute_batch(
            "DELETE FROM agents; \
             INSERT INTO logs (history_id, execution_id, stream, time, line) \
             VALUES (1, 'ev-2', 'stderr', 1, 'next');",
        )
        .unwrap();
        let seqs: Vec<i64> = conn
            .prepare("SELECT seq FROM logs ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(seqs, [1, 3]);
        let kept: (i64, i64) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM executions), (SELECT count(*) FROM log_sizes)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(kept, (2, 1));
    }
}
