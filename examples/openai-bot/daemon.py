#!/usr/bin/env python3
"""The guide's openai-bot as a DaemonAgent: a long-lived loop that asks an OpenAI model a
question every INTERVAL seconds through clrk's egress gateway and prints each answer.

Like agent.py it holds only a placeholder key: the gateway allows only api.openai.com, sends
the real key as `Authorization: Bearer`, counts the tokens against the budget and records each
call. Answers go to stdout, refusals to stderr: both are the daemon's log
(`clrk agents logs openai-bot -f`).
"""
import json
import os
import sys
import time

import openai

client = openai.OpenAI(max_retries=0)  # OPENAI_API_KEY: the placeholder
model = os.environ.get("MODEL", "gpt-4.1-mini")
prompt = os.environ.get("PROMPT", "Say hello.")
interval = float(os.environ.get("INTERVAL", "60"))

n = 0
while True:
    n += 1
    try:
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt}]
        )
        usage = reply.usage
        tokens = usage and {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
        print(json.dumps({"ask": n, "answer": reply.choices[0].message.content, "usage": tokens}), flush=True)
    except openai.APIStatusError as e:
        # A refusal by the gateway (403, or 429 once the day's budget is spent) or the
        # provider: said in the log, and asked again at the next tick.
        print(json.dumps({"ask": n, "error": e.status_code, "reason": e.response.text}), file=sys.stderr, flush=True)
    except openai.APIConnectionError as e:
        print(json.dumps({"ask": n, "error": "connection", "reason": str(e)}), file=sys.stderr, flush=True)
    time.sleep(interval)
