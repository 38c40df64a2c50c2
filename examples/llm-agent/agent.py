#!/usr/bin/env python3
"""Asks Claude one question through clrk's egress gateway.

The agent only holds a placeholder key: the gateway replaces the x-api-key header with the
real one (a CredentialInjectionPolicy), allows only api.anthropic.com, counts the tokens
against a budget and records the call. Nothing here knows that.
"""
import json
import os
import sys
import urllib.error
import urllib.request

envelope = json.load(sys.stdin)
prompt = envelope.get("data", {}).get("prompt", "Say hello.")
request = urllib.request.Request(
    "https://api.anthropic.com/v1/messages",
    data=json.dumps({
        "model": os.environ.get("MODEL", "claude-3-5-haiku-latest"),
        "max_tokens": 256,
        "messages": [{"role": "user", "content": prompt}],
    }).encode(),
    headers={
        "x-api-key": os.environ.get("ANTHROPIC_API_KEY", ""),
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
    },
)
try:
    with urllib.request.urlopen(request, timeout=60) as response:
        reply = json.load(response)
except urllib.error.HTTPError as e:
    # A refusal by the gateway (403, 429) or the provider, with its reason in the body.
    print(json.dumps({"error": e.code, "reason": e.read().decode()}), flush=True)
    sys.exit(1)
text = "".join(block.get("text", "") for block in reply.get("content", []))
print(json.dumps({"answer": text, "usage": reply.get("usage")}), flush=True)
