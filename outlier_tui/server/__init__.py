"""`outlier serve`: an OpenAI-compatible HTTP server over one engine.

app.py builds the Starlette app (guards, optional CORS, routes), requests.py
validates request bodies (wellformed.py: bytes to a JSON object; fields.py:
which fields are honoured; stops.py: stop sequences), queue.py shares the one
engine fairly between requests, completion.py turns engine events into OpenAI
responses and chunks, sse.py frames server-sent events and errors.py the
OpenAI-style error bodies. Against hostile clients: guard.py (Host and
Content-Type), keys.py (API keys, per-key cache namespaces), prompt_bound.py
(prompt size before tokenizing), connections.py and fd_limit.py (uvicorn's
connection cap and timeouts, open files), log_limit.py (no log floods).
The server never touches MLX: it drives an engine.api.EngineClient.
"""
