"""Speed and scale benchmarks: ../shared/BENCHMARKS.md section 4, one module per measurement.

``twinchat bench NAME --out FILE.json`` runs one (``--quick`` for the small size a test runs); each writes its
figures with the configuration, the machine, the date, the commit and the reference measured in the same
run (speeds are quoted as ratios against it: machines differ, ratios travel better). benchmarks/RESULTS.md
keeps the figures measured before and after the work on them.
"""

from __future__ import annotations

# name: module. Each module has NAME, VERSION, FULL and QUICK sizes and ``run(size, progress=...)``, and
# imports its heavy libraries inside ``run``, so listing them stays cheap.
BENCHMARKS = {
    "ingest": "benchmarks.ingest",
    "retrieval": "benchmarks.retrieval",
    "answer": "benchmarks.answer",
    "survey": "benchmarks.survey",
    "startup": "benchmarks.startup",
}
