"""Entry point of the cluster's driver and task processes, run as a file:

    python .../runtime/_launch.py driver <cluster_dir> <config.json>
    python .../runtime/_launch.py task <invocation.json>

Run as a file rather than `-m dbx_assets...` so the process imports only the runtime
package: the parent packages (`dbx_assets`, which may grow Dagster imports) are stubbed,
keeping task start lean and independent of the rest of the code location.
"""

import sys
import types
from pathlib import Path

_here = Path(__file__).resolve().parent
# sys.path[0] is this directory when run as a file; drop it so our module names
# (paths, notebook...) never shadow a user's imports.
if sys.path and Path(sys.path[0] or ".").resolve() == _here:
    del sys.path[0]
_root = _here.parents[1]  # .../dbx_assets
for _name, _dir in (("dbx_assets", _root), ("dbx_assets.local_workspace", _root / "local_workspace")):
    if _name not in sys.modules:
        _mod = types.ModuleType(_name)
        _mod.__path__ = [str(_dir)]
        sys.modules[_name] = _mod
if str(_root.parent) not in sys.path:
    sys.path.append(str(_root.parent))

if __name__ == "__main__":
    if sys.argv[1] == "driver":
        from dbx_assets.local_workspace.runtime.driver import main as driver_main

        driver_main(sys.argv[2:])
    elif sys.argv[1] == "task":
        from dbx_assets.local_workspace.runtime.task_process import main as task_main

        task_main(sys.argv[2:])
    else:
        raise SystemExit(f"unknown role {sys.argv[1]!r}: expected 'driver' or 'task'")
