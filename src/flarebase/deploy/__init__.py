"""`flarebase deploy`: what wrangler deploys to Cloudflare, one module per target.

    python_worker   flarebase itself as a Python Worker (`--target python-worker`)
    bridge          the bridge Worker with the project's bindings (`--target bridge`)
    toml            reading the project's config as data, writing wrangler.toml

Each target has a `plan_*` function (the files, nothing written) and a `deploy_*`
function (write them, run wrangler or pywrangler); the CLI is a thin layer over both.
"""

from .bridge import BridgePlan, deploy_bridge, plan_bridge
from .python_worker import (
    MIN_COMPATIBILITY_DATE,
    NOT_IN_WORKER,
    WORKER_DEPENDENCIES,
    PythonWorkerPlan,
    deploy_python_worker,
    entry_source,
    plan_python_worker,
    pyproject_source,
    worker_config,
    write_plan,
)
from .toml import to_toml

__all__ = [
    "MIN_COMPATIBILITY_DATE",
    "NOT_IN_WORKER",
    "WORKER_DEPENDENCIES",
    "BridgePlan",
    "PythonWorkerPlan",
    "deploy_bridge",
    "deploy_python_worker",
    "entry_source",
    "plan_bridge",
    "plan_python_worker",
    "pyproject_source",
    "to_toml",
    "worker_config",
    "write_plan",
]
