//! Parsing real manifest text as a user writes it, through the public API only.

use std::time::Duration;

use clrk_api::{
    ConcurrencyPolicy, DeliveryMode, Document, Kind, ManifestError, Resource, RestartPolicy,
    RuntimeName, parse_manifests, parse_value,
};
use serde_json::json;

const WORD_COUNT: &str = include_str!("fixtures/word-count.yaml");

fn one(source: &str, text: &str) -> Document {
    let mut docs = parse_manifests(source, text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(docs.len(), 1);
    docs.remove(0)
}

fn error(source: &str, text: &str) -> String {
    parse_manifests(source, text).unwrap_err().to_string()
}

fn task_agent(body: &str) -> String {
    format!("apiVersion: clrk.apoxy.dev/v1alpha1\nkind: TaskAgent\n{body}")
}

const MINIMAL_SPEC: &str = "spec:\n  template:\n    spec:\n      image: wc:1\n";

#[test]
fn guide_word_count_parses_with_spec_defaults() {
    let doc = one("taskagent.yaml", WORD_COUNT);
    assert_eq!(doc.index, 1);
    assert!(doc.warnings.is_empty());
    let Resource::TaskAgent(agent) = &doc.resource else {
        panic!("expected a TaskAgent, got {:?}", doc.resource.kind());
    };
    assert_eq!(agent.metadata.name, "word-count");
    assert_eq!(agent.metadata.namespace, "default");
    let spec = &agent.spec;
    assert_eq!(spec.worker_pool_ref, "default");
    assert_eq!(spec.timeout.0, Duration::from_secs(60));
    assert_eq!(spec.template.spec.image, "<your-registry>/word-count:0.1");
    assert_eq!(spec.template.spec.command, None);
    assert_eq!(spec.template.spec.args, None);
    assert_eq!(spec.template.spec.working_dir, None);
    assert_eq!(spec.template.spec.env.len(), 1);
    assert_eq!(spec.template.spec.env[0].name, "GREETING");
    assert_eq!(spec.template.spec.env[0].value.as_deref(), Some("hi"));
    assert_eq!(spec.resources.cpu.millis(), 1000);
    assert_eq!(spec.resources.memory.bytes(), 512 << 20);
    assert_eq!(spec.max_concurrent, 0);
    assert_eq!(spec.warm_pool_size, 0);
    assert_eq!(spec.warm_pool_idle_ttl.0, Duration::from_secs(600));
    assert_eq!(spec.delivery.mode, DeliveryMode::Stdin);
    assert_eq!(spec.schedule, None);
    assert_eq!(spec.schedule_input, json!({}));
    assert_eq!(spec.time_zone, "UTC");
    assert_eq!(spec.concurrency_policy, ConcurrencyPolicy::Allow);
    assert!(spec.egress_refs.is_empty());
}

#[test]
fn timeout_defaults_to_100s() {
    let doc = one(
        "a.yaml",
        &task_agent(&format!("metadata: {{name: a}}\n{MINIMAL_SPEC}")),
    );
    let Resource::TaskAgent(agent) = doc.resource else {
        panic!("expected a TaskAgent");
    };
    assert_eq!(agent.spec.timeout.0, Duration::from_secs(100));
}

#[test]
fn log_limit_is_a_byte_quantity_left_out_by_default() {
    let text = task_agent(&format!("metadata: {{name: a}}\n{MINIMAL_SPEC}"));
    let Resource::TaskAgent(agent) = one("a.yaml", &text).resource else {
        panic!("expected a TaskAgent");
    };
    assert_eq!(agent.spec.log_limit, None);
    assert!(
        serde_json::to_value(&agent.spec)
            .unwrap()
            .get("logLimit")
            .is_none()
    );
    let text = task_agent(&format!(
        "metadata: {{name: a}}\n{MINIMAL_SPEC}  logLimit: 4Mi\n"
    ));
    let Resource::TaskAgent(agent) = one("a.yaml", &text).resource else {
        panic!("expected a TaskAgent");
    };
    assert_eq!(agent.spec.log_limit.unwrap().bytes(), 4 << 20);
    let daemon = format!(
        "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: DaemonAgent\nmetadata: {{name: d}}\n{MINIMAL_SPEC}  logLimit: 100Mi\n"
    );
    assert!(error("d.yaml", &daemon).contains("spec.logLimit: 100Mi is more than the 64Mi"));
}

#[test]
fn multi_document_yaml_keeps_order_and_skips_empty_documents() {
    let text = format!(
        "---\n{}---\n# nothing here\n---\n{}---\n{}",
        task_agent(&format!("metadata: {{name: first}}\n{MINIMAL_SPEC}")),
        "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: DaemonAgent\nmetadata:\n  name: watcher\n  \
         namespace: team-a\nspec:\n  restartPolicy: OnFailure\n  maxRestarts: 3\n  template:\n    \
         spec:\n      image: watcher:1\n      command: [python, /w.py]\n",
        "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: sandboxed}\n",
    );
    let docs = parse_manifests("all.yaml", &text).unwrap();
    let kinds: Vec<Kind> = docs.iter().map(|d| d.resource.kind()).collect();
    assert_eq!(
        kinds,
        [Kind::TaskAgent, Kind::DaemonAgent, Kind::WorkerPool]
    );
    assert_eq!(docs.iter().map(|d| d.index).collect::<Vec<_>>(), [1, 2, 3]);

    let Resource::DaemonAgent(daemon) = &docs[1].resource else {
        panic!("expected a DaemonAgent");
    };
    assert_eq!(daemon.metadata.namespace, "team-a");
    assert_eq!(daemon.spec.restart_policy, RestartPolicy::OnFailure);
    assert_eq!(daemon.spec.max_restarts, 3);
    assert_eq!(daemon.spec.max_lifetime_seconds, 0);
    assert_eq!(daemon.spec.worker_pool_ref, "default");
    assert_eq!(
        daemon.spec.template.spec.command.as_deref(),
        Some(&["python".to_owned(), "/w.py".to_owned()][..])
    );

    let Resource::WorkerPool(pool) = &docs[2].resource else {
        panic!("expected a WorkerPool");
    };
    assert_eq!(pool.spec.runtime, RuntimeName::Runsc);
    assert_eq!(pool.spec.replicas, 1);
    assert_eq!(pool.spec.max_executions_per_worker, 0);
}

#[test]
fn json_object_and_array() {
    let agent = json!({
        "apiVersion": "clrk.apoxy.dev/v1alpha1",
        "kind": "TaskAgent",
        "metadata": {"name": "jq-bot"},
        "spec": {"template": {"spec": {"image": "jq:1"}}, "delivery": {"mode": "Metadata"}},
    });
    let pool = json!({
        "apiVersion": "clrk.apoxy.dev/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": "plain"},
        "spec": {"runtime": "runc", "replicas": 3},
    });

    let doc = one("a.json", &serde_json::to_string_pretty(&agent).unwrap());
    let Resource::TaskAgent(parsed) = &doc.resource else {
        panic!("expected a TaskAgent");
    };
    assert_eq!(parsed.spec.delivery.mode, DeliveryMode::Metadata);

    let docs = parse_manifests("all.json", &json!([agent, pool]).to_string()).unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[1].index, 2);
    let Resource::WorkerPool(parsed) = &docs[1].resource else {
        panic!("expected a WorkerPool");
    };
    assert_eq!(parsed.spec.runtime, RuntimeName::Runc);
    assert_eq!(parsed.spec.replicas, 3);
}

#[test]
fn unknown_field_names_its_path_and_the_allowed_ones() {
    let text = WORD_COUNT.replace("image:", "imagee:");
    assert_eq!(
        error("taskagent.yaml", &text),
        "taskagent.yaml: document 1: spec.template.spec.imagee: unknown field \
         (expected one of: image, command, args, env, workingDir)"
    );
}

#[test]
fn unknown_field_at_top_level_and_deep_in_a_list() {
    let extra = format!("{WORD_COUNT}statuss: {{}}\n");
    assert_eq!(
        error("a.yaml", &extra),
        "a.yaml: document 1: statuss: unknown field \
         (expected one of: apiVersion, kind, metadata, spec, status)"
    );
    let env = WORD_COUNT.replace("value: \"hi\"", "valeu: \"hi\"");
    assert_eq!(
        error("a.yaml", &env),
        "a.yaml: document 1: spec.template.spec.env[0].valeu: unknown field \
         (expected one of: name, value, valueFrom)"
    );
}

#[test]
fn a_status_beside_the_spec_is_ignored_as_get_prints_it() {
    let plain = clrk_api::parse_manifests("a.yaml", WORD_COUNT).unwrap();
    let with_status = format!(
        "{WORD_COUNT}status:\n  latestRevision: word-count-00001\n  revisions: [{{name: x}}]\n"
    );
    let docs = clrk_api::parse_manifests("a.yaml", &with_status).unwrap();
    assert_eq!(docs[0].resource, plain[0].resource);
}

#[test]
fn a_list_document_stands_for_its_items() {
    let item = |name: &str| {
        format!(
            "  - apiVersion: clrk.apoxy.dev/v1alpha1\n    kind: WorkerPool\n    metadata: {{name: {name}}}\n"
        )
    };
    let text = format!(
        "apiVersion: v1\nkind: List\nitems:\n{}{}",
        item("a"),
        item("b")
    );
    let docs = clrk_api::parse_manifests("all.yaml", &text).unwrap();
    let names: Vec<&str> = docs
        .iter()
        .map(|d| d.resource.metadata().name.as_str())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(docs[1].index, 2);
}

#[test]
fn invalid_name_in_second_document() {
    let text = format!(
        "{WORD_COUNT}---\n{}",
        WORD_COUNT.replace("name: word-count", "name: Word_Count")
    );
    assert_eq!(
        error("taskagent.yaml", &text),
        "taskagent.yaml: document 2: metadata.name: \"Word_Count\" is not a valid name: use at \
         most 63 lowercase letters, digits or '-', starting and ending with a letter or digit"
    );
}

#[test]
fn negative_and_zero_durations() {
    let text = WORD_COUNT.replace("timeout: 60s", "timeout: -5s");
    assert_eq!(
        error("a.yaml", &text),
        "a.yaml: document 1: spec.timeout: \"-5s\" is not a valid duration: must be positive, \
         like 100s, 1m30s or 500ms"
    );
    let text = WORD_COUNT.replace("timeout: 60s", "timeout: 0s");
    assert_eq!(
        error("a.yaml", &text),
        "a.yaml: document 1: spec.timeout: \"0s\" is not a valid duration: must be positive, \
         like 100s, 1m30s or 500ms"
    );
    let text = WORD_COUNT.replace("timeout: 60s", "warmPoolIdleTTL: \"0\"");
    assert!(
        error("a.yaml", &text).starts_with("a.yaml: document 1: spec.warmPoolIdleTTL: "),
        "{}",
        error("a.yaml", &text)
    );
    let text = WORD_COUNT.replace("timeout: 60s", "timeout: 60");
    assert_eq!(
        error("a.yaml", &text),
        "a.yaml: document 1: spec.timeout: \"60\" is not a valid duration: add a unit, like \
         100s, 1m30s or 500ms"
    );
}

#[test]
fn missing_required_fields() {
    let text = WORD_COUNT.replace("image:", "# image:");
    assert_eq!(
        error("a.yaml", &text),
        "a.yaml: document 1: spec.template.spec.image: required field is missing"
    );
    assert_eq!(
        error("a.yaml", &task_agent("metadata: {name: a}\n")),
        "a.yaml: document 1: spec: required field is missing"
    );
    assert_eq!(
        error(
            "a.yaml",
            &task_agent(&format!("metadata: {{}}\n{MINIMAL_SPEC}"))
        ),
        "a.yaml: document 1: metadata.name: required field is missing"
    );
    let text = WORD_COUNT.replace("image: <your-registry>/word-count:0.1", "image: \"\"");
    assert!(
        error("a.yaml", &text)
            .starts_with("a.yaml: document 1: spec.template.spec.image: must not be empty")
    );
}

#[test]
fn unknown_kind_and_wrong_api_version() {
    let text = WORD_COUNT.replace("kind: TaskAgent", "kind: Foo");
    assert_eq!(
        error("a.yaml", &text),
        "a.yaml: document 1: kind: unknown kind \"Foo\" (expected TaskAgent, DaemonAgent, WorkerPool, EgressGateway, EgressL4Route, CredentialInjectionPolicy or AIProviderRoute)"
    );
    let text = WORD_COUNT.replace("clrk.apoxy.dev/v1alpha1", "v1");
    assert_eq!(
        error("a.yaml", &text),
        "a.yaml: document 1: apiVersion: \"v1\" is not supported (expected clrk.apoxy.dev/v1alpha1)"
    );
    let text = WORD_COUNT.replace("apiVersion: clrk.apoxy.dev/v1alpha1\n", "");
    assert_eq!(
        error("a.yaml", &text),
        "a.yaml: document 1: apiVersion: required field is missing"
    );
}

#[test]
fn malformed_yaml_and_json_report_the_location() {
    let err = error("a.yaml", "apiVersion: x\nkind: TaskAgent\nspec: {a: 1\n");
    assert!(
        err.starts_with("a.yaml: invalid YAML at line 3 column"),
        "{err}"
    );
    let err = parse_manifests("a.yaml", "a: 1\n  b: 2\n").unwrap_err();
    let ManifestError::Yaml {
        line,
        column,
        message,
        ..
    } = &err
    else {
        panic!("expected a YAML error, got {err}");
    };
    assert_eq!((*line, *column), (2, 4));
    assert!(
        !message.contains("line"),
        "location is not repeated: {message}"
    );

    let err = error("a.json", "{\n  \"kind\": \"TaskAgent\",\n  \"spec\": }\n");
    assert!(
        err.starts_with("a.json: invalid JSON at line 3 column 11: "),
        "{err}"
    );
}

#[test]
fn duplicate_keys_are_refused_in_plain_words() {
    let err = error("a.yaml", &format!("{WORD_COUNT}kind: DaemonAgent\n"));
    assert!(
        err.starts_with("a.yaml: invalid YAML at line 18 column 1: duplicate mapping key"),
        "{err}"
    );
    assert!(!err.contains("DuplicateKeyPolicy"), "{err}");
}

#[test]
fn enums_list_their_allowed_values() {
    let text = task_agent(&format!(
        "metadata: {{name: a}}\n{MINIMAL_SPEC}  delivery: {{mode: Http}}\n"
    ));
    assert_eq!(
        error("a.yaml", &text),
        "a.yaml: document 1: spec.delivery.mode: unknown value \"Http\" (expected one of: Stdin, Metadata)"
    );
    let text = task_agent(&format!(
        "metadata: {{name: a}}\n{MINIMAL_SPEC}  concurrencyPolicy: Skip\n"
    ));
    assert_eq!(
        error("a.yaml", &text),
        "a.yaml: document 1: spec.concurrencyPolicy: unknown value \"Skip\" (expected one of: Allow, Forbid, Replace)"
    );
    let text = "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: p}\nspec: {runtime: kata}\n";
    assert_eq!(
        error("p.yaml", text),
        "p.yaml: document 1: spec.runtime: unknown value \"kata\" (expected one of: runsc, runc)"
    );
}

#[test]
fn other_field_rules() {
    let cases = [
        (
            "  resources: {cpu: \"0\"}\n",
            "spec.resources.cpu: \"0\" is not a valid cpu quantity",
        ),
        (
            "  resources: {memory: 1GB}\n",
            "spec.resources.memory: \"1GB\" is not a valid memory quantity",
        ),
        ("  schedule: \"  \"\n", "spec.schedule: must not be empty"),
        (
            "  schedule: \"61 * * * *\"\n",
            "spec.schedule: \"61 * * * *\" is not valid",
        ),
        (
            "  schedule: \"@every 5m\"\n  timeZone: Mars/Olympus\n",
            "spec.timeZone: \"Mars/Olympus\" is not valid: not a known IANA time zone",
        ),
        (
            "  maxConcurrent: -1\n",
            "spec.maxConcurrent: invalid value: integer `-1`, expected a whole number",
        ),
        (
            "  egressRefs: [{gatewayRef: Bad}]\n",
            "spec.egressRefs[0].gatewayRef: \"Bad\" is not a valid name",
        ),
        (
            "  workerPoolRef: \"\"\n",
            "spec.workerPoolRef: \"\" is not a valid name",
        ),
        (
            "  logLimit: 1MB\n",
            "spec.logLimit: \"1MB\" is not a valid byte quantity: use bytes or a unit",
        ),
        (
            "  logLimit: 0\n",
            "spec.logLimit: \"0\" is not a valid byte quantity",
        ),
        (
            "  logLimit: 65Mi\n",
            "spec.logLimit: 65Mi is more than the 64Mi of logs an agent keeps in all",
        ),
    ];
    for (extra, expected) in cases {
        let text = task_agent(&format!("metadata: {{name: a}}\n{MINIMAL_SPEC}{extra}"));
        let err = error("a.yaml", &text);
        assert!(
            err.starts_with(&format!("a.yaml: document 1: {expected}")),
            "{extra}: {err}"
        );
    }
    let env = |entry: &str| WORD_COUNT.replace("- name: GREETING\n          value: \"hi\"", entry);
    assert!(
        error("a.yaml", &env("- name: \"\""))
            .starts_with("a.yaml: document 1: spec.template.spec.env[0].name: must be a non-empty")
    );
    assert!(error("a.yaml", &env("- name: X\n          value: true")).contains("spec.template.spec.env[0].value: invalid type: boolean `true`, expected a string (quote it in YAML)"));
}

#[test]
fn pool_pids_limit_defaults_to_512_and_must_be_positive() {
    let pool = |spec: &str| {
        format!(
            "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: WorkerPool\nmetadata: {{name: p}}\n{spec}"
        )
    };
    let Resource::WorkerPool(parsed) = one("p.yaml", &pool("")).resource else {
        panic!("expected a WorkerPool");
    };
    assert_eq!(parsed.spec.pids_limit, None);
    assert_eq!(parsed.spec.pids_limit(), 512);
    let Resource::WorkerPool(parsed) = one("p.yaml", &pool("spec: {pidsLimit: 64}\n")).resource
    else {
        panic!("expected a WorkerPool");
    };
    assert_eq!(parsed.spec.pids_limit(), 64);
    assert!(
        error("p.yaml", &pool("spec: {pidsLimit: 0}\n"))
            .starts_with("p.yaml: document 1: spec.pidsLimit: must be at least 1"),
        "{}",
        error("p.yaml", &pool("spec: {pidsLimit: 0}\n"))
    );
    assert!(error("p.yaml", &pool("spec: {pidsLimit: -3}\n")).contains("spec.pidsLimit"));
}

#[test]
fn secret_key_ref_is_accepted_with_a_warning() {
    let text = WORD_COUNT.replace(
        "value: \"hi\"",
        "valueFrom:\n            secretKeyRef: {name: openai, key: token}",
    );
    let doc = one("a.yaml", &text);
    assert_eq!(
        doc.warnings,
        [
            "spec.template.spec.env[0].valueFrom.secretKeyRef is ignored: clrk never puts secrets \
          in a sandbox; use a literal value, or credential injection on the egress side"
        ]
    );
    let text = WORD_COUNT.replace("value: \"hi\"", "valueFrom: {configMapKeyRef: {name: c}}");
    assert_eq!(
        error("a.yaml", &text),
        "a.yaml: document 1: spec.template.spec.env[0].valueFrom.configMapKeyRef: unknown field \
         (expected one of: secretKeyRef)"
    );
}

#[test]
fn empty_file_and_non_mapping_documents() {
    assert!(error("a.yaml", "# just a comment\n").starts_with("a.yaml: no manifests found"));
    assert!(error("a.json", "[]").starts_with("a.json: no manifests found"));
    assert_eq!(
        error("a.yaml", "- a\n- b\n"),
        "a.yaml: document 1: must be a mapping with apiVersion, kind, metadata and spec"
    );
}

fn shape_of(text: &str) -> serde_json::Value {
    one("a.yaml", text).resource.revision_shape().unwrap()
}

#[test]
fn revision_shape_ignores_what_does_not_shape_the_sandbox() {
    let base = shape_of(WORD_COUNT);
    let busier = WORD_COUNT.replace(
        "timeout: 60s",
        "timeout: 60s\n  maxConcurrent: 5\n  warmPoolSize: 2\n  schedule: \"@hourly\"",
    );
    assert_eq!(shape_of(&busier), base);
    let same_cpu = WORD_COUNT.replace("timeout: 60s", "resources: {cpu: 1000m, memory: 512Mi}");
    assert_eq!(shape_of(&same_cpu), base, "1 and 1000m are the same limit");
}

#[test]
fn revision_shape_changes_with_what_shapes_the_sandbox() {
    let base = shape_of(WORD_COUNT);
    let changes = [
        WORD_COUNT.replace("word-count:0.1", "word-count:0.2"),
        WORD_COUNT.replace("value: \"hi\"", "value: \"hello\""),
        WORD_COUNT.replace("timeout: 60s", "resources: {memory: 1Gi}"),
        WORD_COUNT.replace("timeout: 60s", "delivery: {mode: Metadata}"),
        WORD_COUNT.replace("timeout: 60s", "egressRefs: [{gatewayRef: openai}]"),
    ];
    for changed in changes {
        assert_ne!(shape_of(&changed), base, "{changed}");
    }
}

#[test]
fn daemon_restart_settings_do_not_shape_and_pools_have_no_shape() {
    let daemon = |extra: &str| {
        format!(
            "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: DaemonAgent\nmetadata: {{name: d}}\n\
             spec:\n  template: {{spec: {{image: d:1}}}}\n{extra}"
        )
    };
    assert_eq!(
        shape_of(&daemon("")),
        shape_of(&daemon(
            "  restartPolicy: Never\n  maxRestarts: 2\n  maxLifetimeSeconds: 60\n"
        ))
    );
    assert_ne!(
        shape_of(&daemon("")),
        shape_of(&daemon("  resources: {cpu: 2}\n"))
    );
    let pool = one(
        "p.yaml",
        "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: p}\n",
    );
    assert_eq!(pool.resource.revision_shape(), None);
}

#[test]
fn stored_form_round_trips_with_defaults_filled() {
    let text = WORD_COUNT.replace(
        "timeout: 60s",
        "timeout: 100s\n  resources: {cpu: 0.5}\n  schedule: \"*/5 * * * *\"\n  scheduleInput: {n: 1}\n  \
         egressRefs: [{gatewayRef: openai}]",
    );
    let doc = one("a.yaml", &text);
    let stored = doc.resource.to_stored();
    assert_eq!(stored["apiVersion"], "clrk.apoxy.dev/v1alpha1");
    assert_eq!(stored["kind"], "TaskAgent");
    assert_eq!(stored["metadata"]["namespace"], "default");
    assert_eq!(stored["spec"]["timeout"], "1m40s");
    assert_eq!(stored["spec"]["warmPoolIdleTTL"], "10m0s");
    assert_eq!(
        stored["spec"]["resources"],
        json!({"cpu": "0.5", "memory": "512Mi"})
    );
    assert_eq!(stored["spec"]["delivery"], json!({"mode": "Stdin"}));
    assert_eq!(
        stored["spec"]["egressRefs"],
        json!([{"gatewayRef": "openai"}])
    );
    assert_eq!(Resource::from_stored(&stored).unwrap(), doc.resource);

    let serialized = serde_json::to_string(&stored).unwrap();
    let again = parse_value("db", 1, &serde_json::from_str(&serialized).unwrap()).unwrap();
    assert_eq!(again.resource, doc.resource);
}

#[test]
fn every_kind_round_trips_through_storage() {
    let text = "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: DaemonAgent\nmetadata:\n  name: d\n  \
                labels: {team: a}\nspec:\n  restartPolicy: Never\n  template:\n    spec:\n      \
                image: d:1\n      workingDir: /app\n      args: [--loop]\n---\n\
                apiVersion: clrk.apoxy.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: p}\n\
                spec: {runtime: runc, maxExecutionsPerWorker: 10}\n";
    for doc in parse_manifests("b.yaml", text).unwrap() {
        let stored = doc.resource.to_stored();
        assert_eq!(Resource::from_stored(&stored).unwrap(), doc.resource);
    }
}

#[test]
fn sandbox_reuse_fills_its_defaults_and_names_what_it_needs() {
    let with = |extra: &str| task_agent(&format!("metadata: {{name: r}}\n{MINIMAL_SPEC}{extra}"));
    let doc = one("a.yaml", &with("  warmPoolSize: 2\n  sandboxReuse: {}\n"));
    let Resource::TaskAgent(agent) = &doc.resource else {
        panic!("expected a TaskAgent");
    };
    let reuse = agent.spec.sandbox_reuse.expect("set");
    assert_eq!(reuse.max_executions, 100);
    assert_eq!(reuse.max_age.to_string(), "10m0s");
    for (extra, field) in [
        (
            "  warmPoolSize: 2\n  sandboxReuse: {maxExecutions: 0}\n",
            "spec.sandboxReuse.maxExecutions: must be between 1",
        ),
        (
            "  warmPoolSize: 2\n  sandboxReuse: {maxAge: 0s}\n",
            "spec.sandboxReuse.maxAge: ",
        ),
        (
            "  sandboxReuse: {}\n",
            "spec.sandboxReuse: needs spec.warmPoolSize",
        ),
        (
            "  warmPoolSize: 2\n  delivery: {mode: Metadata}\n  sandboxReuse: {}\n",
            "spec.sandboxReuse: needs spec.delivery.mode Stdin",
        ),
        (
            "  warmPoolSize: 2\n  sandboxReuse: {maxExecutions: 5, every: 1}\n",
            "sandboxReuse",
        ),
    ] {
        let err = error("a.yaml", &with(extra));
        assert!(err.contains(field), "{extra}: {err}");
    }
}
