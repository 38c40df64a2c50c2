//! `clrk images list|import|prune`.

use anyhow::Context as _;
use http_body_util::BodyExt as _;
use serde_json::Value;

use crate::cli::{ImagesListArgs, ImportArgs};
use crate::client::RequestBody;
use crate::commands::Session;
use crate::output::{self, Table};
use crate::pull_progress::human_bytes;
use clrk_wire::{ImportResponse, LocalImage, PruneResponse};

/// Prints the server's images as a table (wide: whole digests), JSON or YAML.
pub async fn list(args: ImagesListArgs, session: &Session) -> anyhow::Result<()> {
    let answer: Value = session.api()?.get(&["v1", "images"], &[]).await?;
    output::print_list(
        answer,
        args.output,
        "no images yet: apply an agent or run clrk images import FILE",
        images_table,
    )
}

/// The `images list` table; `wide` shows whole digests.
pub fn images_table(images: &[LocalImage], wide: bool) -> Table {
    let mut table = Table::new(["REFERENCE", "DIGEST", "SIZE", "IMPORTED", "USED-BY"]);
    for LocalImage { image, used_by } in images {
        let digest = match image.digest.get(..19) {
            Some(short) if !wide => format!("{short}…"),
            _ => image.digest.clone(),
        };
        table.row([
            image.reference.clone(),
            digest,
            human_bytes(image.size),
            if image.imported { "yes" } else { "no" }.to_string(),
            match used_by.as_slice() {
                [] => "-".to_string(),
                users => users.join(","),
            },
        ]);
    }
    table
}

/// Streams the archive to the server, which unpacks it as it arrives.
pub async fn import(args: ImportArgs, session: &Session) -> anyhow::Result<()> {
    let file = tokio::fs::File::open(&args.file)
        .await
        .with_context(|| format!("cannot open image archive {}", args.file.display()))?;
    let size = file.metadata().await.map_or(0, |m| m.len());
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
    let body: RequestBody = http_body_util::StreamBody::new(futures::TryStreamExt::map_ok(
        stream,
        http_body::Frame::data,
    ))
    .boxed();
    let mut query = vec![("file", args.file.display().to_string())];
    if let Some(name) = &args.name {
        query.push(("name", name.clone()));
    }
    eprintln!("importing {} ({})…", args.file.display(), human_bytes(size));
    let answer: ImportResponse = session
        .api()?
        .upload(&["v1", "images", "import"], &query, body)
        .await?;
    for image in &answer.imported {
        output::print(&format!(
            "imported {} ({}, {})\n",
            image.reference,
            image.digest,
            human_bytes(image.size)
        ))?;
    }
    Ok(())
}

/// Asks the server to delete what no revision uses.
pub async fn prune(session: &Session) -> anyhow::Result<()> {
    let answer: PruneResponse = session
        .api()?
        .post(&["v1", "images", "prune"], &serde_json::json!({}))
        .await?;
    let r = answer.pruned;
    output::print(&format!(
        "pruned {} image{}: {} blobs, {} layers, {} root filesystems\n",
        r.images,
        if r.images == 1 { "" } else { "s" },
        r.blobs,
        r.layers,
        r.rootfs
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clrk_wire::List;

    #[test]
    fn images_render_with_size_and_users() {
        let images: List<LocalImage> = serde_json::from_str(
            r#"{"items": [
                {"reference": "127.0.0.1:5000/agent:latest", "digest": "sha256:0123456789abcdef0123", "size": 52400000, "imported": false, "usedBy": ["default/a-00001"]},
                {"reference": "docker.io/library/app:1.0", "digest": "sha256:ffffffffffffffffffff", "size": 999, "imported": true, "usedBy": []}
            ]}"#,
        )
        .unwrap();
        assert_eq!(
            images_table(&images.items, false).render(),
            "REFERENCE                     DIGEST                 SIZE      IMPORTED   USED-BY\n\
             127.0.0.1:5000/agent:latest   sha256:0123456789ab…   52.4 MB   no         default/a-00001\n\
             docker.io/library/app:1.0     sha256:ffffffffffff…   999 B     yes        -\n"
        );
        let wide = images_table(&images.items, true).render();
        assert!(wide.contains("sha256:0123456789abcdef0123 "), "{wide}");
    }
}
