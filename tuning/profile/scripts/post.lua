wrk.method = "POST"
wrk.path = "/v1/messages"
wrk.body = '{"model":"claude-haiku-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}'
wrk.headers["x-api-key"] = "sk-bench"
wrk.headers["anthropic-version"] = "2023-06-01"
wrk.headers["content-type"] = "application/json"
