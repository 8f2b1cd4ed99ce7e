"""``python -m ringfence.cli`` — the same as the ``ringfence`` command."""

from ringfence.cli.main import main

main()
