"""Writes OCI image layouts for the benchmarks: images built from raw tar layers, tagged."""

import gzip
import hashlib
import json
import os


def blob(layout, data):
    """Stores `data` as a blob of `layout`; returns its descriptor (digest, size)."""
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def write_layout(layout, images):
    """An OCI layout holding one image per tag.

    images: {tag: (layers, entrypoint, env)}, layers a list of uncompressed tar bytes (each
    stored gzipped, and stored once when images share it). Returns the compressed size of
    the layers of the last image.
    """
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    manifests, stored, size = [], {}, 0
    for tag, (layers, entrypoint, env) in images.items():
        descriptors, diff_ids = [], []
        for raw in layers:
            diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
            if diff_id not in stored:
                desc = blob(layout, gzip.compress(raw, compresslevel=1))
                desc["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
                stored[diff_id] = desc
            descriptors.append(stored[diff_id])
            diff_ids.append(diff_id)
        config = {
            "architecture": "amd64", "os": "linux",
            "config": {"Entrypoint": entrypoint, "Env": env},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
        cdesc = blob(layout, json.dumps(config).encode())
        cdesc["mediaType"] = "application/vnd.oci.image.config.v1+json"
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": cdesc, "layers": descriptors}
        mdesc = blob(layout, json.dumps(manifest).encode())
        mdesc["mediaType"] = manifest["mediaType"]
        mdesc["annotations"] = {"org.opencontainers.image.ref.name": tag}
        manifests.append(mdesc)
        size = sum(d["size"] for d in descriptors)
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": manifests}, f)
    return size
