"""Scripts behind the `trl-passk` sub-commands (`grpo`, `eval`, `diagnose`): each module exposes
`make_parser(subparsers=None, prog=None)` (a `TrlParser`) and `main(argv=None) -> int`, as TRL's `trl/scripts/*.py`
do. What they share (dataset sources, model loading, rewards, recipe files) is in `common`."""
