//! What one cron pass does, decided without touching anything: given the schedule table as
//! it is, the schedules the stored agents ask for, how many runs each agent has in flight
//! and the time, which schedules to drop, set or update, which ticks to fire or skip, and
//! how long to sleep.
//!
//! A schedule seen for the first time (or changed) counts from now: ticks before it, such
//! as those missed while clrk was down, are not replayed. A tick due while the loop was
//! behind fires once however many ticks it is behind, and the next tick is then one after
//! now, so nothing fires twice.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clrk_api::{ConcurrencyPolicy, ObjectKey, Schedule};
use clrk_store::ScheduleTimes;

/// The table is reconciled at least this often, even without a trigger.
pub(crate) const RESYNC: Duration = Duration::from_secs(30);

/// One scheduled agent as the table holds it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) expression: String,
    pub(crate) time_zone: String,
    pub(crate) schedule: Schedule,
    pub(crate) policy: ConcurrencyPolicy,
    pub(crate) input: serde_json::Value,
    pub(crate) times: ScheduleTimes,
}

/// One agent's schedule as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Wanted {
    pub(crate) expression: String,
    pub(crate) time_zone: String,
    pub(crate) policy: ConcurrencyPolicy,
    pub(crate) input: serde_json::Value,
}

/// One thing a pass does.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// The agent no longer has a schedule: it leaves the table and its next time is cleared.
    Remove(ObjectKey),
    /// A new or changed schedule, counting from now. Its last tick is the stored one.
    Set(ObjectKey, Entry),
    /// The same schedule with another policy or input.
    Update {
        key: ObjectKey,
        policy: ConcurrencyPolicy,
        input: serde_json::Value,
    },
    /// A stored schedule that does not parse (validation refuses these at apply; a stored one
    /// means an older clrk).
    Unusable { key: ObjectKey, error: String },
    /// A due tick starts an execution; `next` is the tick after it.
    Fire {
        key: ObjectKey,
        tick: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    },
    /// A due tick is skipped (`concurrencyPolicy: Forbid` with `active` runs in flight).
    Skip {
        key: ObjectKey,
        tick: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
        active: u32,
    },
}

/// What a pass does, and how long the loop then sleeps at most.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) steps: Vec<Step>,
    pub(crate) sleep: Duration,
}

/// Decides one pass. `desired` is `None` when the stored agents could not be read: the table
/// stays as it is and its due ticks still fire. `active` tells how many runs of an agent are
/// in flight; it is asked only about due ticks under `Forbid`.
pub(crate) fn plan(
    table: &HashMap<ObjectKey, Entry>,
    desired: Option<&HashMap<ObjectKey, Wanted>>,
    active: impl Fn(&ObjectKey) -> u32,
    now: DateTime<Utc>,
) -> Plan {
    let mut steps = Vec::new();
    let mut nexts = Vec::new();
    let mut keys: Vec<&ObjectKey> = table.keys().collect();
    if let Some(desired) = desired {
        keys.extend(desired.keys().filter(|k| !table.contains_key(*k)));
    }
    keys.sort();
    for key in keys {
        let entry = table.get(key);
        let wanted = match desired {
            Some(desired) => desired.get(key),
            None => None,
        };
        let policy = match (entry, wanted, desired) {
            (Some(_), None, Some(_)) => {
                steps.push(Step::Remove(key.clone()));
                continue;
            }
            (Some(entry), Some(wanted), _)
                if entry.expression == wanted.expression && entry.time_zone == wanted.time_zone =>
            {
                if entry.policy != wanted.policy || entry.input != wanted.input {
                    steps.push(Step::Update {
                        key: key.clone(),
                        policy: wanted.policy,
                        input: wanted.input.clone(),
                    });
                }
                wanted.policy
            }
            (Some(entry), None, None) => entry.policy,
            (_, Some(wanted), _) => {
                match Schedule::parse(&wanted.expression, &wanted.time_zone) {
                    Ok(schedule) => {
                        let next = schedule.next_after(now);
                        nexts.extend(next);
                        steps.push(Step::Set(
                            key.clone(),
                            Entry {
                                expression: wanted.expression.clone(),
                                time_zone: wanted.time_zone.clone(),
                                schedule,
                                policy: wanted.policy,
                                input: wanted.input.clone(),
                                times: ScheduleTimes {
                                    last_schedule_time: None,
                                    next_schedule_time: next,
                                },
                            },
                        ));
                    }
                    Err(error) => steps.push(Step::Unusable {
                        key: key.clone(),
                        error: error.to_string(),
                    }),
                }
                continue;
            }
            (None, None, _) => continue,
        };
        let entry = entry.expect("only table entries are left");
        let Some(tick) = entry.times.next_schedule_time.filter(|t| *t <= now) else {
            nexts.extend(entry.times.next_schedule_time);
            continue;
        };
        let next = entry
            .schedule
            .next_after(tick)
            .filter(|next| *next > now)
            .or_else(|| entry.schedule.next_after(now));
        nexts.extend(next);
        let key = key.clone();
        if policy == ConcurrencyPolicy::Forbid {
            let active = active(&key);
            if active > 0 {
                steps.push(Step::Skip {
                    key,
                    tick,
                    next,
                    active,
                });
                continue;
            }
        }
        steps.push(Step::Fire { key, tick, next });
    }
    let sleep = nexts
        .into_iter()
        .min()
        .map_or(RESYNC, |next| {
            (next - now).to_std().unwrap_or(Duration::ZERO)
        })
        .min(RESYNC);
    Plan { steps, sleep }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("default", name)
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("a time")
    }

    fn wanted(expression: &str, policy: ConcurrencyPolicy) -> Wanted {
        Wanted {
            expression: expression.to_string(),
            time_zone: "UTC".to_string(),
            policy,
            input: json!({"n": 1}),
        }
    }

    /// The entry a pass at `set_at` would have put in the table for `wanted`.
    fn entry(wanted: &Wanted, set_at: DateTime<Utc>) -> Entry {
        let schedule = Schedule::parse(&wanted.expression, &wanted.time_zone).unwrap();
        Entry {
            expression: wanted.expression.clone(),
            time_zone: wanted.time_zone.clone(),
            policy: wanted.policy,
            input: wanted.input.clone(),
            times: ScheduleTimes {
                last_schedule_time: None,
                next_schedule_time: schedule.next_after(set_at),
            },
            schedule,
        }
    }

    fn nobody(_: &ObjectKey) -> u32 {
        0
    }

    /// The table after a pass, as the loop leaves it.
    fn carry_out(table: &mut HashMap<ObjectKey, Entry>, plan: &Plan) {
        for step in &plan.steps {
            match step {
                Step::Remove(key) => {
                    table.remove(key);
                }
                Step::Set(key, entry) => {
                    table.insert(key.clone(), entry.clone());
                }
                Step::Update { key, policy, input } => {
                    let entry = table.get_mut(key).unwrap();
                    entry.policy = *policy;
                    entry.input = input.clone();
                }
                Step::Unusable { .. } => {}
                Step::Fire { key, tick, next } => {
                    let entry = table.get_mut(key).unwrap();
                    entry.times.next_schedule_time = *next;
                    entry.times.last_schedule_time = Some(*tick);
                }
                Step::Skip { key, next, .. } => {
                    table.get_mut(key).unwrap().times.next_schedule_time = *next;
                }
            }
        }
    }

    fn fired(plan: &Plan) -> Vec<(ObjectKey, DateTime<Utc>)> {
        plan.steps
            .iter()
            .filter_map(|s| match s {
                Step::Fire { key, tick, .. } => Some((key.clone(), *tick)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_new_schedule_counts_from_now_and_missed_ticks_are_not_replayed() {
        let now = at("2026-01-01T10:20:30Z");
        let desired = HashMap::from([(key("a"), wanted("* * * * *", ConcurrencyPolicy::Allow))]);
        let plan = plan(&HashMap::new(), Some(&desired), nobody, now);
        assert!(fired(&plan).is_empty());
        let [Step::Set(k, entry)] = plan.steps.as_slice() else {
            panic!("expected one Set, got {:?}", plan.steps);
        };
        assert_eq!(k, &key("a"));
        assert_eq!(
            entry.times.next_schedule_time,
            Some(at("2026-01-01T10:21:00Z"))
        );
        assert_eq!(plan.sleep, Duration::from_secs(30));
    }

    #[test]
    fn a_due_tick_fires_once_and_not_again_in_the_next_pass() {
        let want = wanted("* * * * *", ConcurrencyPolicy::Allow);
        let desired = HashMap::from([(key("a"), want.clone())]);
        let mut table = HashMap::from([(key("a"), entry(&want, at("2026-01-01T10:20:30Z")))]);

        let before = plan(&table, Some(&desired), nobody, at("2026-01-01T10:20:59Z"));
        assert!(fired(&before).is_empty());
        assert_eq!(before.sleep, Duration::from_secs(1));

        let now = at("2026-01-01T10:21:00.200Z");
        let first = plan(&table, Some(&desired), nobody, now);
        assert_eq!(fired(&first), [(key("a"), at("2026-01-01T10:21:00Z"))]);
        carry_out(&mut table, &first);
        assert_eq!(
            table[&key("a")].times.last_schedule_time,
            Some(at("2026-01-01T10:21:00Z"))
        );

        let again = plan(&table, Some(&desired), nobody, now);
        assert!(fired(&again).is_empty(), "fired twice: {:?}", again.steps);
        // The next tick is 59.8 s away: the loop wakes sooner to resync with the store.
        assert_eq!(again.sleep, RESYNC);
    }

    #[test]
    fn ticks_missed_while_behind_fire_once_and_the_next_is_after_now() {
        let want = wanted("* * * * *", ConcurrencyPolicy::Allow);
        let desired = HashMap::from([(key("a"), want.clone())]);
        let table = HashMap::from([(key("a"), entry(&want, at("2026-01-01T10:20:30Z")))]);
        let late = at("2026-01-01T10:25:10Z");
        let plan = plan(&table, Some(&desired), nobody, late);
        let fires: Vec<_> = plan
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Fire { tick, next, .. } => Some((*tick, *next)),
                _ => None,
            })
            .collect();
        assert_eq!(
            fires,
            [(at("2026-01-01T10:21:00Z"), Some(at("2026-01-01T10:26:00Z")))]
        );
    }

    #[test]
    fn forbid_skips_a_tick_while_a_run_is_in_flight_and_allow_does_not() {
        let now = at("2026-01-01T10:21:01Z");
        let busy = |_: &ObjectKey| 1;
        for (policy, fires) in [
            (ConcurrencyPolicy::Forbid, false),
            (ConcurrencyPolicy::Allow, true),
            (ConcurrencyPolicy::Replace, true),
        ] {
            let want = wanted("* * * * *", policy);
            let desired = HashMap::from([(key("a"), want.clone())]);
            let mut table = HashMap::from([(key("a"), entry(&want, at("2026-01-01T10:20:30Z")))]);
            let plan = plan(&table, Some(&desired), busy, now);
            assert_eq!(!fired(&plan).is_empty(), fires, "{policy:?}");
            carry_out(&mut table, &plan);
            assert_eq!(
                table[&key("a")].times.next_schedule_time,
                Some(at("2026-01-01T10:22:00Z")),
                "{policy:?}: a skipped tick moves on too"
            );
        }
    }

    #[test]
    fn a_changed_schedule_restarts_from_now_and_its_old_due_tick_does_not_fire() {
        let old = wanted("* * * * *", ConcurrencyPolicy::Allow);
        let table = HashMap::from([(key("a"), entry(&old, at("2026-01-01T10:20:30Z")))]);
        let new = wanted("@hourly", ConcurrencyPolicy::Allow);
        let desired = HashMap::from([(key("a"), new)]);
        let plan = plan(&table, Some(&desired), nobody, at("2026-01-01T10:21:05Z"));
        assert!(fired(&plan).is_empty());
        let [Step::Set(_, entry)] = plan.steps.as_slice() else {
            panic!("expected one Set, got {:?}", plan.steps);
        };
        assert_eq!(entry.expression, "@hourly");
        assert_eq!(
            entry.times.next_schedule_time,
            Some(at("2026-01-01T11:00:00Z"))
        );
    }

    #[test]
    fn a_policy_or_input_change_keeps_the_schedule_and_applies_to_the_due_tick() {
        let old = wanted("* * * * *", ConcurrencyPolicy::Allow);
        let table = HashMap::from([(key("a"), entry(&old, at("2026-01-01T10:20:30Z")))]);
        let mut new = wanted("* * * * *", ConcurrencyPolicy::Forbid);
        new.input = json!({"n": 2});
        let desired = HashMap::from([(key("a"), new)]);
        let plan = plan(
            &table,
            Some(&desired),
            |_: &ObjectKey| 1,
            at("2026-01-01T10:21:01Z"),
        );
        assert!(matches!(
            &plan.steps[0],
            Step::Update { policy: ConcurrencyPolicy::Forbid, input, .. } if input == &json!({"n": 2})
        ));
        assert!(matches!(&plan.steps[1], Step::Skip { active: 1, .. }));
        assert_eq!(plan.steps.len(), 2);
    }

    #[test]
    fn a_removed_schedule_leaves_the_table_but_an_unreadable_store_removes_nothing() {
        let want = wanted("* * * * *", ConcurrencyPolicy::Allow);
        let table = HashMap::from([(key("a"), entry(&want, at("2026-01-01T10:20:30Z")))]);
        let removed = plan(
            &table,
            Some(&HashMap::new()),
            nobody,
            at("2026-01-01T10:21:01Z"),
        );
        assert!(matches!(removed.steps.as_slice(), [Step::Remove(k)] if k == &key("a")));
        assert_eq!(removed.sleep, RESYNC);

        let unread = plan(&table, None, nobody, at("2026-01-01T10:21:01Z"));
        assert_eq!(fired(&unread), [(key("a"), at("2026-01-01T10:21:00Z"))]);
    }

    #[test]
    fn an_unusable_stored_schedule_is_reported_and_not_scheduled() {
        let desired = HashMap::from([(key("a"), wanted("* * *", ConcurrencyPolicy::Allow))]);
        let plan = plan(
            &HashMap::new(),
            Some(&desired),
            nobody,
            at("2026-01-01T10:21:01Z"),
        );
        assert!(matches!(plan.steps.as_slice(), [Step::Unusable { .. }]));
    }
}
