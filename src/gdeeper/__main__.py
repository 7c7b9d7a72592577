"""`python -m gdeeper` runs the `gdeeper` command."""

from gdeeper.runner.control import signals

signals.install(defer=True)  # before the CLI imports (~1 s): Ctrl-C and SIGTERM are ours

from gdeeper.cli import main  # noqa: E402

main()
