"""`attnlab serve`: an OpenAI-compatible HTTP server (FastAPI + uvicorn) for a model folder.

    settings.py     ServeSettings: the address, the model and the limits (flags generated)
    server.py       the state built from a loaded model; uvicorn until SIGTERM (drained, exit 0)
    app.py          the FastAPI app: routers, error handlers, /health, /v1/models, lifespan
    completions.py  POST /v1/completions and /v1/chat/completions, whole or streamed (SSE)
    protocol.py     the request bodies, checked (pydantic, unknown parameters refused)
    responses.py    the response and chunk shapes, logprobs, server-sent events
    errors.py       ApiError and OpenAI's error JSON for every failure
    engine.py       continuous batching on one decoding thread (generation/continuous.py)
    chat.py         chat messages through the folder's chat template (Jinja2 sandbox)
    embeddings.py   POST /v1/embeddings for encoder folders (BERT)
    metrics.py      GET /metrics (Prometheus)
    playground.py   GET / and the attention of finished completions (recent.py keeps them)

Nothing here is imported at `attnlab` start-up: the CLI imports the server when it runs.
"""
