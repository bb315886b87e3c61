"""``python -m hwsurrogate.cli``: the ``hws`` command."""

from hwsurrogate.cli import main

main()
