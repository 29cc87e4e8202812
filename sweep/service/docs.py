"""`/docs`: the API's operations as one self-contained HTML page, rendered from the OpenAPI schema on the server.

FastAPI's default page (Swagger UI) loads its JavaScript and CSS from a CDN, which machines without internet access
cannot reach, and it would be the one page of the service that talks to another host. This page needs nothing but
the server; the machine-readable schema is beside it at `/docs/openapi.json` (load it into any OpenAPI tool).
"""

from __future__ import annotations

import html
from typing import Any

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
    "h2{margin-top:2rem;font-size:1.05rem}code{background:#f3f3f3;padding:0 .2rem}"
    ".m{display:inline-block;min-width:3.5rem;font-weight:600}table{border-collapse:collapse;margin:.3rem 0}"
    "td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;font-size:.9rem}"
)


def _type(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return " | ".join(_type(s) for s in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(repr(v) for v in schema["enum"])
    if schema.get("format") == "binary" or "contentMediaType" in schema:
        return "file"
    return str(schema.get("type", "object"))


def _rows(fields: list[tuple[str, str, bool, str]]) -> str:
    if not fields:
        return ""
    body = "".join(
        f"<tr><td><code>{html.escape(name)}</code></td><td>{html.escape(kind)}</td><td>{'yes' if required else ''}"
        f"</td><td>{html.escape(text)}</td></tr>"
        for name, kind, required, text in fields
    )
    return f"<table><tr><th>field</th><th>type</th><th>required</th><th>what</th></tr>{body}</table>"


def _body_fields(schema: dict[str, Any], operation: dict[str, Any]) -> list[tuple[str, str, bool, str]]:
    content = operation.get("requestBody", {}).get("content", {})
    for media in content.values():
        ref = media.get("schema", {}).get("$ref", "")
        model = schema.get("components", {}).get("schemas", {}).get(ref.rsplit("/", 1)[-1], media.get("schema", {}))
        required = set(model.get("required", []))
        return [(name, _type(prop), name in required, prop.get("description", ""))
                for name, prop in model.get("properties", {}).items()]  # fmt: skip
    return []


def render_docs(schema: dict[str, Any], schema_url: str) -> str:
    """The page: each operation with its summary, parameters, form fields and answers."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(schema['info']['title'])} API"
             f"</title><style>{STYLE}</style></head><body><h1>{html.escape(schema['info']['title'])} API</h1>"
             f"<p>{html.escape(schema['info'].get('summary', ''))}</p><p>The OpenAPI schema: <a href='{schema_url}'>"
             f"{schema_url}</a>. Once the server has a token, send it as <code>Authorization: Bearer TOKEN</code>. "
             "Errors are JSON: <code>detail</code> holds the lines the command line prints, <code>errors</code> "
             "each problem with its field.</p>"]  # fmt: skip
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            params = [(p["name"], _type(p.get("schema", {})), bool(p.get("required")),
                       f"{p['in']}{': ' + p['description'] if p.get('description') else ''}")
                      for p in operation.get("parameters", [])]  # fmt: skip
            answers = ", ".join(f"{code} {html.escape(r.get('description', ''))}"
                                for code, r in operation.get("responses", {}).items())  # fmt: skip
            parts.append(f"<h2><span class='m'>{method.upper()}</span> <code>{html.escape(path)}</code></h2>"
                         f"<p>{html.escape(operation.get('summary', ''))}</p>{_rows(params)}"
                         f"{_rows(_body_fields(schema, operation))}<p><small>answers: {answers}</small></p>"
                         )  # fmt: skip
    parts.append("</body></html>")
    return "".join(parts)
