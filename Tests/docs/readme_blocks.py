#!/usr/bin/env python3
"""The command blocks of a Markdown file that are fenced as ```sh runnable.

    readme_blocks.py FILE OUTDIR

writes each such block to OUTDIR/NN-lineL.sh (L: the line of FILE the block
starts on) and prints the paths in order. Tests/e2e/cases/readme_examples.sh
runs them. Fences may be indented (inside list items); a fence is closed by a
fence of the same character at least as long, as in CommonMark. An unclosed
fence is an error, so a broken README cannot hide its blocks from the test.
"""
import os
import re
import sys

FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")


def runnable_blocks(text):
    """[(line number of the opening fence, block text)] of the runnable blocks."""
    blocks, open_fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if open_fence is None:
            if m:
                indent, fence, info = m.groups()
                open_fence = (number, fence, len(indent), info.split() == ["sh", "runnable"], [])
            continue
        start, fence, indent, runnable, body = open_fence
        if m and m.group(2)[0] == fence[0] and len(m.group(2)) >= len(fence) and not m.group(3).strip():
            if runnable:
                blocks.append((start, "\n".join(body) + "\n"))
            open_fence = None
            continue
        # Strip the fence's own indentation (a block inside a list item).
        body.append(line[indent:] if line[:indent].strip() == "" else line)
    if open_fence is not None:
        raise SystemExit(f"readme_blocks: the fence opened on line {open_fence[0]} is never closed")
    return blocks


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    path, outdir = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as f:
        blocks = runnable_blocks(f.read())
    os.makedirs(outdir, exist_ok=True)
    for i, (line, body) in enumerate(blocks, 1):
        out = os.path.join(outdir, f"{i:02d}-line{line}.sh")
        with open(out, "w", encoding="utf-8") as f:
            f.write(body)
        print(out)


if __name__ == "__main__":
    main()
