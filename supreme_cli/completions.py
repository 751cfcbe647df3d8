"""Generate the shell completion scripts in completions/ (`make completions`).

The scripts call back into `supreme` at completion time, so commands and options added later
complete without regenerating; a test still keeps the committed files equal to the output.
"""

from __future__ import annotations

import sys
from pathlib import Path

SHELLS = {"bash": "supreme.bash", "zsh": "_supreme", "fish": "supreme.fish"}


def script(shell: str) -> str:
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name="supreme", complete_var="_SUPREME_COMPLETE",
                                 shell=shell).rstrip("\n") + "\n"


def write_all(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for shell, name in SHELLS.items():
        path = folder / name
        path.write_text(script(shell), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "completions")):
        sys.stdout.write(f"wrote {path}\n")
