"""Flow-run names and tags that make runs easy to find in the dashboard: source, model, config hash."""

from __future__ import annotations

from pathlib import Path

from prefect.runtime import flow_run


def source_label(inputs: list[str] | None, from_store: bool = False) -> str:
    """What a run reads, in a word: the first file's name (+N more), 'pending' or 'sample'."""
    if from_store:
        return "pending"
    if not inputs:
        return "sample"
    first = Path(inputs[0]).name or str(inputs[0])
    return first if len(inputs) == 1 else f"{first}+{len(inputs) - 1}"


def model_label(model: str | None) -> str:
    """A model's short name: a folder's last part, or the shipped model's name."""
    return Path(model).name if model else "none"


def run_settings(parameters: dict):
    """The Settings a flow run will use, or None when its options are invalid or refused (the flow reports that)."""
    from reer.flows import run_options

    try:
        return run_options.run_settings(parameters.get("options"))
    except Exception:  # the run name must never be why a run fails; the flow body raises the real error
        return None


def synthesize_run_name() -> str:
    """synthesize-<source>-<config hash>, from the run's parameters."""
    parameters = flow_run.parameters or {}
    settings = run_settings(parameters)
    source = source_label(parameters.get("inputs"), bool(parameters.get("from_store")))
    return f"synthesize-{source}-{settings.search.fingerprint()[:8]}" if settings else f"synthesize-{source}"


def ingest_run_name() -> str:
    """ingest-<source>, from the run's parameters."""
    return f"ingest-{source_label((flow_run.parameters or {}).get('inputs'))}"


def publish_run_name() -> str:
    """publish-<run id> (or publish-latest)."""
    return f"publish-{(flow_run.parameters or {}).get('run_id') or 'latest'}"


def run_tags(
    source: str, generator: str | None = None, scorer: str | None = None, config_hash: str | None = None
) -> list[str]:
    """Tags as key:value words, so the dashboard's tag filter finds runs by source, model or config."""
    tags = ["reer", f"source:{source}"]
    if generator:
        tags.append(f"model:{model_label(generator)}")
    if scorer and scorer != generator:
        tags.append(f"scorer:{model_label(scorer)}")
    if config_hash:
        tags.append(f"config:{config_hash}")
    return tags


def tag_flow_run(tags: list[str]) -> None:
    """Add tags to the running flow run (keeping the deployment's); nothing outside a flow run."""
    from prefect.client.orchestration import get_client
    from prefect.logging import get_run_logger

    run_id = flow_run.id
    if run_id is None:
        return
    try:
        with get_client(sync_client=True) as client:
            current = client.read_flow_run(run_id).tags or []
            client.update_flow_run(run_id, tags=list(dict.fromkeys([*current, *tags])))
    except Exception as error:  # tags only help finding the run: never worth failing a search over
        get_run_logger().warning(f"could not tag the flow run: {error.__class__.__name__}: {error}")


def flow_run_url() -> str | None:
    """The running flow run's dashboard page, when runs go to a Prefect server (not a temporary one)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    if flow_run.id is None or not PREFECT_API_URL.value() or not PREFECT_UI_URL.value():
        return None
    return f"{PREFECT_UI_URL.value().rstrip('/')}/runs/flow-run/{flow_run.id}"
