"""AnthropicBedrock (botocore SigV4) with a key pair that sluice issued: a create and a stream
must pass sluice's signature check; the same key with a wrong secret must get a 401.
Usage: python sdk_bedrock_sigv4.py BASE_URL ACCESS_KEY_ID SECRET"""
import json
import sys
import warnings

import anthropic

warnings.simplefilter("ignore")
base_url, akid, secret = sys.argv[1:4]
msgs = [{"role": "user", "content": "hi"}]
model = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
client = anthropic.AnthropicBedrock(base_url=base_url, aws_region="us-east-1", aws_access_key=akid, aws_secret_key=secret, max_retries=0)
out = {"create": client.messages.create(model=model, max_tokens=16, messages=msgs).content[0].text}
with client.messages.stream(model=model, max_tokens=16, messages=msgs) as s:
    out["stream"] = s.get_final_text()
bad = anthropic.AnthropicBedrock(base_url=base_url, aws_region="us-east-1", aws_access_key=akid, aws_secret_key="wrong", max_retries=0)
try:
    bad.messages.create(model=model, max_tokens=16, messages=msgs)
    out["bad_secret"] = "accepted"
except anthropic.AuthenticationError:
    out["bad_secret"] = "401"
print(json.dumps(out))
