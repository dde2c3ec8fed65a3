"""Release notes: Markdown written by an operator, shown as HTML on the Downloads page and in the panel.

markdown-it-py renders CommonMark (raw HTML in the source is escaped, not passed through), and nh3
(the Ammonia sanitiser) then keeps only a short list of tags and safe link schemes. Two libraries
because each does one job well: a hand-written renderer or sanitiser is where XSS bugs live, and the
notes travel inside signed manifests to every panel, so a mistake would be shipped everywhere.
"""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

MAX_NOTES_CHARS = 20_000

_TAGS = {"p", "br", "hr", "h3", "h4", "h5", "h6", "ul", "ol", "li", "strong", "em", "code", "pre", "blockquote", "a"}
_ATTRIBUTES = {"a": {"href", "title"}}
_SCHEMES = {"https", "http", "mailto"}


def render(markdown: str) -> str:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    html = md.render(markdown[:MAX_NOTES_CHARS])
    # Headings shift down: notes sit under the page's own h2/h3; h1/h2 become h3.
    html = html.replace("<h1>", "<h3>").replace("</h1>", "</h3>").replace("<h2>", "<h3>").replace("</h2>", "</h3>")
    return nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes=_SCHEMES,
        link_rel="noopener noreferrer nofollow",
    ).strip()
