"""One module per third-party library whose private surface bugless_core touches.

Each names the private items it relies on, offers functions (or base
classes) the rest of the package uses instead of spelling them, and checks
on import that the installed version still has them, so that an upgrade
which moves one fails at start-up with a message naming the attribute and
the version (and in ``tests/test_compat.py``) rather than in a request.
"""
