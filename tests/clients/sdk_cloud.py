"""Drives the official anthropic Python SDK's AnthropicBedrock and AnthropicVertex clients through
sluice, streaming and not (Bedrock both with SigV4 keys and with a bearer api_key; Vertex with
an access token), plus Vertex count_tokens. Prints one JSON object with what came back.
Usage: python sdk_cloud.py BASE_URL BEARER_KEY"""
import json
import sys
import warnings

import anthropic

warnings.simplefilter("ignore")
base_url, bearer = sys.argv[1], sys.argv[2]
out = {}
msgs = [{"role": "user", "content": "hi"}]

sigv4 = anthropic.AnthropicBedrock(
    base_url=base_url, aws_region="us-east-1", aws_access_key="AKIDLABEXAMPLE000000",
    aws_secret_key="lab-secret", max_retries=0,
)
m = sigv4.messages.create(model="anthropic.claude-sonnet-4-5-20250929-v1:0", max_tokens=32, messages=msgs)
out["bedrock_sigv4"] = {"text": m.content[0].text, "input": m.usage.input_tokens}

bearer_client = anthropic.AnthropicBedrock(base_url=base_url, aws_region="us-east-1", api_key=bearer, max_retries=0)
with bearer_client.messages.stream(model="us.anthropic.claude-haiku-4-5-20251001-v1:0", max_tokens=32, messages=msgs) as s:
    text = s.get_final_text()
    final = s.get_final_message()
out["bedrock_stream"] = {"text": text, "input": final.usage.input_tokens, "output": final.usage.output_tokens}
events = bearer_client.messages.create(
    model="us.anthropic.claude-haiku-4-5-20251001-v1:0", max_tokens=32, messages=msgs, stream=True,
    extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
)
out["bedrock_events"] = [e.type for e in events]

vertex = anthropic.AnthropicVertex(base_url=base_url + "/v1", region="us-east5", project_id="p", access_token=bearer, max_retries=0)
m = vertex.messages.create(model="claude-sonnet-4-5@20250929", max_tokens=32, messages=msgs)
out["vertex"] = {"text": m.content[0].text, "input": m.usage.input_tokens}
with vertex.messages.stream(model="claude-opus-4-6", max_tokens=32, messages=msgs) as s:
    out["vertex_stream"] = {"text": s.get_final_text()}
out["vertex_count_tokens"] = vertex.messages.count_tokens(model="claude-sonnet-4-5@20250929", messages=msgs).input_tokens
print(json.dumps(out))
