"""What any background run needs, whatever it trains: the thread and registry (runner), pause /
resume / stop requests (control), the event log (events), the run folder and its atomic writes
(rundir), and pictures of it (curve, grid). Knows nothing of models or data."""
