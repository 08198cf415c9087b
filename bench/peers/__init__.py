"""Trac, Roundup and Redmine beside bugless on one data set: ``python -m bench.peers``.

See the "Peers" section of ``bench/README.md`` for what is installed, how each
tracker is served and loaded, and the recorded figures.
"""
