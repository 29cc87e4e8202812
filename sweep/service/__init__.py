"""`sweep serve`: an HTTP API (FastAPI) and a web page over the study store, for a team.

- `settings`: what the server was started with (store, folders, token, limits), frozen.
- `security`: the bearer-token rule (constant-time comparison; a cookie for the page).
- `api`: the JSON API under `/api` (OpenAPI schema at `/docs`).
- `pages`: the server-rendered pages (studies list, live study view, submit form).
- `app`: `create_app(settings)` puts them together (and mounts optuna-dashboard at `/dashboard`).
"""
