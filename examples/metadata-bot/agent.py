#!/usr/bin/env python3
"""The word-count agent in Metadata delivery mode: it fetches its event over HTTP and posts
its answer back instead of using stdin and stdout."""
import json, os, urllib.request

base = os.environ["CLRK_METADATA_URL"]  # already ends in /v1
request = urllib.request.Request(base + "/event", headers={"Accept": "application/cloudevents+json"})
event = json.load(urllib.request.urlopen(request))
text = (event.get("data") or {}).get("text", "")
answer = json.dumps({"word_count": len(text.split()), "envelope_id": event["id"]}).encode()
urllib.request.urlopen(urllib.request.Request(
    base + "/response", data=answer, method="POST", headers={"Content-Type": "application/json"}))
print("answered", event["id"], flush=True)  # stdout goes to the logs in this mode
