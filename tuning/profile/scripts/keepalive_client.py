"""Sends N small Messages requests over one keep-alive connection (virtual key sk-bench)."""
import http.client
import sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
body = b'{"model":"claude-haiku-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}'
c = http.client.HTTPConnection(host, port)
for i in range(n):
    c.request("POST", "/v1/messages", body=body, headers={"x-api-key": "sk-bench", "anthropic-version": "2023-06-01", "content-type": "application/json", "user-agent": "claude-cli/2.1.330 (external, cli)"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
