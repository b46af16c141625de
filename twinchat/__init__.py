"""twinchat: conversational digital twins of customers, grounded in each customer's own history.

Importing this package is cheap: backends (torch, Chroma, llama.cpp, OpenAI) load lazily in adapters.
"""

from __future__ import annotations

import os

__version__ = "0.1.0"

# twinchat never phones home: switch off the telemetry of the libraries it drives, unless a user chose
# otherwise before importing us.
for _name, _value in {
    "ANONYMIZED_TELEMETRY": "False",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "RAGAS_DO_NOT_TRACK": "true",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # transformers' per-load "Loading weights" progress bars are noise in a CLI.
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}.items():
    os.environ.setdefault(_name, _value)
