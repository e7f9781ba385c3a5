"""`qwen serve`: an OpenAI-compatible HTTP server over the backend protocol.

fastapi and uvicorn are imported only inside this package (and only when a server starts), so
`qwen --help` stays fast. `create_app()` in `app.py` builds the application around injected
state: where models come from, how they load, and the server's limits.
"""
