"""report.html beside report.md: one self-contained file (images inlined, no network at view time).

Reports quote prompts and model outputs written by an LM, so raw HTML in the Markdown is
escaped, never passed through. Mermaid blocks stay readable text: drawing them needs
mermaid.js, and a report that fetches a script from a CDN breaks offline and leaks views."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from urllib.parse import unquote

from markdown_it import MarkdownIt

from promptrl.io import atomic_write_text

# Only these are inlined; anything else (a remote URL, a file outside the report dir) shows its alt text.
_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
                ".webp": "image/webp", ".svg": "image/svg+xml"}
# A number, a mean ± std, a signed difference, or '-' for a missing value: a column of these is right-aligned.
_NUMERIC = re.compile(r"^\s*(?:[-+−]?\$?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?%?(?:\s*±\s*\d[\d,]*(?:\.\d+)?)?|-)\s*$",
                      re.IGNORECASE)

_STYLE = """
:root { color-scheme: light; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #1f2328; background: #fff; max-width: 1100px; margin: 2rem auto; padding: 0 1.5rem; }
h1, h2, h3 { line-height: 1.25; margin: 1.6em 0 .6em; }
h1 { font-size: 1.8em; border-bottom: 1px solid #d0d7de; padding-bottom: .3em; margin-top: 0; }
h2 { font-size: 1.35em; border-bottom: 1px solid #eaeef2; padding-bottom: .2em; }
table { border-collapse: collapse; margin: 1em 0; font-variant-numeric: tabular-nums; display: block;
        overflow-x: auto; max-width: 100%; }
th, td { border: 1px solid #d0d7de; padding: .35em .7em; vertical-align: top; }
th { background: #f6f8fa; text-align: left; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.num, th.num { text-align: right; }
td.num { white-space: nowrap; }
img { max-width: 100%; height: auto; }
.missing-image { display: inline-block; border: 1px dashed #afb8c1; color: #57606a; padding: .5em 1em; }
code { font: .9em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f6f8fa;
       padding: .1em .3em; border-radius: 4px; word-break: break-word; }
pre { background: #f6f8fa; padding: .8em 1em; border-radius: 6px; overflow-x: auto; }
pre code { background: none; padding: 0; }
pre.mermaid::before { content: "mermaid diagram (source)"; display: block; color: #57606a; font-size: .8em;
                      margin-bottom: .4em; }
@media print {
  body { max-width: none; margin: 0; font-size: 11pt; }
  table { display: table; overflow: visible; }
  tr, img, pre { break-inside: avoid; }
  h1, h2, h3 { break-after: avoid; }
  pre { white-space: pre-wrap; }
}
"""


def html_path_for(markdown_path) -> Path:
    """report.md -> report.html, sweep_report.md -> sweep_report.html (same dir)."""
    return Path(markdown_path).with_suffix(".html")


def write_html(markdown_path) -> Path:
    """Write the HTML twin of a report (report.md -> report.html) and return its path."""
    markdown_path = Path(markdown_path)
    text = markdown_path.read_text(encoding="utf-8")
    return atomic_write_text(html_path_for(markdown_path), render_html(text, base_dir=markdown_path.parent))


def render_html(markdown_text: str, base_dir) -> str:
    """A complete HTML page for a Markdown report whose images are relative to base_dir."""
    md = _markdown(Path(base_dir))
    tokens = md.parse(markdown_text)
    _align_numeric_columns(tokens)
    body = md.renderer.render(tokens, md.options, {})
    title = _title(md, tokens) or "report"
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            # Nothing on the page may reach the network: images are data: URIs and there are no scripts.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "img-src data:; style-src 'unsafe-inline'\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n")


def _align_numeric_columns(tokens) -> None:
    """Mark the cells (and header) of every table column whose body cells are all numbers."""
    columns: dict[int, list] = {}
    column = 0
    for i, token in enumerate(tokens):
        if token.type == "table_open":
            columns = {}
        elif token.type == "tr_open":
            column = 0
        elif token.type in ("th_open", "td_open"):
            columns.setdefault(column, []).append((token, tokens[i + 1].content.strip()))
            column += 1
        elif token.type == "table_close":
            for cells in columns.values():
                body = [text for cell, text in cells if cell.type == "td_open"]
                if body and any(t != "-" for t in body) and all(_NUMERIC.match(t) for t in body):
                    for cell, _ in cells:
                        cell.attrJoin("class", "num")


def _title(md: MarkdownIt, tokens) -> str | None:
    """The text of the first level-1 heading (a `# ` line inside a code block is not one)."""
    for i, token in enumerate(tokens):
        if token.type == "heading_open" and token.tag == "h1":
            return md.renderer.renderInlineAsText(tokens[i + 1].children or [], md.options, {})
    return None


def _markdown(base_dir: Path) -> MarkdownIt:
    # html=False: raw HTML in the text is escaped (LM output must not become markup on the page).
    md = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    default_fence = md.renderer.rules["fence"]

    def image(renderer, tokens, idx, options, env):
        token = tokens[idx]
        alt = html.escape(renderer.renderInlineAsText(token.children or [], options, env))
        data = _data_uri(base_dir, token.attrGet("src") or "")
        if data is None:
            return f'<span class="missing-image" role="img" aria-label="{alt}">[{alt}]</span>'
        title = token.attrGet("title")
        title_attr = f' title="{html.escape(title)}"' if title else ""
        return f'<img src="{data}" alt="{alt}"{title_attr}>'

    def fence(renderer, tokens, idx, options, env):
        token = tokens[idx]
        if token.info.strip().split(maxsplit=1)[:1] == ["mermaid"]:
            return f'<pre class="mermaid"><code>{html.escape(token.content)}</code></pre>\n'
        return default_fence(tokens, idx, options, env)

    md.add_render_rule("image", image)
    md.add_render_rule("fence", fence)
    return md


def _data_uri(base_dir: Path, src: str) -> str | None:
    """The image at a relative src inside base_dir as a data: URI, or None when it cannot be inlined."""
    if not src or re.match(r"^[a-z][a-z0-9+.-]*:", src, re.IGNORECASE) or src.startswith(("/", "\\")):
        return None  # a URL (remote or data:) or an absolute path: not ours to embed
    root = base_dir.resolve()
    path = (root / unquote(src)).resolve()
    mime = _IMAGE_TYPES.get(path.suffix.lower())
    if mime is None or not path.is_relative_to(root) or not path.is_file():
        return None
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"
