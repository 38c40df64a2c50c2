#!/usr/bin/env python3
"""Asks an OpenAI model one question through clrk's egress gateway, with OpenAI's own SDK.

The agent only holds a placeholder key: the gateway sends the real one as
`Authorization: Bearer` (a CredentialInjectionPolicy with target: ProviderAuth), allows only
api.openai.com, counts the tokens against a budget and records the call.

Input: {"prompt": "...", "stream": false}. Output: {"answer": "...", "usage": {...}}.
"""
import json
import os
import sys

import openai

envelope = json.load(sys.stdin)
data = envelope.get("data", {})
prompt = data.get("prompt", "Say hello.")
client = openai.OpenAI(max_retries=0)  # OPENAI_API_KEY: the placeholder
request = {
    "model": os.environ.get("MODEL", "gpt-4.1-mini"),
    "messages": [{"role": "user", "content": prompt}],
}
try:
    if data.get("stream"):
        text, usage = "", None
        stream = client.chat.completions.create(
            **request, stream=True, stream_options={"include_usage": True}
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
            if chunk.usage:
                usage = chunk.usage
    else:
        reply = client.chat.completions.create(**request)
        text, usage = reply.choices[0].message.content, reply.usage
except openai.APIStatusError as e:
    # A refusal by the gateway (403, 429) or the provider, with its reason in the body: on
    # stderr, the agent's log (`clrk agents logs`), and a non-zero exit, which the caller
    # gets as a 500.
    print(json.dumps({"error": e.status_code, "reason": e.response.text}), file=sys.stderr, flush=True)
    sys.exit(1)
tokens = usage and {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
print(json.dumps({"answer": text, "usage": tokens}), flush=True)
