"""Files handed to the browser: survey results and a customer's export.

They are written straight into Gradio's cache, so there is one copy of each: Gradio serves it from there and
deletes it after ``MAX_AGE_S`` (``gr.Blocks(delete_cache=...)``). The portal removes a customer's exports at
once when they erase their twin (every export of that twin, from any browser session), so that nothing about
an erased customer stays on disk.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

MAX_AGE_S = 600
DELETE_CACHE = (60, MAX_AGE_S)  # every minute, delete the files handed out more than ten minutes ago


def write_download(name: str, text: str) -> str:
    """Write ``text`` to a file called ``name`` in a new private folder of Gradio's cache; return its path."""
    cache = Path(get_upload_folder())
    cache.mkdir(parents=True, exist_ok=True)
    _prune(cache, time.time() - MAX_AGE_S)
    path = Path(tempfile.mkdtemp(prefix="twinchat-ui-", dir=cache)) / name  # the folder is mode 0700
    path.write_text(text, encoding="utf-8")
    return str(path)


def export_name(twin_id: str) -> str:
    """A fresh name for a customer's export; every name of one twin shares a prefix (see ``remove_exports``)."""
    return f"{_export_prefix(twin_id)}{secrets.token_hex(4)}.json"


def remove_exports(twin_id: str, *, blocks: gr.Blocks | None = None) -> int:
    """Delete every export of this twin from Gradio's cache, and forget those ``blocks`` handed out.

    Returns how many files were removed.
    """
    prefix = _export_prefix(twin_id)
    removed = 0
    for files in blocks.temp_file_sets if blocks is not None else []:
        for file in [f for f in files if Path(f).name.startswith(prefix)]:
            Path(file).unlink(missing_ok=True)
            files.discard(file)
            removed += 1
    for path in Path(get_upload_folder()).glob(f"twinchat-ui-*/{prefix}*"):
        shutil.rmtree(path.parent, ignore_errors=True)
        removed += 1
    return removed


def _export_prefix(twin_id: str) -> str:
    # A digest, not the id: a file name should not carry a customer id.
    return f"twinchat-export-{hashlib.sha256(twin_id.encode()).hexdigest()[:12]}-"


def _prune(cache: Path, before: float) -> None:
    """Remove the folders of downloads made before this time (Gradio deletes the files, not our folders)."""
    for folder in cache.glob("twinchat-ui-*"):
        try:
            if folder.stat().st_mtime < before:
                shutil.rmtree(folder, ignore_errors=True)
        except FileNotFoundError:
            continue
