#!/usr/bin/env python3
import json, os, sys
envelope = json.load(sys.stdin)
payload = envelope.get("data", {})
text = payload.get("text", "")
print(json.dumps({
    "word_count": len(text.split()),
    "envelope_id": envelope.get("id"),
}), flush=True)
