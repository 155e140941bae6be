"""Run the README's Python snippets (the ```python blocks) as a user would: `python readme_snippets.py README.md`.

CI runs it from a temporary folder with the non-editable wheel install; the tests run it from a temporary folder
with the development install. `--short` caps control loops at 20 steps.
"""

import re
import sys
from pathlib import Path


def snippets(readme: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)


def main(argv: list[str]) -> None:
    readme, short = Path(argv[0]), "--short" in argv
    blocks = snippets(readme)
    assert blocks, f"no python snippets in {readme}"
    for i, code in enumerate(blocks):
        if short:
            code = re.sub(r"range\((\d+)\)", lambda m: f"range({min(int(m.group(1)), 20)})", code)
        exec(compile(code, f"{readme.name}[snippet {i + 1}]", "exec"), {"__name__": "__main__"})
        print(f"snippet {i + 1} of {len(blocks)}: ok")


if __name__ == "__main__":
    main(sys.argv[1:])
