//! Cron (SPEC §8): fires every scheduled TaskAgent through the dispatcher, as an execution
//! with trigger and subject `cron` and `.data` = `spec.scheduleInput`.
//!
//! One loop owns the schedule table. Each pass reconciles it with the stored agents (a new
//! or changed schedule takes effect at once, a removed one stops), fires what is due, and
//! sleeps until the next tick or a trigger. Each fire runs in its own task, so a slow start
//! never delays another agent's tick. Ticks missed while the server was down are not
//! replayed: at start every schedule counts from now.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use clrk_api::{ConcurrencyPolicy, Resource, Schedule};
use clrk_dispatch::envelope::RequestData;
use clrk_dispatch::{Dispatcher, ExecEvent, Invocation, STOP_GRACE};
use clrk_store::{ScheduleTimes, Store, StoreError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The trigger (and envelope `subject`) of every cron-fired execution.
pub const CRON_TRIGGER: &str = "cron";
/// The table is reconciled at least this often, even without a trigger.
const RESYNC: Duration = Duration::from_secs(30);
/// How long a `Replace` tick waits for the stopped run to be gone.
const REPLACE_WAIT: Duration = Duration::from_secs(15);

/// `(namespace, name)` of an agent.
type Key = (String, String);

/// The cron scheduler. Cloning shares the same scheduler.
#[derive(Clone)]
pub struct Cron {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    dispatcher: Dispatcher,
    wake: Notify,
    shutdown: CancellationToken,
}

/// One scheduled agent as of the last reconcile.
struct Entry {
    expression: String,
    time_zone: String,
    schedule: Schedule,
    policy: ConcurrencyPolicy,
    input: serde_json::Value,
    times: ScheduleTimes,
}

impl Cron {
    /// Starts the scheduler loop.
    pub fn start(store: Store, dispatcher: Dispatcher) -> Cron {
        let cron = Cron {
            inner: Arc::new(Inner {
                store,
                dispatcher,
                wake: Notify::new(),
                shutdown: CancellationToken::new(),
            }),
        };
        tokio::spawn(cron.clone().run());
        cron
    }

    /// Asks for a reconcile now (after an apply or a delete).
    pub fn reconcile_soon(&self) {
        self.inner.wake.notify_one();
    }

    /// Stops firing. Executions already started are stopped by the dispatcher's shutdown.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    async fn run(self) {
        let mut table: HashMap<Key, Entry> = HashMap::new();
        loop {
            if let Err(error) = self.reconcile(&mut table).await {
                tracing::error!(%error, "cron reconcile failed; retrying");
            }
            self.fire_due(&mut table, Utc::now()).await;
            let now = Utc::now();
            let sleep = table
                .values()
                .filter_map(|e| e.times.next_schedule_time)
                .min()
                .map(|next| (next - now).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(RESYNC)
                .min(RESYNC);
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.inner.wake.notified() => {}
                _ = self.inner.shutdown.cancelled() => return,
            }
        }
    }

    /// Makes the table hold exactly the stored TaskAgents that have a schedule.
    async fn reconcile(&self, table: &mut HashMap<Key, Entry>) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let mut desired = HashMap::new();
        for agent in store.list_agents(None).await? {
            if agent.kind != "TaskAgent" {
                continue;
            }
            let Ok(Resource::TaskAgent(task)) = Resource::from_stored(&agent.spec) else {
                continue;
            };
            let Some(expression) = task.spec.schedule.clone() else {
                continue;
            };
            desired.insert((agent.namespace, agent.name), (expression, task.spec));
        }
        for (key, entry) in table.iter() {
            if !desired.contains_key(key) {
                tracing::info!(namespace = %key.0, agent = %key.1, "schedule removed");
                let times = ScheduleTimes {
                    next_schedule_time: None,
                    ..entry.times
                };
                self.save(key, &times).await;
            }
        }
        table.retain(|key, _| desired.contains_key(key));
        let now = Utc::now();
        for (key, (expression, spec)) in desired {
            if let Some(entry) = table.get_mut(&key)
                && entry.expression == expression
                && entry.time_zone == spec.time_zone
            {
                entry.policy = spec.concurrency_policy;
                entry.input = spec.schedule_input;
                continue;
            }
            let schedule = match Schedule::parse(&expression, &spec.time_zone) {
                Ok(schedule) => schedule,
                Err(error) => {
                    // Validation refuses these at apply; a stored one means an older clrk.
                    tracing::error!(%error, namespace = %key.0, agent = %key.1, "unusable schedule");
                    continue;
                }
            };
            let times = ScheduleTimes {
                last_schedule_time: store
                    .schedule_times(&key.0, &key.1)
                    .await?
                    .last_schedule_time,
                next_schedule_time: schedule.next_after(now),
            };
            self.save(&key, &times).await;
            tracing::info!(namespace = %key.0, agent = %key.1, schedule = %expression,
                time_zone = %spec.time_zone, next = ?times.next_schedule_time, "schedule set");
            table.insert(
                key,
                Entry {
                    expression,
                    time_zone: spec.time_zone,
                    schedule,
                    policy: spec.concurrency_policy,
                    input: spec.schedule_input,
                    times,
                },
            );
        }
        Ok(())
    }

    /// Fires every entry whose tick is due, once, however many ticks it is behind.
    async fn fire_due(&self, table: &mut HashMap<Key, Entry>, now: DateTime<Utc>) {
        for (key, entry) in table.iter_mut() {
            let Some(tick) = entry.times.next_schedule_time.filter(|t| *t <= now) else {
                continue;
            };
            let next = entry
                .schedule
                .next_after(tick)
                .filter(|next| *next > now)
                .or_else(|| entry.schedule.next_after(now));
            entry.times.next_schedule_time = next;
            let dispatcher = &self.inner.dispatcher;
            let active = dispatcher.active(&key.0, &key.1);
            if entry.policy == ConcurrencyPolicy::Forbid && active > 0 {
                tracing::info!(namespace = %key.0, agent = %key.1, %tick, active,
                    "cron tick skipped: concurrencyPolicy Forbid and a run is in flight");
                self.save(key, &entry.times).await;
                continue;
            }
            entry.times.last_schedule_time = Some(tick);
            self.save(key, &entry.times).await;
            tokio::spawn(fire(
                dispatcher.clone(),
                key.clone(),
                entry.policy,
                entry.input.clone(),
                tick,
            ));
        }
    }

    async fn save(&self, key: &Key, times: &ScheduleTimes) {
        match self
            .inner
            .store
            .set_schedule_times(&key.0, &key.1, times)
            .await
        {
            Ok(()) | Err(StoreError::AgentNotFound { .. }) => {}
            Err(error) => {
                tracing::error!(%error, namespace = %key.0, agent = %key.1, "could not record cron times")
            }
        }
    }
}

/// One tick: an execution through the dispatcher, its events read to the end and dropped
/// (cron has no caller; stdout is not kept, stderr is in the logs).
async fn fire(
    dispatcher: Dispatcher,
    (namespace, name): Key,
    policy: ConcurrencyPolicy,
    input: serde_json::Value,
    tick: DateTime<Utc>,
) {
    if policy == ConcurrencyPolicy::Replace && dispatcher.active(&namespace, &name) > 0 {
        let stopped = dispatcher.stop_agent(
            &namespace,
            &name,
            "stopped: replaced by the next scheduled run (concurrencyPolicy: Replace)",
        );
        tracing::info!(%namespace, agent = %name, stopped, "cron tick replaces the running executions");
        let deadline = tokio::time::Instant::now() + REPLACE_WAIT.max(STOP_GRACE);
        while dispatcher.active(&namespace, &name) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let body = serde_json::to_vec(&input).expect("a JSON value always serialises");
    let invocation = Invocation {
        namespace: namespace.clone(),
        name: name.clone(),
        execution_id: uuid::Uuid::new_v4().to_string(),
        trigger: Some(CRON_TRIGGER.to_string()),
        request: RequestData {
            method: "POST".to_string(),
            path: "/".to_string(),
            query: String::new(),
            content_type: Some("application/json".to_string()),
            body: Bytes::from(body),
            overrides: Vec::new(),
        },
        timeout: None,
    };
    let execution = invocation.execution_id.clone();
    match dispatcher.invoke(invocation).await {
        Ok(mut started) => {
            tracing::info!(%namespace, agent = %name, %execution, %tick, "cron fired");
            while let Some(event) = started.events.recv().await {
                if let ExecEvent::Finished(outcome) = event {
                    tracing::debug!(%namespace, agent = %name, %execution, ?outcome, "cron run ended");
                }
            }
        }
        Err(error) => {
            tracing::warn!(%error, %namespace, agent = %name, %tick, "cron tick could not start an execution")
        }
    }
}
