"""`outlier serve`: an OpenAI-compatible HTTP server over one engine.

app.py builds the Starlette app (auth, body limit, routes), requests.py
validates request bodies, queue.py shares the one engine fairly between
requests, completion.py turns engine events into OpenAI responses and chunks,
sse.py frames server-sent events and errors.py the OpenAI-style error bodies.
The server never touches MLX: it drives an engine.api.EngineClient.
"""
