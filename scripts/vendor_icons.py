"""Build static/vendor/lucide/icons.svg, an SVG sprite of the Lucide icons the desk uses.

Source: the npm package lucide-static (ISC licence, copied beside the sprite). To refresh:
    cd /tmp && npm pack lucide-static@1.62.0 && tar xzf lucide-static-1.62.0.tgz
    python scripts/vendor_icons.py /tmp/package
Templates use `{% icon "name" %}` (tickets/templatetags/desk.py); add a name to ICONS first.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

ICONS = """mail message-square message-circle message-circle-more send globe code pencil messages-square
phone phone-incoming phone-missed phone-call inbox user users bell search check x chevron-down sun moon log-out
settings chart-column book-open paperclip lock sticky-note git-merge split undo-2 tag clock triangle-alert
circle-check plus trash-2 external-link link file-warning shield list-checks star eye keyboard menu arrow-left
refresh-cw circle-dot circle-pause circle-x inbox user-plus bookmark at-sign""".split()

OUT = Path(__file__).resolve().parent.parent / "static" / "vendor" / "lucide"


def main(package: Path) -> None:
    symbols = []
    for name in dict.fromkeys(ICONS):
        svg = (package / "icons" / f"{name}.svg").read_text()
        inner = re.search(r"<svg[^>]*>(.*)</svg>", svg, re.S).group(1)
        inner = re.sub(r"\s+", " ", inner).strip()
        symbols.append(
            f'<symbol id="{name}" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">{inner}</symbol>'
        )
    OUT.mkdir(parents=True, exist_ok=True)
    sprite = (
        "<!-- Lucide icons (lucide-static 1.62.0, ISC licence: LICENSE beside this file) -->\n"
        '<svg xmlns="http://www.w3.org/2000/svg" fill="none" stroke="currentColor" stroke-width="2" '
        'stroke-linecap="round" stroke-linejoin="round">\n' + "\n".join(symbols) + "\n</svg>\n"
    )
    (OUT / "icons.svg").write_text(sprite)
    shutil.copy(package / "LICENSE", OUT / "LICENSE")
    print(f"{len(symbols)} icons → {OUT / 'icons.svg'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
