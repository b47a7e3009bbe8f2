"""Drives the official anthropic Python SDK through sluice: create, stream, count_tokens and
models.list. Prints one JSON object with what came back; the Rust test checks it against
sluice's access log. Usage: python sdk_first_party.py BASE_URL API_KEY"""
import json
import sys
import warnings

import anthropic

warnings.simplefilter("ignore")
base_url, api_key = sys.argv[1], sys.argv[2]
client = anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0)
out = {}

msg = client.messages.create(
    model="claude-haiku-4-5", max_tokens=64, system="You are terse.",
    messages=[{"role": "user", "content": "hi"}], metadata={"user_id": "u1"},
)
out["create"] = {"text": msg.content[0].text, "input": msg.usage.input_tokens, "output": msg.usage.output_tokens}

with client.messages.stream(model="claude-opus-4-8", max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as stream:
    text = stream.get_final_text()
    final = stream.get_final_message()
out["stream"] = {"text": text, "input": final.usage.input_tokens, "output": final.usage.output_tokens}

raw = client.messages.create(model="claude-opus-4-8", max_tokens=64, stream=True, messages=[{"role": "user", "content": "hi"}])
out["raw_stream_events"] = [event.type for event in raw]

out["count_tokens"] = client.messages.count_tokens(
    model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}]
).input_tokens
out["models"] = [m.id for m in client.models.list()]

beta = client.beta.messages.create(
    model="claude-haiku-4-5", max_tokens=16, betas=["context-management-2025-06-27"],
    messages=[{"role": "user", "content": "hi"}],
)
out["beta"] = beta.content[0].text

try:
    anthropic.Anthropic(base_url=base_url, api_key="sk-not-a-key", max_retries=0).messages.create(
        model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "x"}]
    )
    out["bad_key"] = "accepted"
except anthropic.AuthenticationError as e:
    out["bad_key"] = e.body["error"]["type"]

print(json.dumps(out))
