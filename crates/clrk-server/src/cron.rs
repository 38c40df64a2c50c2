//! Cron (SPECIFICATION §8): fires every scheduled TaskAgent through the dispatcher, as an execution
//! with trigger and subject `cron` and `.data` = `spec.scheduleInput`.
//!
//! One loop owns the schedule table. Each pass reads the stored agents' schedules, lets
//! [`plan`] decide against the table and the time (a new or changed schedule takes effect at
//! once, a removed one stops, due ticks fire), carries the plan out, and sleeps until the
//! next tick or a trigger. Each fire runs in its own task, so a slow start never delays
//! another agent's tick. Ticks missed while the server was down are not replayed: at start
//! every schedule counts from now.
//!
//! In a cluster every server runs this, but only the leader of [`CRON_LEADERSHIP`] fires; the
//! others try to lead every [`LEAD_RETRY`] and the one that takes over starts from an empty
//! table, so it fires the next tick, not the ones missed. Before firing, a tick is claimed in
//! the store ([`Store::claim_cron_tick`]): two servers that both believe they lead for a
//! moment still fire it once. `clrk dev` (SQLite) always leads.

mod plan;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SubsecRound as _, Utc};
use clrk_api::{ConcurrencyPolicy, ObjectKey, Resource};
use clrk_dispatch::envelope::RequestData;
use clrk_dispatch::trace::ExecutionTrace;
use clrk_dispatch::{Dispatcher, ExecEvent, Invocation, STOP_GRACE};
use clrk_store::{ScheduleTimes, Store, StoreError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use plan::{Entry, Plan, Step, Wanted, plan};

/// The trigger (and envelope `subject`) of every cron-fired execution.
pub const CRON_TRIGGER: &str = "cron";
/// How long a `Replace` tick waits for the stopped run to be gone.
const REPLACE_WAIT: Duration = Duration::from_secs(15);
/// The leadership cron fires under.
pub const CRON_LEADERSHIP: &str = "clrk-cron";
/// How often a server that does not lead cron tries to; a dead leader's lock is released
/// when its connection drops, so a follower fires within this of that.
pub const LEAD_RETRY: Duration = Duration::from_secs(2);

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
    /// How often the table is read again without a trigger: applies through another server
    /// reach the leader only through the store.
    resync: Duration,
}

impl Cron {
    /// Starts the scheduler loop of `clrk dev`, which leads at once (SQLite) and learns of
    /// applies from its own API.
    pub fn start(store: Store, dispatcher: Dispatcher) -> Cron {
        Cron::start_with(store, dispatcher, plan::RESYNC)
    }

    /// Starts the scheduler loop of a `clrk server`: it fires while this process leads
    /// [`CRON_LEADERSHIP`], and reads the schedules every [`LEAD_RETRY`], since applies may
    /// come through another server.
    pub fn start_in_cluster(store: Store, dispatcher: Dispatcher) -> Cron {
        Cron::start_with(store, dispatcher, LEAD_RETRY)
    }

    fn start_with(store: Store, dispatcher: Dispatcher, resync: Duration) -> Cron {
        let cron = Cron {
            inner: Arc::new(Inner {
                store,
                dispatcher,
                wake: Notify::new(),
                shutdown: CancellationToken::new(),
                resync,
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
        let store = self.inner.store.clone();
        let stop = self.inner.shutdown.clone();
        crate::leadership::while_leading(&store, CRON_LEADERSHIP, LEAD_RETRY, &stop, |leading| {
            self.lead(leading)
        })
        .await;
    }

    /// Fires until `leading` is cancelled. The table starts empty: every schedule counts from
    /// now, so a new leader neither replays missed ticks nor fires one the old leader did.
    async fn lead(&self, leading: CancellationToken) {
        let mut table: HashMap<ObjectKey, Entry> = HashMap::new();
        loop {
            let desired = match self.desired().await {
                Ok(desired) => Some(desired),
                Err(error) => {
                    tracing::error!(%error, "cron reconcile failed; retrying");
                    None
                }
            };
            let dispatcher = &self.inner.dispatcher;
            // Ticks are kept to the millisecond, as the store keeps them, so every server
            // computes the same ticks from a stored time.
            let now = Utc::now().trunc_subsecs(3);
            let plan = plan(
                &table,
                desired.as_ref(),
                |key| dispatcher.active(&key.namespace, &key.name),
                now,
            );
            let sleep = plan.sleep;
            self.carry_out(&mut table, plan).await;
            // A schedule set in this pass may continue its series sooner than planned.
            let soonest = table
                .values()
                .filter_map(|entry| entry.times.next_schedule_time)
                .min()
                .map_or(sleep, |next| {
                    (next - Utc::now()).to_std().unwrap_or_default()
                });
            let sleep = sleep.min(soonest).min(self.inner.resync);
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = self.inner.wake.notified() => {}
                () = leading.cancelled() => return,
            }
        }
    }

    /// The stored TaskAgents that have a schedule.
    async fn desired(&self) -> Result<HashMap<ObjectKey, Wanted>, StoreError> {
        let mut desired = HashMap::new();
        for agent in self.inner.store.list_agents(None).await? {
            if agent.kind != "TaskAgent" {
                continue;
            }
            let Ok(Resource::TaskAgent(task)) = Resource::from_stored(&agent.spec) else {
                continue;
            };
            let Some(expression) = task.spec.schedule else {
                continue;
            };
            let wanted = Wanted {
                expression,
                time_zone: task.spec.time_zone,
                policy: task.spec.concurrency_policy,
                input: task.spec.schedule_input,
            };
            desired.insert(ObjectKey::new(agent.namespace, agent.name), wanted);
        }
        Ok(desired)
    }

    /// Does what `plan` decided: keeps the table, records the times and starts the fires.
    async fn carry_out(&self, table: &mut HashMap<ObjectKey, Entry>, plan: Plan) {
        for step in plan.steps {
            match step {
                Step::Remove(key) => {
                    tracing::info!(namespace = %key.namespace, agent = %key.name, "schedule removed");
                    if let Some(entry) = table.remove(&key) {
                        let times = ScheduleTimes {
                            next_schedule_time: None,
                            ..entry.times
                        };
                        self.save(&key, &times).await;
                    }
                }
                Step::Set(key, mut entry) => {
                    match self
                        .inner
                        .store
                        .schedule_times(&key.namespace, &key.name)
                        .await
                    {
                        Ok(stored) => {
                            entry.times.last_schedule_time = stored.last_schedule_time;
                            // An `@every` schedule continues the series of its last fire
                            // while that series' next tick is ahead: a server taking cron
                            // over then fires the ticks the old leader would have, which
                            // the claims keep from firing twice. (For a clock-aligned
                            // expression this is the next tick after now anyway.)
                            if let Some(next) = stored
                                .last_schedule_time
                                .and_then(|last| entry.schedule.next_after(last))
                                .filter(|next| *next > Utc::now())
                            {
                                entry.times.next_schedule_time = Some(next);
                            }
                        }
                        Err(error) => {
                            // Not in the table: the next pass sets it again.
                            tracing::error!(%error, "cron reconcile failed; retrying");
                            continue;
                        }
                    }
                    self.save(&key, &entry.times).await;
                    tracing::info!(namespace = %key.namespace, agent = %key.name, schedule = %entry.expression,
                        time_zone = %entry.time_zone, next = ?entry.times.next_schedule_time, "schedule set");
                    table.insert(key, entry);
                }
                Step::Update { key, policy, input } => {
                    if let Some(entry) = table.get_mut(&key) {
                        entry.policy = policy;
                        entry.input = input;
                    }
                }
                Step::Unusable { key, error } => {
                    tracing::error!(%error, namespace = %key.namespace, agent = %key.name, "unusable schedule");
                }
                Step::Skip {
                    key,
                    tick,
                    next,
                    active,
                } => {
                    let Some(entry) = table.get_mut(&key) else {
                        continue;
                    };
                    entry.times.next_schedule_time = next;
                    tracing::info!(namespace = %key.namespace, agent = %key.name, %tick, active,
                        "cron tick skipped: concurrencyPolicy Forbid and a run is in flight");
                    self.save(&key, &entry.times).await;
                }
                Step::Fire { key, tick, next } => {
                    let Some(entry) = table.get_mut(&key) else {
                        continue;
                    };
                    entry.times.next_schedule_time = next;
                    if !self.claim(&key, tick).await {
                        continue;
                    }
                    entry.times.last_schedule_time = Some(tick);
                    self.save(&key, &entry.times).await;
                    tokio::spawn(fire(
                        self.inner.dispatcher.clone(),
                        key,
                        entry.policy,
                        entry.input.clone(),
                        tick,
                    ));
                }
            }
        }
    }

    /// Whether this process fires `tick`: it claimed it first. A tick it cannot claim (the
    /// store fails) is not fired, since another server may have fired it.
    async fn claim(&self, key: &ObjectKey, tick: DateTime<Utc>) -> bool {
        match self
            .inner
            .store
            .claim_cron_tick(&key.namespace, &key.name, tick)
            .await
        {
            Ok(true) => true,
            Ok(false) => {
                tracing::info!(namespace = %key.namespace, agent = %key.name, %tick,
                    "cron tick already fired by another server");
                false
            }
            Err(StoreError::AgentNotFound { .. }) => false,
            Err(error) => {
                tracing::error!(%error, namespace = %key.namespace, agent = %key.name, %tick,
                    "could not claim a cron tick; it is not fired");
                false
            }
        }
    }

    async fn save(&self, key: &ObjectKey, times: &ScheduleTimes) {
        match self
            .inner
            .store
            .set_schedule_times(&key.namespace, &key.name, times)
            .await
        {
            Ok(()) | Err(StoreError::AgentNotFound { .. }) => {}
            Err(error) => {
                tracing::error!(%error, namespace = %key.namespace, agent = %key.name, "could not record cron times");
            }
        }
    }
}

/// One tick: an execution through the dispatcher, its events read to the end and dropped
/// (cron has no caller; stdout is not kept, stderr is in the logs).
async fn fire(
    dispatcher: Dispatcher,
    ObjectKey { namespace, name }: ObjectKey,
    policy: ConcurrencyPolicy,
    input: serde_json::Value,
    tick: DateTime<Utc>,
) {
    if policy == ConcurrencyPolicy::Replace && dispatcher.active(&namespace, &name) > 0 {
        let stopped = dispatcher
            .stop_agent(
                &namespace,
                &name,
                "stopped: replaced by the next scheduled run (concurrencyPolicy: Replace)",
            )
            .await;
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
        trace: ExecutionTrace::begin(None),
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
            tracing::warn!(%error, %namespace, agent = %name, %tick, "cron tick could not start an execution");
        }
    }
}
