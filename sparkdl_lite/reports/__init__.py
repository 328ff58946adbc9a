"""Tuning runs and their reports, as the command line makes them.

``experiments`` (a tuning run with its default-vs-best comparison, labeling a folder of images),
``tuning`` (the results table, sensitivity plot and report of a tuning model) and ``halving``
(the rung tables and plot of a successive-halving search).
"""
