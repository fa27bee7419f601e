"""Scripts behind the `trl-passk` sub-commands: each module exposes `make_parser(subparsers=None, prog=None)` and
`main(argv=None) -> int`, as TRL's `trl/scripts/*.py` do."""
