"""Trac, Roundup and Redmine beside bugless on one data set: ``python -m bench.peers``.

The current figures are in ``bench/README.md``; what is installed, how each
tracker is served and loaded, and the earlier runs are in ``bench/JOURNAL.md``.
"""
