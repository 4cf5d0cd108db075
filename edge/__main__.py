try:
    from edge.cli import main
except KeyboardInterrupt:  # Ctrl-C while Python loads the CLI: one line, as edge.cli.main does
    import sys

    print("edge: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(main())
