#!/usr/bin/env python3
"""Convert the mdBook HTML of "The Rust Programming Language" to plain text.

Usage: extract_book.py [--keep-hidden-lines] HTML_DIR OUT_DIR

Reads every chapter page (chNN-NN-*.html) and appendix page (appendix-*.html)
in HTML_DIR, in sorted order, and writes OUT_DIR/<stem>.txt for each page that
has a <main> element (pages without one are redirect stubs and are skipped).

Output rules:
  * only the content of <main>; scripts, styles, SVG and buttons dropped;
  * headings and paragraphs are single lines separated by a blank line;
  * code blocks (<pre>) verbatim; lines that mdBook hides by default
    (<span class="boring">) are dropped unless --keep-hidden-lines is given;
  * list items as "- item" ("1. item" for ordered lists, nested lists
    indented by two spaces), block quotes prefixed with "> ",
    table rows as cells joined by " | ";
  * Ferris marker images dropped; other images kept as "[Image: alt text]";
  * entities decoded, trailing spaces stripped, runs of blank lines outside
    code collapsed to one, UTF-8, LF, exactly one final newline.

Standard library only; the output is deterministic.
"""

import os
import re
import sys
from html.parser import HTMLParser

PAGE_RE = re.compile(r"^(ch\d\d-\d\d-.+|appendix-.+)\.html$")
SKIP_TAGS = {"script", "style", "svg", "button", "noscript", "template", "nav"}
VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input",
             "link", "meta", "source", "track", "wbr"}
BLOCK_TAGS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "figcaption", "div",
              "section", "figure", "header", "footer", "article", "aside",
              "dt", "dd", "dl"}
WS_RE = re.compile(r"\s+")


class BookExtractor(HTMLParser):
    def __init__(self, keep_hidden=False):
        super().__init__(convert_charrefs=True)
        self.keep_hidden = keep_hidden
        self.in_main = False
        self.done = False
        self.skip_depth = 0        # inside script/style/svg/...
        self.inline = []           # pending inline text of the current block
        self.out = []              # list of (line, is_code)
        self.lists = []            # stack of [kind, counter]
        self.pending_marker = None  # marker for the next flushed line in an <li>
        self.quote_depth = 0
        self.pre_depth = 0
        self.pre_buf = []
        self.hidden_depth = 0      # inside <span class="boring"> within <pre>
        self.span_stack = []       # per <span>: True if it is a hidden-line span
        self.sup_stack = []        # per <sup>: kind
        self.a_skip = []           # per <a>: True if its text is dropped
        self.row = None            # cells of the current table row
        self.cell = None           # inline parts of the current cell

    # ---- output helpers -------------------------------------------------
    def _prefix(self):
        return "> " * self.quote_depth

    def _indent(self):
        return "  " * max(len(self.lists) - 1, 0)

    def _blank(self):
        self.out.append(("", False))

    def flush(self):
        """Emit the pending inline text as one line (paragraph or list item)."""
        text = WS_RE.sub(" ", "".join(self.inline)).strip()
        self.inline = []
        if not text:
            return
        if self.lists:
            if self.pending_marker is not None:
                line = self._indent() + self.pending_marker + text
                self.pending_marker = None
            else:  # continuation paragraph inside a list item
                line = self._indent() + "  " + text
            self.out.append((self._prefix() + line, False))
        else:
            self._blank()
            self.out.append((self._prefix() + text, False))
            self._blank()

    def text(self, s):
        if self.cell is not None:
            self.cell.append(s)
        else:
            self.inline.append(s)

    # ---- parser callbacks -----------------------------------------------
    def handle_starttag(self, tag, attrs):
        if self.done:
            return
        if not self.in_main:
            if tag == "main":
                self.in_main = True
            return
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if self.skip_depth:
            if tag in SKIP_TAGS:
                self.skip_depth += 1
            return
        if tag in SKIP_TAGS:
            self.skip_depth = 1
            return
        if self.pre_depth:
            if tag == "pre":
                self.pre_depth += 1
            elif tag == "span":
                hidden = "boring" in cls
                self.span_stack.append(hidden)
                if hidden:
                    self.hidden_depth += 1
            elif tag == "br":
                self._pre_text("\n")
            return
        if tag == "pre":
            self.flush()
            self.pre_depth = 1
            self.pre_buf = []
        elif tag in ("ul", "ol"):
            self.flush()
            if not self.lists:
                self._blank()
            kind = "fn" if "footnote-definition" in cls else tag
            self.lists.append([kind, 0])
        elif tag == "li":
            self.flush()
            if self.lists:
                entry = self.lists[-1]
                entry[1] += 1
                if entry[0] == "ol":
                    self.pending_marker = "%d. " % entry[1]
                elif entry[0] == "fn":
                    self.pending_marker = "[%d] " % entry[1]
                else:
                    self.pending_marker = "- "
        elif tag == "blockquote":
            self.flush()
            self.quote_depth += 1
        elif tag == "table":
            self.flush()
            self._blank()
        elif tag == "tr":
            self.row = []
        elif tag in ("td", "th"):
            self.cell = []
        elif tag == "br":
            self.flush()
        elif tag == "hr":
            self.flush()
        elif tag == "img":
            alt = WS_RE.sub(" ", a.get("alt") or "").strip()
            if "ferris-explain" in cls or "ferris" in (a.get("src") or ""):
                return
            if alt:
                self.flush()
                self.text("[Image: %s]" % alt)
                self.flush()
        elif tag == "span":
            block = bool({"file-name", "filename", "caption"} & set(cls))
            self.span_stack.append(block)
            if block:
                self.flush()
        elif tag == "sup":
            kind = "fn" if "footnote-reference" in cls else "sup"
            self.sup_stack.append((kind, len(self._target())))
        elif tag == "a":
            href = a.get("href") or ""
            self.a_skip.append(href.startswith("#fr-"))
        elif tag in BLOCK_TAGS:
            self.flush()

    def _target(self):
        return self.cell if self.cell is not None else self.inline

    def _pre_text(self, s):
        if not self.hidden_depth or self.keep_hidden:
            self.pre_buf.append(s)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID_TAGS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if self.done or not self.in_main:
            return
        if self.skip_depth:
            if tag in SKIP_TAGS:
                self.skip_depth -= 1
            return
        if tag == "main":
            self.flush()
            self.in_main = False
            self.done = True
            return
        if self.pre_depth:
            if tag == "span" and self.span_stack:
                if self.span_stack.pop():
                    self.hidden_depth -= 1
            elif tag == "pre":
                self.pre_depth -= 1
                if not self.pre_depth:
                    self._emit_pre()
            return
        if tag in ("ul", "ol"):
            self.flush()
            if self.lists:
                self.lists.pop()
            self.pending_marker = None
            if not self.lists:
                self._blank()
        elif tag == "li":
            self.flush()
            self.pending_marker = None
        elif tag == "blockquote":
            self.flush()
            self.quote_depth = max(self.quote_depth - 1, 0)
            self._blank()
        elif tag in ("td", "th"):
            if self.cell is not None and self.row is not None:
                txt = WS_RE.sub(" ", "".join(self.cell)).strip()
                if txt:
                    self.row.append(txt)
            self.cell = None
        elif tag == "tr":
            if self.row:
                self.out.append((self._prefix() + " | ".join(self.row), False))
            self.row = None
        elif tag == "table":
            self._blank()
        elif tag == "span":
            if self.span_stack and self.span_stack.pop():
                self.flush()
        elif tag == "sup":
            if self.sup_stack:
                kind, start = self.sup_stack.pop()
                tgt = self._target()
                inner = "".join(tgt[start:]).strip()
                del tgt[start:]
                if kind == "fn":
                    tgt.append("[%s]" % inner)
                elif re.fullmatch(r"[\w.]+", inner):
                    tgt.append("^" + inner)
                elif inner:
                    tgt.append("^(%s)" % inner)
        elif tag == "a":
            if self.a_skip:
                self.a_skip.pop()
        elif tag in BLOCK_TAGS:
            self.flush()

    def handle_data(self, data):
        if self.done or not self.in_main or self.skip_depth:
            return
        if self.pre_depth:
            self._pre_text(data)
            return
        if self.a_skip and any(self.a_skip):
            return
        self.text(data)

    def _emit_pre(self):
        code = "".join(self.pre_buf)
        self.pre_buf = []
        lines = [ln.rstrip() for ln in code.split("\n")]
        while lines and not lines[0]:
            lines.pop(0)
        while lines and not lines[-1]:
            lines.pop()
        if not lines:
            return
        self._blank()
        pfx = self._prefix() + (self._indent() + "  " if self.lists else "")
        for ln in lines:
            self.out.append(((pfx + ln) if ln else pfx.rstrip(), True))
        self._blank()

    # ---- result ---------------------------------------------------------
    def result(self):
        self.flush()
        lines = []
        for line, is_code in self.out:
            line = line.replace("\u00a0", " ").rstrip() if not is_code else line
            if not is_code and not line:
                if lines and lines[-1] == ("", False):
                    continue
                if not lines:
                    continue
                lines.append(("", False))
            else:
                lines.append((line, is_code))
        while lines and lines[-1][0] == "":
            lines.pop()
        return "\n".join(l for l, _ in lines) + "\n" if lines else ""


def convert(path, keep_hidden=False):
    with open(path, encoding="utf-8") as f:
        html = f.read()
    p = BookExtractor(keep_hidden=keep_hidden)
    p.feed(html)
    p.close()
    if not p.done:
        return None  # no <main>: redirect stub
    return p.result()


def main(argv):
    keep_hidden = False
    args = []
    for a in argv[1:]:
        if a == "--keep-hidden-lines":
            keep_hidden = True
        else:
            args.append(a)
    if len(args) != 2:
        sys.stderr.write(__doc__)
        return 2
    src, dst = args
    os.makedirs(dst, exist_ok=True)
    written = skipped = 0
    for name in sorted(os.listdir(src)):
        if not PAGE_RE.match(name):
            continue
        text = convert(os.path.join(src, name), keep_hidden)
        if not text:
            skipped += 1
            continue
        out = os.path.join(dst, name[:-len(".html")] + ".txt")
        with open(out, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        written += 1
    print("wrote %d files, skipped %d pages without <main>" % (written, skipped))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
