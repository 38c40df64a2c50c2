//! clrk on Kubernetes without a cluster (none can run here): every variant of `clrk install
//! --dry-run` and the kustomize base in deploy/kubernetes/ are validated against the
//! Kubernetes OpenAPI schemas (`kubernetes-validate`, installed by scripts/setup.sh), the
//! base is checked to be the default render, and the invariants a cluster would only show
//! at run time are checked on the parsed objects: pinned images, probes on the binary's real
//! routes and ports, Secrets that exist, a worker grace period covering its drain, selectors
//! that select. The kubectl calls of install and upgrade are checked for their order, and
//! the Dockerfile is linted with hadolint.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use clrk_server::cluster::health::{HEALTHZ, READYZ};
use clrk_server::cluster::worker::LONGEST_STOP;
use common::clrk_bin;
use serde_json::Value;

/// Every variant the issue names, as `clrk install` arguments.
const VARIANTS: [&[&str]; 8] = [
    &[],
    &["--namespace", "team-a"],
    &["--servers", "3"],
    &["--image", "registry.example.com/platform/clrk:1.2.3"],
    &["--database-secret", "pg-managed"],
    &["--demo-postgres"],
    &[
        "--pool",
        "default",
        "--pool",
        "gpu",
        "--worker-cache",
        "empty-dir",
    ],
    &["--metrics-port", "9464"],
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn clrk(args: &[&str]) -> Output {
    Command::new(clrk_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running clrk")
}

fn stdout_of(args: &[&str]) -> String {
    let output = clrk(args);
    assert!(
        output.status.success(),
        "clrk {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn render_yaml(variant: &[&str]) -> String {
    let mut args = vec!["install", "--dry-run", "-o", "yaml"];
    args.extend_from_slice(variant);
    stdout_of(&args)
}

/// The render as parsed objects (through `-o json`, a v1 List).
fn render(variant: &[&str]) -> Vec<Value> {
    let mut args = vec!["install", "--dry-run", "-o", "json"];
    args.extend_from_slice(variant);
    let list: Value = serde_json::from_str(&stdout_of(&args)).unwrap();
    assert_eq!(list["kind"], "List");
    list["items"].as_array().unwrap().clone()
}

/// A tool scripts/setup.sh installs; its absence is a failure saying so, not a skip.
fn tool(name: &str) -> Command {
    let found = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(found, "{name} is not installed: run scripts/setup.sh");
    Command::new(name)
}

/// Runs `kubernetes-validate --strict` on a YAML stream; panics with its report on failure.
fn validate(what: &str, yaml: &str) {
    let mut child = tool("kubernetes-validate")
        .args(["--strict", "--quiet", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{what} does not validate against the Kubernetes schemas:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap()
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap()
}

/// The pod template's spec of a workload, if the object is one.
fn pod_spec(object: &Value) -> Option<&Value> {
    matches!(kind(object), "Deployment" | "DaemonSet" | "StatefulSet")
        .then(|| &object["spec"]["template"]["spec"])
}

fn containers(pod: &Value) -> Vec<&Value> {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|key| pod[*key].as_array().into_iter().flatten())
        .collect()
}

/// Whether `selector` (matchLabels or a Service's map) selects pods labelled `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().unwrap();
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The pod templates' labels of every workload.
fn pod_labels(objects: &[Value]) -> Vec<(&Value, &Value)> {
    objects
        .iter()
        .filter(|o| pod_spec(o).is_some())
        .map(|o| (o, &o["spec"]["template"]["metadata"]["labels"]))
        .collect()
}

#[test]
fn every_install_variant_validates_against_the_kubernetes_schemas() {
    for variant in VARIANTS {
        validate(
            &format!("clrk install --dry-run -o yaml {variant:?}"),
            &render_yaml(variant),
        );
    }
}

#[test]
fn the_kustomize_base_is_the_default_render_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("base");
    stdout_of(&[
        "install",
        "--dry-run",
        "--write-base",
        out.to_str().unwrap(),
    ]);
    let committed = repo().join("deploy/kubernetes");
    let files = |dir: &Path| -> BTreeMap<String, String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .map(|path| {
                (
                    path.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read_to_string(&path).unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        files(&committed),
        files(&out),
        "deploy/kubernetes/ is not the default render: run \
         `clrk install --dry-run --write-base deploy/kubernetes` and commit the result"
    );
    let built = tool("kubectl")
        .args(["kustomize"])
        .arg(&committed)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "kubectl kustomize deploy/kubernetes: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let yaml = String::from_utf8(built.stdout).unwrap();
    validate("kubectl kustomize deploy/kubernetes", &yaml);
    // The same objects as `clrk install --dry-run`: kustomize only reorders them.
    let count =
        |text: &str| text.matches("\nkind: ").count() + usize::from(text.starts_with("kind: "));
    assert_eq!(count(&yaml), render(&[]).len(), "{yaml}");
}

#[test]
fn images_are_pinned_to_a_tag_or_digest_never_latest() {
    for variant in VARIANTS {
        for object in render(variant) {
            let Some(pod) = pod_spec(&object) else {
                continue;
            };
            for container in containers(pod) {
                let image = container["image"].as_str().unwrap();
                let last = image.rsplit('/').next().unwrap();
                let tagged = last.split_once(':').is_some_and(|(_, tag)| tag != "latest");
                assert!(
                    tagged || image.contains("@sha256:"),
                    "{} {} runs {image}: no tag, or latest",
                    kind(&object),
                    name(&object)
                );
            }
        }
    }
    let refused = clrk(&["install", "--dry-run", "--image", "clrk:latest"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("tag other than latest"));
    let objects = render(&["--image", "registry.example.com/platform/clrk:1.2.3"]);
    let images: BTreeSet<&str> = objects
        .iter()
        .filter_map(pod_spec)
        .flat_map(containers)
        .map(|c| c["image"].as_str().unwrap())
        .collect();
    assert_eq!(
        images,
        BTreeSet::from(["registry.example.com/platform/clrk:1.2.3"])
    );
}

/// The value after `flag` in a container's args.
fn arg_after<'a>(container: &'a Value, flag: &str) -> Option<&'a str> {
    let args = container["args"].as_array()?;
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1)?.as_str()
}

#[test]
fn probes_ask_the_binarys_health_routes_on_the_port_it_listens_on() {
    let objects = render(&["--demo-postgres"]);
    let mut checked = 0;
    for object in &objects {
        let Some(pod) = pod_spec(object) else {
            continue;
        };
        for container in containers(pod) {
            // The flag whose listener serves /healthz and /readyz (`clrk server --help`,
            // `clrk worker --help`).
            let listener = match arg_after(container, "--api") {
                Some(api) => api,
                None => match arg_after(container, "--health") {
                    Some(health) => health,
                    None => continue,
                },
            };
            let listen_port: u16 = listener.rsplit(':').next().unwrap().parse().unwrap();
            for (probe, route) in [("readinessProbe", READYZ), ("livenessProbe", HEALTHZ)] {
                let get = &container[probe]["httpGet"];
                assert_eq!(get["path"], route, "{} {probe}", name(object));
                let port_name = get["port"].as_str().unwrap();
                let port = container["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["name"] == port_name)
                    .unwrap_or_else(|| panic!("{} has no port {port_name}", name(object)));
                assert_eq!(port["containerPort"], listen_port, "{}", name(object));
                checked += 1;
            }
        }
    }
    // Servers and the default pool's workers: a readiness and a liveness probe each.
    assert_eq!(checked, 4);
}

/// The Secrets `--print-commands` says install makes when missing.
fn generated_secrets(variant: &[&str]) -> BTreeSet<String> {
    let mut args = vec!["install", "--print-commands"];
    args.extend_from_slice(variant);
    stdout_of(&args)
        .lines()
        .filter_map(|line| line.split("only when missing: Secret/").nth(1))
        .map(|rest| rest.split(',').next().unwrap().to_string())
        .collect()
}

/// Every Secret a pod reads, by volume or environment.
fn referenced_secrets(pod: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for volume in pod["volumes"].as_array().into_iter().flatten() {
        if let Some(name) = volume["secret"]["secretName"].as_str() {
            names.insert(name.to_string());
        }
    }
    for container in containers(pod) {
        for env in container["env"].as_array().into_iter().flatten() {
            if let Some(name) = env["valueFrom"]["secretKeyRef"]["name"].as_str() {
                names.insert(name.to_string());
            }
        }
    }
    names
}

#[test]
fn every_secret_referenced_is_rendered_generated_or_the_users_database_secret() {
    for (variant, user_provided) in [
        (&[][..], Some("clrk-database")),
        (&["--database-secret", "pg-managed"][..], Some("pg-managed")),
        (&["--demo-postgres"][..], None),
    ] {
        let objects = render(variant);
        let rendered: BTreeSet<String> = objects
            .iter()
            .filter(|o| kind(o) == "Secret")
            .map(|o| name(o).to_string())
            .collect();
        let generated = generated_secrets(variant);
        let referenced: BTreeSet<String> = objects
            .iter()
            .filter_map(pod_spec)
            .flat_map(referenced_secrets)
            .collect();
        for secret in &referenced {
            let provided = rendered.contains(secret)
                || generated.contains(secret)
                || user_provided == Some(secret.as_str());
            assert!(
                provided,
                "{variant:?}: Secret {secret} is referenced but never made"
            );
        }
        // The token and the cluster secret are generated; no value is ever printed.
        assert!(generated.contains("clrk-api-token") && generated.contains("clrk-cluster-secret"));
        assert!(
            rendered.is_empty(),
            "{variant:?} prints Secret values: {rendered:?}"
        );
        if let Some(user) = user_provided {
            assert!(
                referenced.contains(user) && !generated.contains(user),
                "{variant:?}"
            );
        }
    }
    let help = stdout_of(&["install", "--help"]);
    assert!(help.contains("--database-secret"), "{help}");
}

#[test]
fn a_stopping_worker_drains_within_its_grace_period() {
    for object in render(&["--pool", "default", "--pool", "gpu"]) {
        if kind(&object) != "DaemonSet" {
            continue;
        }
        let pod = pod_spec(&object).unwrap();
        let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(
            grace > LONGEST_STOP.as_secs(),
            "{}: grace period {grace}s does not cover the worker's longest stop ({}s)",
            name(&object),
            LONGEST_STOP.as_secs()
        );
        let worker = &pod["containers"][0];
        let pre_stop = worker["lifecycle"]["preStop"]["exec"]["command"].to_string();
        assert!(pre_stop.contains("clrk workers drain"), "{pre_stop}");
        assert_eq!(worker["securityContext"]["privileged"], true);
        assert_eq!(
            object["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
            1
        );
    }
}

#[test]
fn selectors_select_the_pods_and_services_reach_their_ports() {
    for variant in VARIANTS {
        let objects = render(variant);
        let pods = pod_labels(&objects);
        let namespace = objects
            .iter()
            .find(|o| kind(o) == "Namespace")
            .map(|o| name(o).to_string())
            .unwrap();
        for object in &objects {
            if kind(object) != "Namespace" {
                assert_eq!(object["metadata"]["namespace"], namespace.as_str());
            }
            match kind(object) {
                "Deployment" | "DaemonSet" | "StatefulSet" => {
                    let selector = &object["spec"]["selector"]["matchLabels"];
                    let own = &object["spec"]["template"]["metadata"]["labels"];
                    assert!(
                        selects(selector, own),
                        "{} does not select its pods",
                        name(object)
                    );
                    // No other workload's pods: two controllers would fight over them.
                    let others = pods
                        .iter()
                        .filter(|(o, labels)| name(o) != name(object) && selects(selector, labels))
                        .count();
                    assert_eq!(others, 0, "{} selects other pods", name(object));
                }
                "PodDisruptionBudget" => {
                    let selector = &object["spec"]["selector"]["matchLabels"];
                    assert!(
                        pods.iter().any(|(_, l)| selects(selector, l)),
                        "{}",
                        name(object)
                    );
                }
                "Service" => {
                    let selector = &object["spec"]["selector"];
                    let targets: Vec<&Value> = pods
                        .iter()
                        .filter(|(_, l)| selects(selector, l))
                        .map(|(o, _)| *o)
                        .collect();
                    assert!(
                        !targets.is_empty(),
                        "Service {} selects no pods",
                        name(object)
                    );
                    for port in object["spec"]["ports"].as_array().unwrap() {
                        let target = port["targetPort"].as_str().unwrap();
                        for workload in &targets {
                            let named = containers(pod_spec(workload).unwrap())
                                .iter()
                                .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                                .any(|p| p["name"] == target);
                            assert!(named, "Service {} targets no port {target}", name(object));
                        }
                    }
                }
                _ => {}
            }
        }
        if variant == ["--servers", "3"] {
            let deployment = objects.iter().find(|o| kind(o) == "Deployment").unwrap();
            assert_eq!(deployment["spec"]["replicas"], 3);
        }
    }
}

#[test]
fn servers_run_as_a_user_other_than_root() {
    let objects = render(&[]);
    let deployment = objects.iter().find(|o| kind(o) == "Deployment").unwrap();
    let server = &pod_spec(deployment).unwrap()["containers"][0];
    let context = &server["securityContext"];
    assert_eq!(context["runAsNonRoot"], true);
    assert_ne!(context["runAsUser"], 0);
    assert_eq!(context["allowPrivilegeEscalation"], false);
    assert_eq!(context["readOnlyRootFilesystem"], true);
    assert!(server["resources"]["requests"].is_object());
}

/// The lines of `--print-commands`, without what follows `#`.
fn commands(args: &[&str]) -> Vec<String> {
    stdout_of(args)
        .lines()
        .map(|line| line.split("   #").next().unwrap().trim().to_string())
        .collect()
}

#[test]
fn install_makes_the_namespace_then_missing_secrets_then_the_rest() {
    let lines = stdout_of(&["install", "--print-commands", "--namespace", "team-a"]);
    let lines: Vec<&str> = lines.lines().collect();
    assert!(
        lines[0].starts_with("kubectl apply --server-side"),
        "{lines:?}"
    );
    assert!(lines[0].ends_with("# Namespace/team-a"), "{lines:?}");
    assert_eq!(
        lines[1],
        "kubectl get secret clrk-api-token --namespace team-a --ignore-not-found -o name"
    );
    assert!(
        lines[2].starts_with("kubectl create --namespace team-a -f -"),
        "{lines:?}"
    );
    assert!(
        lines[3].contains("get secret clrk-cluster-secret"),
        "{lines:?}"
    );
    assert!(lines[4].contains("Secret/clrk-cluster-secret"), "{lines:?}");
    let last = lines.last().unwrap();
    assert!(last.starts_with("kubectl apply --server-side"), "{last}");
    assert!(
        last.contains("Deployment/clrk-server") && last.contains("DaemonSet/clrk-worker-default")
    );
    assert_eq!(lines.len(), 6, "{lines:?}");
}

#[test]
fn upgrade_replaces_workers_pool_by_pool_then_servers() {
    let lines = commands(&[
        "upgrade",
        "--image",
        "clrk:0.2.0",
        "--pool",
        "default",
        "--pool",
        "gpu",
        "--print-commands",
    ]);
    assert_eq!(
        lines,
        [
            "kubectl set image daemonset/clrk-worker-default worker=clrk:0.2.0 --namespace clrk",
            "kubectl rollout status daemonset/clrk-worker-default --namespace clrk --timeout 30m",
            "kubectl set image daemonset/clrk-worker-gpu worker=clrk:0.2.0 --namespace clrk",
            "kubectl rollout status daemonset/clrk-worker-gpu --namespace clrk --timeout 30m",
            "kubectl set image deployment/clrk-server server=clrk:0.2.0 secret-files=clrk:0.2.0 --namespace clrk",
            "kubectl rollout status deployment/clrk-server --namespace clrk --timeout 30m",
        ]
    );
    // The container names upgrade sets are the rendered ones.
    let objects = render(&["--pool", "default", "--pool", "gpu"]);
    for object in objects.iter().filter(|o| pod_spec(o).is_some()) {
        let names: BTreeSet<&str> = containers(pod_spec(object).unwrap())
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        let expected: BTreeSet<&str> = match kind(object) {
            "Deployment" => ["server", "secret-files"].into(),
            _ => ["worker"].into(),
        };
        assert_eq!(names, expected, "{}", name(object));
    }
}

#[test]
fn install_without_kubectl_says_how_to_get_it_or_use_dry_run() {
    let output = Command::new(clrk_bin())
        .args(["install"])
        .env("PATH", "/nonexistent")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("kubectl is not on the PATH"), "{error}");
    assert!(error.contains("--dry-run"), "{error}");
}

#[test]
fn the_dockerfile_passes_hadolint() {
    let output = tool("hadolint")
        .arg(repo().join("Dockerfile"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "hadolint Dockerfile:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let runtime = dockerfile
        .lines()
        .rfind(|l| l.starts_with("FROM "))
        .unwrap();
    assert_eq!(runtime, "FROM debian:bookworm-slim");
    for package in ["runsc", "runc", "iproute2", "nftables", "ca-certificates"] {
        assert!(dockerfile.contains(package), "the image lacks {package}");
    }
}

/// A rendered absolute path, moved under `root` (what the pod's volumes would hold).
fn under(root: &Path, text: &str) -> String {
    ["/run/clrk", "/var/lib/clrk", "/etc/clrk"]
        .iter()
        .fold(text.to_string(), |text, prefix| {
            text.replace(prefix, &format!("{}{prefix}", root.display()))
        })
}

/// A container's rendered args, with the kubelet's `$(VAR)` expansion and the volumes moved
/// under `root`.
fn pod_args(container: &Value, root: &Path, vars: &[(&str, String)]) -> Vec<String> {
    container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|arg| {
            let arg = vars
                .iter()
                .fold(arg.as_str().unwrap().to_string(), |arg, (k, v)| {
                    arg.replace(&format!("$({k})"), v)
                });
            under(root, &arg)
        })
        .collect()
}

/// The port number and path of a container's probe.
/// The port a scraper finds in the workload's pod annotations, checked to be a port the
/// container declares as `metrics`.
fn scraped(workload: &Value) -> u16 {
    let annotations = &workload["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true", "{annotations}");
    assert_eq!(
        annotations["prometheus.io/path"], "/metrics",
        "{annotations}"
    );
    let port: u16 = annotations["prometheus.io/port"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let container = &pod_spec(workload).unwrap()["containers"][0];
    assert!(
        container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "metrics" && p["containerPort"] == port),
        "{container}"
    );
    port
}

fn probe(container: &Value, which: &str) -> (u16, String) {
    let get = &container[which]["httpGet"];
    let port = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == get["port"])
        .unwrap()["containerPort"]
        .as_u64()
        .unwrap();
    (
        u16::try_from(port).unwrap(),
        get["path"].as_str().unwrap().to_string(),
    )
}

async fn wait_status(url: &str, want: u16, log: &Path) {
    let started = std::time::Instant::now();
    loop {
        let status = common::cluster::request_checked("GET", url.to_string()).await;
        if status == want {
            return;
        }
        assert!(
            started.elapsed() < common::DEADLINE,
            "{url} answered {status}, not {want}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The pods' own commands, run as the kubelet would run them but on hosts of this machine:
/// the server's init container makes the secret files, the server starts from its rendered
/// args as the non-root user its securityContext names and answers its probes; the worker
/// starts from its rendered args, answers its probes, its preStop hook drains it through
/// the server, and after SIGTERM it exits within its grace period.
#[tokio::test(flavor = "multi_thread")]
async fn the_rendered_pods_start_answer_their_probes_and_a_worker_drains_on_its_pre_stop() {
    use common::hosts::Hosts;
    let objects = render(&["--metrics-port", "9464"]);
    let deployment = objects.iter().find(|o| kind(o) == "Deployment").unwrap();
    let daemon_set = objects.iter().find(|o| kind(o) == "DaemonSet").unwrap();
    let server_pod = pod_spec(deployment).unwrap();
    let worker_pod = pod_spec(daemon_set).unwrap();

    let hosts = Hosts::create(3);
    let pg =
        clrk_store::testing::TempPostgres::start_on(hosts[0].addr(5432), Some(hosts[0].netns()));
    let database = pg.create_database().await.url().to_string();
    let root = tempfile::Builder::new()
        .prefix("clrk-k8s-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let root = root.path();
    // The pod's volumes: Secret files root's and 0400; emptyDirs open to the pod's user.
    let token = "a".repeat(64);
    for (dir, file, value) in [
        ("etc/clrk/token", "token", token.as_str()),
        ("etc/clrk/cluster-secret", "cluster-secret", &"b".repeat(64)),
    ] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
        std::fs::write(root.join(dir).join(file), value).unwrap();
        std::fs::set_permissions(
            root.join(dir).join(file),
            std::os::unix::fs::PermissionsExt::from_mode(0o400),
        )
        .unwrap();
    }
    for dir in ["", "run/clrk", "var/lib/clrk"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
        std::fs::set_permissions(
            root.join(dir),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
    }

    // The init container, its script as rendered, as root with only the capabilities its
    // securityContext adds; twice, as when the pod's sandbox is recreated.
    let init = &server_pod["initContainers"][0];
    assert_eq!(
        init["securityContext"]["capabilities"]["add"],
        serde_json::json!(["CHOWN"])
    );
    let script = under(root, init["command"][2].as_str().unwrap());
    for _ in 0..2 {
        let status = Command::new("setpriv")
            .args(["--bounding-set=-all,+chown", "/bin/sh", "-c", &script])
            .status()
            .unwrap();
        assert!(status.success(), "{script}");
    }

    // The server, as the securityContext's user.
    let server = &server_pod["containers"][0];
    let user = server["securityContext"]["runAsUser"].to_string();
    let server_log = root.join("server.log");
    let log = std::fs::File::create(&server_log).unwrap();
    let mut server_process = hosts[1]
        .command("setpriv")
        .args([
            format!("--reuid={user}"),
            format!("--regid={user}"),
            "--clear-groups".into(),
        ])
        .arg(clrk_bin())
        .args(pod_args(server, root, &[]))
        .env("CLRK_DATABASE", &database)
        .env("CLRK_DIR", under(root, "/var/lib/clrk"))
        .env("HOME", under(root, "/var/lib/clrk"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    for which in ["readinessProbe", "livenessProbe"] {
        let (port, path) = probe(server, which);
        wait_status(
            &format!("http://{}{path}", hosts[1].addr(port)),
            200,
            &server_log,
        )
        .await;
    }
    let metrics = scraped(deployment);
    wait_status(
        &format!("http://{}/metrics", hosts[1].addr(metrics)),
        200,
        &server_log,
    )
    .await;

    let status = std::fs::read_to_string(format!("/proc/{}/status", server_process.id())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid.split_whitespace().skip(1).all(|id| id == user), "{uid}");
    let copied = std::fs::metadata(root.join("run/clrk/token")).unwrap();
    assert_eq!(
        (
            std::os::unix::fs::MetadataExt::uid(&copied).to_string(),
            std::os::unix::fs::MetadataExt::mode(&copied) & 0o777
        ),
        (user.clone(), 0o400)
    );

    // The worker on its node, named after it.
    let worker = &worker_pod["containers"][0];
    let node = "node-1".to_string();
    let pod_ip = hosts[2].addr(0).ip().to_string();
    let api = format!("http://{}", hosts[1].addr(7070));
    let env = [
        ("NODE_NAME", node.clone()),
        ("POD_IP", pod_ip),
        ("CLRK_DATABASE", database.clone()),
        ("CLRK_DIR", under(root, "/var/lib/clrk")),
        ("CLRK_SERVER", api.clone()),
        ("CLRK_TOKEN", token.clone()),
        (
            "PATH",
            format!(
                "{}:/usr/sbin:/usr/bin:/sbin:/bin",
                Path::new(clrk_bin()).parent().unwrap().display()
            ),
        ),
    ];
    let worker_log = root.join("worker.log");
    let log = std::fs::File::create(&worker_log).unwrap();
    let mut worker_process = hosts[2]
        .command(clrk_bin())
        .args(pod_args(worker, root, &env))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let (health_port, ready_path) = probe(worker, "readinessProbe");
    let ready = format!("http://{}{ready_path}", hosts[2].addr(health_port));
    wait_status(&ready, 200, &worker_log).await;
    let (_, live_path) = probe(worker, "livenessProbe");
    wait_status(
        &format!("http://{}{live_path}", hosts[2].addr(health_port)),
        200,
        &worker_log,
    )
    .await;
    let metrics = scraped(daemon_set);
    wait_status(
        &format!("http://{}/metrics", hosts[2].addr(metrics)),
        200,
        &worker_log,
    )
    .await;

    // The preStop hook, as rendered, in the worker's environment.
    let hook: Vec<String> = worker["lifecycle"]["preStop"]["exec"]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let drained = hosts[2]
        .command(&hook[0])
        .args(&hook[1..])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        drained.status.success(),
        "preStop: {}",
        String::from_utf8_lossy(&drained.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&drained.stdout),
        format!("worker/{node} Draining\n")
    );
    wait_status(&ready, 503, &worker_log).await;

    // SIGTERM: it exits within the grace period.
    let grace = std::time::Duration::from_secs(
        worker_pod["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap(),
    );
    let stopping = std::time::Instant::now();
    Command::new("kill")
        .args(["-TERM", &worker_process.id().to_string()])
        .status()
        .unwrap();
    let exit = loop {
        if let Some(status) = worker_process.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopping.elapsed() < grace,
            "the worker outlived its grace period"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(
        exit.success(),
        "{}",
        std::fs::read_to_string(&worker_log).unwrap()
    );
    let _ = server_process.kill();
    let _ = server_process.wait();
}
