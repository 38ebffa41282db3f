"""HTML mail bodies as readable plain text (stdlib html.parser; scripts and styles dropped)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

# Elements whose content is never shown to a reader.
_HIDDEN = frozenset({"script", "style", "head", "title", "template", "noscript", "object"})
# Elements that start on a line of their own.
_BLOCK = frozenset(
    {
        "address", "article", "aside", "blockquote", "div", "dl", "dt", "dd", "fieldset",
        "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
        "hr", "main", "nav", "ol", "p", "pre", "section", "table", "tr", "ul", "center",
    }
)  # fmt: skip
_VOID = frozenset({"br", "hr", "img", "meta", "link", "input", "wbr", "area", "base", "col"})
_MAX_DEPTH = 200  # hostile markup: deeper hidden-element nesting is not tracked further


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.hidden: list[str] = []
        self.pre = 0
        self.links: list[str | None] = []

    def _newline(self, count: int = 1) -> None:
        self.out.append("\n" * count)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            if tag not in _VOID and len(self.hidden) < _MAX_DEPTH:
                self.hidden.append(tag)
            return
        if self.hidden:
            return
        if tag == "br":
            self._newline()
        elif tag in ("p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table"):
            self._newline(2)
        elif tag in _BLOCK:
            self._newline()
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in ("td", "th"):
            self.out.append("\t")
        if tag == "pre":
            self.pre += 1
        if tag == "a" and len(self.links) < _MAX_DEPTH:
            href = dict(attrs).get("href")
            self.links.append(href if href and href.startswith(("http:", "https:")) else None)
        elif tag == "img":
            alt = (dict(attrs).get("alt") or "").strip()
            if alt:
                self.out.append(f"[{alt}]")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.hidden:
            if tag == self.hidden[-1]:
                self.hidden.pop()
            return
        if tag in ("p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table"):
            self._newline(2)
        elif tag in _BLOCK:
            self._newline()
        if tag == "pre" and self.pre:
            self.pre -= 1
        if tag == "a" and self.links:
            href = self.links.pop()
            # Show where a link goes unless its text already says so.
            if href and not "".join(self.out[-3:]).rstrip().endswith(href):
                self.out.append(f" <{href}>")

    def handle_data(self, data: str) -> None:
        if self.hidden:
            return
        self.out.append(data if self.pre else re.sub(r"\s+", " ", data))


_BLANK_RUNS = re.compile(r"\n{3,}")
_SPACE_RUNS = re.compile(r"[ \t\u00a0]+")


def html_to_text(html: str) -> str:
    """Readable text of an HTML body: paragraphs and line breaks kept, list items as
    "- ", link targets shown after their text, scripts/styles/head dropped."""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # noqa: S110 - html.parser is lenient; keep what was read so far
        pass
    text = "".join(parser.out)
    lines = [_SPACE_RUNS.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()
