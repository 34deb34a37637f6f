"""Checks the internal links of a built HTML site: every relative ``href`` and
``src`` must name a file that exists, and every ``#anchor`` an ``id`` (or
``<a name>``) in the page it points to. External links (``http:``,
``https:``, ``mailto:``, ...) are listed, never fetched: the build has no network.

    python docs/check_links.py docs/_build/html

Exits 1 when a link is broken, printing each as ``page: link (why)``.
"""

import sys
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

LINK_ATTRIBUTES = {"href", "src"}


class Page(HTMLParser):
    """The anchors a page defines and the links it makes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set = set()
        self.links: list = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value is None:
                continue
            if name == "id" or (tag == "a" and name == "name"):
                self.ids.add(value)
            elif name in LINK_ATTRIBUTES:
                self.links.append(value)


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    return page


def check(root: Path):
    pages = {path: parse(path) for path in sorted(root.rglob("*.html"))}
    broken, external = [], defaultdict(set)
    for path, page in pages.items():
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith("//"):
                if parts.scheme not in ("javascript", "data"):
                    external[link].add(str(path.relative_to(root)))
                continue
            target = path if not parts.path else (path.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            where = f"{path.relative_to(root)}: {link}"
            if not target.exists():
                broken.append(f"{where} (no file {target})")
                continue
            if parts.fragment and target.suffix == ".html":
                anchors = pages[target].ids if target in pages else parse(target).ids
                if unquote(parts.fragment) not in anchors:
                    broken.append(f"{where} (no id {parts.fragment!r} in {target.relative_to(root)})")
    return broken, external


def main(argv) -> int:
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    root = Path(argv[1]).resolve()
    if not (root / "index.html").exists():
        print(f"{root}: no index.html (build the site first)", file=sys.stderr)
        return 2
    broken, external = check(root)
    print(f"external links (not fetched): {len(external)}")
    for link in sorted(external):
        print(f"  {link}  ({len(external[link])} pages)")
    pages = sum(1 for _ in root.rglob("*.html"))
    if broken:
        print(f"broken internal links: {len(broken)}")
        for line in broken:
            print(f"  {line}")
        return 1
    print(f"internal links: all resolve ({pages} pages)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
