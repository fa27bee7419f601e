"""`trl-passk` console script: a small dispatcher over the sub-commands, in the style of TRL's `trl` CLI.

```bash
trl-passk grpo --config recipes/smoke/config_hybrid_cpu.yaml        # train (trl_passk.scripts.grpo)
trl-passk grpo --config <recipe.yaml> --dry-run                      # validate a recipe, load nothing
trl-passk eval --help                                                # pass@k evaluation (trl_passk.scripts.eval)
trl-passk diagnose --help                                            # prompt interference (trl_passk.scripts.diagnose)
accelerate launch --config_file recipes/accelerate_configs/ddp.yaml -m trl_passk.cli grpo --config <recipe.yaml>
```

Each sub-command lives in its own module under `trl_passk/scripts/` exposing `make_parser(subparsers=None, prog=None)`
(a `TrlParser`) and `main(argv=None) -> int`; the modules are imported only when their command runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS = {
    "grpo": ("trl_passk.scripts.grpo", "Train with PassKGRPOTrainer from a YAML recipe (like `trl grpo`)"),
    "eval": ("trl_passk.scripts.eval", "Evaluate pass@k of a model on a dataset (n samples per problem)"),
    "diagnose": (
        "trl_passk.scripts.diagnose",
        "Score a dataset's prompts for pass@k/pass@1 gradient interference (Barakat et al. 2026)",
    ),
}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trl-passk",
        description="Pass@k objectives for TRL's GRPOTrainer. Run `trl-passk <command> --help` for a command's options.",
        allow_abbrev=False,
    )
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    for name, (_, help_text) in COMMANDS.items():
        subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def _exit_code(error: SystemExit) -> int:
    code = error.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Run `trl-passk`; returns the exit status (also when a parser exits, e.g. after `--help`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser()
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    command = argv[0]
    if command not in COMMANDS:
        parser.print_usage(sys.stderr)
        print(f"trl-passk: error: unknown command {command!r}; choose one of {', '.join(COMMANDS)}.", file=sys.stderr)
        return 2
    module_name = COMMANDS[command][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        print(f"trl-passk {command}: not available in this installation ({module_name} is missing).", file=sys.stderr)
        return 2
    try:
        return int(module.main(argv[1:]) or 0)
    except SystemExit as error:
        return _exit_code(error)


if __name__ == "__main__":  # `accelerate launch -m trl_passk.cli grpo ...`
    sys.exit(main())
