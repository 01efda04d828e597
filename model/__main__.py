"""``python -m model {train,export,embed} ...``: one entry point for the model commands."""

from __future__ import annotations

import sys

USAGE = """usage: python -m model COMMAND [ARGS]

commands:
  train    train the XLM model (python -m model train --help)
  export   checkpoint -> transformers XLMWithLMHeadModel folder with the tokenizer
  embed    sentence vectors from one layer: python -m model embed models/{run} --lang de --layer 6 < lines.txt
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    # Imported lazily: each command pulls in only what it needs (train comes with its own heavy imports).
    if command == "train":
        from model.train import main as run
    elif command == "export":
        from model.export import main as run
    elif command == "embed":
        from model.embed import main as run
    else:
        print(f"python -m model: unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
        return 2
    return run(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
