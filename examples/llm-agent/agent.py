#!/usr/bin/env python3
"""Asks Claude one question through clrk's egress gateway, with Anthropic's own SDK.

The agent only holds a placeholder key: the gateway removes it from whichever header the SDK
put it in and sends the real key where Anthropic documents it (a CredentialInjectionPolicy
with target: ProviderAuth), allows only api.anthropic.com, counts the tokens against a budget
and records the call. Nothing here knows that.

Input: {"prompt": "...", "stream": false}. Output: {"answer": "...", "usage": {...}}.
"""
import json
import os
import sys

import anthropic

envelope = json.load(sys.stdin)
data = envelope.get("data", {})
prompt = data.get("prompt", "Say hello.")
client = anthropic.Anthropic(max_retries=0)  # ANTHROPIC_API_KEY: the placeholder
request = {
    "model": os.environ.get("MODEL", "claude-haiku-4-5"),
    "max_tokens": 256,
    "messages": [{"role": "user", "content": prompt}],
}
try:
    if data.get("stream"):
        with client.messages.stream(**request) as stream:
            text = "".join(stream.text_stream)
            reply = stream.get_final_message()
    else:
        reply = client.messages.create(**request)
        text = "".join(block.text for block in reply.content if block.type == "text")
except anthropic.APIStatusError as e:
    # A refusal by the gateway (403, 429) or the provider, with its reason in the body: on
    # stderr, the agent's log (`clrk agents logs`), and a non-zero exit, which the caller
    # gets as a 500.
    print(json.dumps({"error": e.status_code, "reason": e.response.text}), file=sys.stderr, flush=True)
    sys.exit(1)
usage = {"input_tokens": reply.usage.input_tokens, "output_tokens": reply.usage.output_tokens}
print(json.dumps({"answer": text, "usage": usage}), flush=True)
