"""Ingress dialects: pure converters between a client's API and the gateway's one internal request model.

The internal model is the OpenAI chat-completions wire format (see `sluicegate.providers.base`). Each module
here adapts one more client dialect to it and back, so a new dialect is one module and every provider, route,
cache, guardrail and limit keeps working unchanged:

- `anthropic_messages`: Anthropic's Messages API (`POST /v1/messages`, `count_tokens`)
- `responses`: OpenAI's Responses API, the non-stateful subset (`POST /v1/responses`)
- `completions`: OpenAI's legacy text completions (`POST /v1/completions`)

No I/O and no side effects: each converter is tested with plain input/output pairs.
"""
