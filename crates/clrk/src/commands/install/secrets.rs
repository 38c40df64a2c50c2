//! The Secrets `clrk install` makes when they are missing and never overwrites: the control
//! API token and the cluster secret (and, with `--demo-postgres`, the demo database's
//! password and URL). Their values are random and never part of the printed render.

use serde_json::{Map, Value, json};

use super::objects::{
    CLUSTER_SECRET, CLUSTER_SECRET_KEY, InstallOptions, TOKEN_KEY, TOKEN_SECRET, labels, metadata,
};
use super::postgres;

/// A Secret made at install when missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedSecret {
    pub name: &'static str,
    /// Its keys, for the messages and for checking references.
    pub keys: Vec<&'static str>,
    /// What its values are, for `--print-commands`.
    pub what: &'static str,
}

/// The Secrets the render refers to that install generates, in the order it makes them.
pub fn generated(options: &InstallOptions) -> Vec<GeneratedSecret> {
    let mut secrets = vec![
        GeneratedSecret {
            name: TOKEN_SECRET,
            keys: vec![TOKEN_KEY],
            what: "a new control API token (256 random bits)",
        },
        GeneratedSecret {
            name: CLUSTER_SECRET,
            keys: vec![CLUSTER_SECRET_KEY],
            what: "a new cluster secret (256 random bits)",
        },
    ];
    if options.demo_postgres {
        secrets.push(GeneratedSecret {
            name: postgres::SECRET,
            keys: vec![postgres::PASSWORD_KEY, postgres::URL_KEY],
            what: "a new password for the demo PostgreSQL and the URL with it",
        });
    }
    secrets
}

/// 32 random bytes as 64 hex digits: what `clrk server` itself makes for both files.
fn random_hex() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(hex::encode(bytes))
}

impl GeneratedSecret {
    /// The Secret object in `namespace` with fresh random values.
    pub fn make(&self, namespace: &str) -> anyhow::Result<Value> {
        let mut data = Map::new();
        if self.name == postgres::SECRET {
            let password = random_hex()?;
            data.insert(
                postgres::URL_KEY.into(),
                postgres::url(namespace, &password).into(),
            );
            data.insert(postgres::PASSWORD_KEY.into(), password.into());
        } else {
            for key in &self.keys {
                data.insert((*key).into(), random_hex()?.into());
            }
        }
        Ok(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata(self.name, namespace, labels("secret")),
            "type": "Opaque",
            "stringData": data,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_values_are_fresh_and_long_enough_for_clrk() {
        let options = InstallOptions {
            demo_postgres: true,
            ..InstallOptions::default()
        };
        let secrets = generated(&options);
        let names: Vec<_> = secrets.iter().map(|s| s.name).collect();
        assert_eq!(names, [TOKEN_SECRET, CLUSTER_SECRET, postgres::SECRET]);
        let first = secrets[0].make("clrk").unwrap();
        let again = secrets[0].make("clrk").unwrap();
        let token = first["stringData"][TOKEN_KEY].as_str().unwrap();
        assert_eq!(token.len(), 64);
        assert_ne!(token, again["stringData"][TOKEN_KEY].as_str().unwrap());
        let demo = secrets[2].make("clrk").unwrap();
        let password = demo["stringData"]["password"].as_str().unwrap();
        let url = demo["stringData"]["url"].as_str().unwrap();
        assert_eq!(
            url,
            format!("postgres://clrk:{password}@clrk-postgres.clrk.svc:5432/clrk")
        );
    }
}
