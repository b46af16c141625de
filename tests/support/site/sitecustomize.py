# Loaded by child Python processes of the tests (PYTHONPATH): installs the network guard before any import.
import os
import sys

if os.environ.get("TWINCHAT_NETGUARD_LOG"):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", ".."))
    from tests.support import netguard

    netguard.install()
    with open(os.environ["TWINCHAT_NETGUARD_LOG"] + ".active", "a", encoding="utf-8") as handle:
        handle.write(f"{os.getpid()}\n")
