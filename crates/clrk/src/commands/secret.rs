//! `clrk secret set|list|delete`.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::cli::{SecretDeleteArgs, SecretListArgs, SecretSetArgs};
use crate::commands::{self, Session};
use crate::output::{self, Table, ago};
use clrk_wire::{Secret, SetSecretRequest, SetSecretResponse};

/// The largest file `--from-file` reads; the server refuses more anyway.
const MAX_FILE: u64 = 1024 * 1024;

/// Splits `KEY=REST` from a `--from-*` flag.
fn split<'a>(flag: &str, arg: &'a str) -> anyhow::Result<(&'a str, &'a str)> {
    match arg.split_once('=') {
        Some((key, rest)) if !key.is_empty() => Ok((key, rest)),
        _ => bail!("{flag} {arg:?}: expected KEY=… (e.g. {flag} token=…)"),
    }
}

/// Reads every `--from-*` value on this machine, then sends them base64-encoded.
pub async fn set(args: SecretSetArgs, session: &Session) -> anyhow::Result<()> {
    let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut add = |key: &str, value: Vec<u8>| -> anyhow::Result<()> {
        if data.insert(key.to_string(), value).is_some() {
            bail!("key {key:?} is given twice");
        }
        Ok(())
    };
    for arg in &args.literals {
        let (key, value) = split("--from-literal", arg)?;
        add(key, value.as_bytes().to_vec())?;
    }
    for arg in &args.files {
        let (key, path) = split("--from-file", arg)?;
        let size = std::fs::metadata(path)
            .with_context(|| format!("--from-file {key}: cannot read {path}"))?
            .len();
        if size > MAX_FILE {
            bail!("--from-file {key}: {path} holds {size} bytes; a secret is at most {MAX_FILE}");
        }
        let value = std::fs::read(path)
            .with_context(|| format!("--from-file {key}: cannot read {path}"))?;
        add(key, value)?;
    }
    for arg in &args.envs {
        let (key, var) = split("--from-env", arg)?;
        let value = std::env::var_os(var)
            .with_context(|| format!("--from-env {key}: environment variable {var} is not set"))?;
        add(
            key,
            std::os::unix::ffi::OsStrExt::as_bytes(value.as_os_str()).to_vec(),
        )?;
    }
    let request = SetSecretRequest {
        data: data
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    base64::engine::general_purpose::STANDARD.encode(v),
                )
            })
            .collect(),
    };
    let path = [
        "v1",
        "secrets",
        args.namespace.namespace.as_str(),
        args.name.as_str(),
    ];
    let answer: SetSecretResponse = session.api()?.put(&path, &request).await?;
    output::print(&format!(
        "secret/{} {} (keys: {})\n",
        args.name,
        answer.outcome,
        answer.secret.keys.join(", ")
    ))?;
    Ok(())
}

/// Prints the secrets' names and keys (the server never returns a value) as a table, JSON
/// or YAML.
pub async fn list(args: SecretListArgs, session: &Session) -> anyhow::Result<()> {
    let query = args.scope.query();
    let answer: Value = session.api()?.get(&["v1", "secrets"], &query).await?;
    output::print_list(
        answer,
        args.output,
        "no secrets yet: clrk secret set NAME --from-literal KEY=VALUE",
        |secrets: &[Secret], _| secrets_table(secrets, Utc::now()),
    )
}

/// The `secret list` table as of `now`: names and keys, as the server gives no value.
pub fn secrets_table(secrets: &[Secret], now: DateTime<Utc>) -> Table {
    let mut table = Table::new(["NAMESPACE", "NAME", "KEYS", "UPDATED"]);
    for s in secrets {
        table.row([
            s.key.namespace.clone(),
            s.key.name.clone(),
            s.keys.join(","),
            ago(Some(s.updated_at.as_str()), now),
        ]);
    }
    table
}

/// Deletes one secret and prints `secret/NAME deleted`.
pub async fn delete(args: SecretDeleteArgs, session: &Session) -> anyhow::Result<()> {
    let path = [
        "v1",
        "secrets",
        args.namespace.namespace.as_str(),
        args.name.as_str(),
    ];
    commands::delete::delete(&session.api()?, &path, &args.missing).await
}
