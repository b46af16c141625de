"""The HTTP API (FastAPI): an app factory, thin routes, schemas and dependencies."""
