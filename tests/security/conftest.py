import os
import sys

# shared helpers: sbx.py (here) and wasm_modules.py (tests/drivers)
_here = os.path.dirname(__file__)
for _p in (_here, os.path.join(_here, "..", "drivers")):
    if _p not in sys.path:
        sys.path.insert(0, _p)
