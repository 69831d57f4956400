"""Launch the studio: `python launch.py [flags]` is the same as `studio [flags]` (see `--help`)."""

from studio.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
