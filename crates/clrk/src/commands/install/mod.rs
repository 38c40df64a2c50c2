//! `clrk install` and `clrk upgrade`: clrk on Kubernetes. The objects are pure functions of
//! the install options, one file per family (namespace, servers, workers, the demo
//! PostgreSQL, the generated Secrets); `--dry-run` prints them, `--write-base` writes them as
//! the kustomize base of `deploy/kubernetes/`, and otherwise `kubectl` applies them.

pub mod kubectl;
pub mod namespace;
pub mod objects;
pub mod postgres;
pub mod render;
pub mod secrets;
pub mod server;
pub mod worker;

use std::path::Path;

use anyhow::{Context as _, bail};

use crate::cli::{InstallArgs, ObjectFormat, UpgradeArgs};
use crate::output;
use objects::InstallOptions;

/// `clrk install`.
pub async fn install(args: InstallArgs) -> anyhow::Result<()> {
    let options = install_options(&args)?;
    if let Some(dir) = &args.write_base {
        return write_base(&options, dir);
    }
    let steps = kubectl::install_plan(&options);
    if args.print_commands {
        return print_lines(&kubectl::describe(&steps, &options.namespace));
    }
    if args.dry_run {
        let objects = render::objects(&options);
        let text = match args.output.unwrap_or(ObjectFormat::Yaml) {
            ObjectFormat::Yaml => render::to_yaml(&objects)?,
            ObjectFormat::Json => render::to_json(&objects)?,
        };
        return Ok(output::print(&text)?);
    }
    need_kubectl()?;
    kubectl::execute(&steps, &options.namespace).await?;
    println!(
        "clrk installed in namespace {}: label the worker nodes \
         (kubectl label node NODE clrk.apoxy.dev/worker-pool=POOL) and see docs/kubernetes.md",
        options.namespace
    );
    Ok(())
}

/// `clrk upgrade`.
pub async fn upgrade(args: UpgradeArgs) -> anyhow::Result<()> {
    check_name("--namespace", &args.namespace)?;
    check_image(&args.image)?;
    for pool in &args.pools {
        check_name("--pool", pool)?;
    }
    let options = kubectl::UpgradeOptions {
        namespace: args.namespace,
        image: args.image,
        pools: args.pools,
        timeout: args.timeout,
    };
    let steps = kubectl::upgrade_plan(&options);
    if args.print_commands {
        return print_lines(&kubectl::describe(&steps, &options.namespace));
    }
    need_kubectl()?;
    kubectl::execute(&steps, &options.namespace).await?;
    println!("clrk upgraded to {}", options.image);
    Ok(())
}

fn print_lines(lines: &[String]) -> anyhow::Result<()> {
    let mut text = lines.join("\n");
    text.push('\n');
    Ok(output::print(&text)?)
}

/// The options, checked: names Kubernetes accepts, an image with a tag other than `latest`.
fn install_options(args: &InstallArgs) -> anyhow::Result<InstallOptions> {
    check_name("--namespace", &args.namespace)?;
    check_image(&args.image)?;
    if args.servers == 0 {
        bail!("--servers must be at least 1: the servers hold the control API and the ingress");
    }
    let mut pools: Vec<String> = Vec::new();
    for pool in &args.pools {
        if !pools.contains(pool) {
            pools.push(pool.clone());
        }
    }
    for pool in &pools {
        check_name("--pool", pool)?;
    }
    let database_secret = match (&args.database_secret, args.demo_postgres) {
        (Some(name), _) => {
            check_name("--database-secret", name)?;
            name.clone()
        }
        (None, true) => postgres::SECRET.into(),
        (None, false) => objects::DATABASE_SECRET.into(),
    };
    Ok(InstallOptions {
        namespace: args.namespace.clone(),
        servers: args.servers,
        image: args.image.clone(),
        database_secret,
        demo_postgres: args.demo_postgres,
        pools,
        worker_cache: args.worker_cache,
        metrics_port: args.metrics_port,
    })
}

/// A DNS label: what namespaces, pools (in object names and label values) and Secret
/// names must be. Pools are kept short: `clrk-worker-POOL` names the DaemonSet's pods.
fn check_name(flag: &str, name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !valid {
        bail!(
            "{flag} {name:?}: use at most 40 lowercase letters, digits and '-', starting and \
             ending with a letter or digit"
        );
    }
    Ok(())
}

/// An image reference with a tag other than `latest`, or a digest: what runs must not
/// change under a running cluster.
fn check_image(image: &str) -> anyhow::Result<()> {
    if image.contains("@sha256:") {
        return Ok(());
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((name, tag)) if !name.is_empty() && !tag.is_empty() && tag != "latest" => Ok(()),
        _ => bail!(
            "--image {image:?}: give a tag other than latest (clrk:{}) or a digest \
             (REPO@sha256:…), so every node runs the same clrk",
            env!("CARGO_PKG_VERSION")
        ),
    }
}

/// Writes the kustomize base: one file per family and `kustomization.yaml`.
fn write_base(options: &InstallOptions, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let families = render::families(options);
    for family in &families {
        let text = format!(
            "# Generated by `clrk install --dry-run --write-base`: do not edit (see kustomization.yaml).\n{}",
            render::to_yaml(&family.objects)?
        );
        let path = dir.join(&family.file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let path = dir.join("kustomization.yaml");
    std::fs::write(&path, render::kustomization(&families)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("wrote the kustomize base in {}", dir.display());
    Ok(())
}

/// kubectl on the PATH, or what to do instead.
fn need_kubectl() -> anyhow::Result<()> {
    let found = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("kubectl").is_file())
    });
    if !found {
        bail!(
            "kubectl is not on the PATH: install it (Debian: apt-get install kubernetes-client, \
             or your cluster vendor's kubectl), or print the objects with --dry-run -o yaml \
             and apply them your way"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_need_a_tag_other_than_latest_or_a_digest() {
        for good in [
            "clrk:0.1.0",
            "registry.example.com:5000/team/clrk:1.2",
            "clrk@sha256:0123",
        ] {
            assert!(check_image(good).is_ok(), "{good}");
        }
        for bad in [
            "clrk",
            "clrk:latest",
            "registry.example.com:5000/clrk",
            "clrk:",
        ] {
            let error = check_image(bad).unwrap_err().to_string();
            assert!(error.contains("tag other than latest"), "{bad}: {error}");
        }
    }

    #[test]
    fn names_must_be_dns_labels() {
        assert!(check_name("--pool", "gpu-a100").is_ok());
        for bad in ["", "GPU", "-a", "a-", "a_b", &"a".repeat(41)] {
            assert!(check_name("--pool", bad).is_err(), "{bad}");
        }
    }
}
