"""Writes the README's ```python blocks, in order, as one module.

    python .ci/readme_tour.py README.md OUT.py

.ci/typecheck runs ``mypy --strict`` on OUT.py: the tour is what users copy,
so it has to type-check as it stands. Exits 1 when README.md has no block
(a renamed fence would otherwise check nothing and pass).
"""

import re
import sys

FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def blocks(text: str) -> list[str]:
    return [m.group(1) for m in FENCE.finditer(text)]


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        found = blocks(f.read())
    if not found:
        print(f"readme_tour: no ```python block in {argv[1]}", file=sys.stderr)
        return 1
    with open(argv[2], "w", encoding="utf-8") as out:
        for i, block in enumerate(found, 1):
            out.write(f"# ---- README.md, python block {i}\n{block}\n")
    print(f"readme_tour: {len(found)} python blocks from {argv[1]} -> {argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
