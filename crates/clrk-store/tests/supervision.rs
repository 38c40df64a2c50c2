//! Cron times, claims of cron ticks and daemon state: persisted per agent, gone with the agent.

mod common;

use chrono::{DateTime, Utc};
use clrk_store::{DaemonPhase, DaemonState, ScheduleTimes};
use common::*;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

store_tests! {
    async fn schedule_times_round_trip_survive_reopen_and_go_with_the_agent(backend) {
        let store = backend.open().await;
        store.apply_agent(&echo_agent("nightly")).await.unwrap();
        assert_eq!(
            store.schedule_times("default", "nightly").await.unwrap(),
            ScheduleTimes::default()
        );
        let first = ScheduleTimes {
            last_schedule_time: None,
            next_schedule_time: Some(at("2026-01-01T00:00:00Z")),
        };
        store
            .set_schedule_times("default", "nightly", &first).await
            .unwrap();
        let second = ScheduleTimes {
            last_schedule_time: Some(at("2026-01-01T00:00:00Z")),
            next_schedule_time: Some(at("2026-01-02T00:00:00.250Z")),
        };
        store
            .set_schedule_times("default", "nightly", &second).await
            .unwrap();
        drop(store);

        let store = backend.open().await;
        assert_eq!(store.schedule_times("default", "nightly").await.unwrap(), second);
        store.delete_agent("default", "nightly").await.unwrap();
        store.apply_agent(&echo_agent("nightly")).await.unwrap();
        assert_eq!(
            store.schedule_times("default", "nightly").await.unwrap(),
            ScheduleTimes::default(),
            "a re-created agent starts without cron times"
        );
    }

    async fn daemon_state_is_replaced_and_deleted_with_the_agent(backend) {
        let store = backend.open().await;
        store.apply_agent(&echo_agent("bot")).await.unwrap();
        assert_eq!(store.daemon_state("default", "bot").await.unwrap(), None);
        let running = DaemonState {
            revision: "bot-00001".into(),
            phase: DaemonPhase::Running,
            restart_count: 0,
            up_since: Some(at("2026-01-01T10:00:00Z")),
            run_id: Some("run-1".into()),
            last_exit_code: None,
            reason: None,
            restart_delay_ms: None,
            next_restart_at: None,
        };
        store.set_daemon_state("default", "bot", &running).await.unwrap();
        assert_eq!(
            store.daemon_state("default", "bot").await.unwrap(),
            Some(running.clone())
        );
        let backing_off = DaemonState {
            phase: DaemonPhase::CrashLoopBackOff,
            restart_count: 3,
            up_since: None,
            last_exit_code: Some(1),
            reason: Some("exited with code 1".into()),
            restart_delay_ms: Some(8000),
            next_restart_at: Some(at("2026-01-01T10:00:09Z")),
            ..running
        };
        store
            .set_daemon_state("default", "bot", &backing_off).await
            .unwrap();
        assert_eq!(
            store.daemon_state("default", "bot").await.unwrap(),
            Some(backing_off.clone())
        );
        store.delete_agent("default", "bot").await.unwrap();
        assert_eq!(store.daemon_state("default", "bot").await.unwrap(), None);
        assert!(
            store
                .set_daemon_state("default", "bot", &backing_off).await
                .is_err(),
            "no state for an agent that does not exist"
        );
    }

    async fn a_cron_tick_is_claimed_once_and_old_claims_are_trimmed(backend) {
        let store = backend.open().await;
        store.apply_agent(&echo_agent("nightly")).await.unwrap();
        store.apply_agent(&echo_agent("hourly")).await.unwrap();
        let tick = at("2026-01-02T10:00:00Z");
        assert!(store.claim_cron_tick("default", "nightly", tick).await.unwrap(), "the first claim fires");
        assert!(!store.claim_cron_tick("default", "nightly", tick).await.unwrap(), "a second claim does not");
        let other = backend.open().await;
        assert!(
            !other.claim_cron_tick("default", "nightly", tick).await.unwrap(),
            "nor does another process's"
        );
        assert!(
            store.claim_cron_tick("default", "hourly", tick).await.unwrap(),
            "another agent's tick is its own"
        );
        assert!(
            store.claim_cron_tick("default", "nightly", at("2026-01-02T10:01:00Z")).await.unwrap(),
            "the next tick is free"
        );
        assert_eq!(backend.count_rows("cron_fires").await, 3);

        // A day and more after the first tick, claiming drops the agent's claims older than a day.
        let later = tick + clrk_store::CRON_CLAIMS_KEPT + chrono::Duration::seconds(30);
        assert!(store.claim_cron_tick("default", "nightly", later).await.unwrap());
        assert_eq!(
            backend.count_rows("cron_fires").await,
            3,
            "nightly's first claim went, its second stays (within a day), hourly's is not its to trim"
        );

        store.delete_agent("default", "nightly").await.unwrap();
        assert_eq!(backend.count_rows("cron_fires").await, 1, "claims go with their agent");
        assert!(store.claim_cron_tick("default", "nightly", tick).await.is_err());
    }

    async fn claims_of_one_tick_racing_from_many_handles_fire_it_once(backend) {
        let store = backend.open().await;
        store.apply_agent(&echo_agent("nightly")).await.unwrap();
        let tick = at("2026-01-02T10:00:00Z");
        let mut claims = Vec::new();
        for _ in 0..8 {
            let store = backend.open().await;
            claims.push(tokio::spawn(async move {
                store.claim_cron_tick("default", "nightly", tick).await.unwrap()
            }));
        }
        let mut won = 0;
        for claim in claims {
            won += usize::from(claim.await.unwrap());
        }
        assert_eq!(won, 1);
    }
}
