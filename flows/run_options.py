"""What a flow run created through the Prefect API may change: an allow-list of options, paths under the folder.

A deployment's own parameters (prefect.yaml) and the worker's environment are the operator's, and
trusted. A run created through the API (the dashboard's custom run, `run_deployment`, a script
that reaches the server) may change only knobs that cannot reach outside the deployment: the
search and quality settings, batching and retries, and paths (db, out, inputs) that resolve under
the deployment's folder. Anything else it changes refuses the whole run in one line, before the
store is opened or a model loads.

`admit` is the decision, pure but for resolving symlinks; `run_settings` looks up the deployment at
the edge. Runs started by the CLI (a Settings object, no deployment) and direct flow calls are not
restricted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reer.settings import Settings

# Settings fields an API-created run may change: they tune the search and its checks, not where
# data comes from or goes, which model or server runs, or how much of the machine it takes.
FREE_OPTIONS: tuple[str, ...] = (
    "search",
    "quality",
    "dtype",
    "generation_rows",
    "score_batch_tokens",
    "feeding",
    "store_seconds",
    "model_retries",
    "retry_backoff_seconds",
    "snapshot_seconds",
    "store_wait_seconds",
)
# Settings fields an API-created run may change to a path under the deployment's folder.
PATH_OPTIONS: tuple[str, ...] = ("db", "out")
# Flow parameters beside `options` an API-created run may change (`inputs`: under the folder).
FREE_PARAMETERS: tuple[str, ...] = ("limit", "from_store", "use_model", "run_id")
PATH_PARAMETERS: tuple[str, ...] = ("inputs",)
GLOB_CHARACTERS = "*?["


@dataclass(frozen=True)
class Refused:
    """Why a run created through the API may not run as asked: the names it changed and the reason."""

    names: tuple[str, ...]
    reason: str

    def line(self) -> str:
        return f"{', '.join(self.names)}: {self.reason}"


class RunRefused(ValueError):
    """A run created through the API changed what only its deployment may set."""


class QuietRefusal(logging.Filter):
    """A refusal is logged as its line: Prefect logs a flow's exception up to three times, each with a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], RunRefused):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_refusals() -> None:
    """Keep tracebacks of RunRefused out of the flow-run and engine logs (the worker's and the dashboard's)."""
    for name in ("prefect.flow_runs", "prefect.engine"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, QuietRefusal) for f in logger.filters):
            logger.addFilter(QuietRefusal())


def allowed_summary() -> str:
    """What an API-created run may change, in a few words (the end of every refusal)."""
    options = ", ".join(f"{name}.*" if name in ("search", "quality") else name for name in FREE_OPTIONS)
    return f"it may change {', '.join(FREE_PARAMETERS)}, options {options}, and inputs, db, out under the folder"


def path_problem(path: str | Path, folder: Path) -> str | None:
    """Why `path` (a file, a folder or a glob pattern, relative to `folder`) is not under `folder`; None if it is."""
    text = str(path)
    if text.startswith("~"):
        return f"{text!r} starts with '~', which is not expanded; name a path under {folder}"
    parts = Path(text).parts
    fixed = next((i for i, part in enumerate(parts) if any(c in part for c in GLOB_CHARACTERS)), len(parts))
    if ".." in parts[fixed:]:
        return f"{text!r} climbs out of a pattern with '..'"
    root = folder.resolve()
    try:
        # The part before the first wildcard, with '..' and symlinks resolved, is where matching starts.
        target = root.joinpath(*parts[:fixed]).resolve()
    except (OSError, ValueError) as error:
        return f"{text!r} is not a usable path ({error.__class__.__name__})"
    if not target.is_relative_to(root):
        return f"{text!r} resolves to {target}, outside the deployment's folder {root}"
    return None


def admit(
    parameters: Mapping[str, Any],
    declared: Mapping[str, Any] | None,
    folder: Path,
    job_env: Mapping[str, Any] | None = None,
) -> Settings | Refused:
    """The Settings a run may use, or why it is refused.

    `parameters` are the run's flow parameters (with `options`), `declared` its deployment's own
    parameters (None: not a deployment run, nothing is restricted), `folder` the deployment's
    working directory, `job_env` the environment the run's job variables add to the deployment's.
    """
    options = parameters.get("options")
    if declared is None:
        return Settings.of(options)
    declared_options = declared.get("options") or {}
    reer_env = sorted(name for name in job_env or {} if name.upper().startswith("REER_"))
    if reer_env:
        return Refused(
            tuple(f"job variable env.{name}" for name in reer_env),
            "a run created through the API may not set reer's settings through its environment; "
            "only the deployment's own job variables may",
        )
    # Keys that are no setting are refused rather than ignored: pydantic-settings reads some
    # (_env_file, _cli_parse_args, ...) as instructions, and field names match case-insensitively.
    if isinstance(options, Mapping):
        unknown = [k for k in options if k not in Settings.model_fields and options[k] != declared_options.get(k)]
        if unknown:
            return Refused(tuple(f"options.{k}" for k in unknown), f"not a reer setting; {allowed_summary()}")
    for name, value in parameters.items():
        if name == "options" or name in FREE_PARAMETERS or value == declared.get(name):
            continue
        if name not in PATH_PARAMETERS:
            return Refused((name,), f"only the deployment's own parameters may change it; {allowed_summary()}")
        trusted = declared.get(name) or []
        for item in value or []:
            problem = None if item in trusted else path_problem(item, folder)
            if problem:
                return Refused((name,), f"{problem}; only the deployment's own parameters may name paths outside it")
    settings, base = Settings.of(options), Settings.of(declared_options)
    # Compared as built Settings, so an alias, a nested key or a dropped declared value counts as a change.
    changed = [name for name in Settings.model_fields if getattr(settings, name) != getattr(base, name)]
    deployments_own = [name for name in changed if name not in FREE_OPTIONS and name not in PATH_OPTIONS]
    if deployments_own:
        return Refused(
            tuple(f"options.{name}" for name in deployments_own),
            "only the deployment's own parameters may set these (a run's options replace the deployment's "
            f"whole options, so repeat the deployment's values); {allowed_summary()}",
        )
    for name in changed:
        problem = path_problem(getattr(settings, name), folder) if name in PATH_OPTIONS else None
        if problem:
            return Refused(
                (f"options.{name}",), f"{problem}; only the deployment's own parameters may name paths outside it"
            )
    return settings


def deployment_context() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | None:
    """This flow run's parameters, its deployment's parameters and the env its job variables add; None outside one."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    # The run's own deployment id: a nested flow's context would name its parent's deployment.
    deployment_id = context.flow_run.deployment_id if context and context.flow_run else None
    if deployment_id is None:
        return None
    with get_client(sync_client=True) as client:
        # prefect.runtime.deployment.parameters are this run's, despite the name: read the deployment's own.
        deployment = client.read_deployment(deployment_id)
    declared_env = (deployment.job_variables or {}).get("env") or {}
    run_env = (context.flow_run.job_variables or {}).get("env") or {}
    added = {k: v for k, v in run_env.items() if declared_env.get(k) != v}
    # The run's stored parameters (the deployment's, updated by the run's), not prefect.runtime.flow_run's,
    # which add the flow's defaults: a default is code, not something the run asked for.
    return dict(context.flow_run.parameters or {}), dict(deployment.parameters or {}), added


def run_settings(options: Settings | Mapping[str, Any] | None) -> Settings:
    """The Settings a flow runs with; raises RunRefused when a run created through the API changed too much."""
    found = deployment_context()
    if found is None:
        return Settings.of(options)
    parameters, declared, added = found
    decision = admit({**parameters, "options": options}, declared, Path.cwd(), added)
    if isinstance(decision, Refused):
        quiet_refusals()
        raise RunRefused(decision.line()) from None
    return decision
