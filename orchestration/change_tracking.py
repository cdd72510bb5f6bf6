"""The ``change_tracking`` job: review, install or remove a source's generated change capture.

``plan`` changes nothing and records the DDL as run metadata, so it can be read (and handed to a
DBA) in the UI; ``apply`` and ``remove`` run it as ``TRACKING_DATABASE_URL`` when that is set (a
role that may create triggers on the tracked tables), else as the source's role.
"""

from typing import Any, Literal

from dagster import Config, Failure, JobDefinition, MetadataValue, OpExecutionContext, Output, job, op

from etl_core.capture.triggers import TrackingInUse
from etl_core.errors import ConfigError, SourceUnavailable
from etl_core.operations.steps import tracking_action
from etl_core.settings import make_engine
from orchestration.spec import SourceSpec


class TrackingConfig(Config):
    action: Literal["plan", "apply", "remove", "status"] = "plan"
    force: bool = False
    """remove: drop the change log even while it holds entries a version may not have read."""


def build_tracking_job(spec: SourceSpec) -> JobDefinition:
    source, tracking = spec.source, spec.source.tracking
    assert tracking is not None

    @op(
        name=spec.names.op("tracking"),
        required_resource_keys={spec.resource_key},
        description=f"Plan, apply or remove the generated change capture of source `{source.name}`.",
    )
    def change_tracking(context: OpExecutionContext, config: TrackingConfig) -> Output[None]:
        plan = tracking.plan()
        metadata: dict[str, Any] = {"ddl": MetadataValue.md(f"```sql\n{plan}```"), "action": config.action}
        if config.action != "plan":
            settings = spec.engine(context.resources).settings()
            engine = make_engine(settings.tracking_url or settings.source_url)
            try:
                variable = "TRACKING_DATABASE_URL" if settings.tracking_url else "SOURCE_DATABASE_URL"
                outcome = tracking_action(
                    source, engine, config.action, force=config.force, variable=variable
                )
            except (TrackingInUse, ConfigError, SourceUnavailable) as exc:
                raise Failure(str(exc)) from None
            finally:
                engine.dispose()
            metadata["installed"] = outcome["installed"]
            metadata["disabled_triggers"] = MetadataValue.json(outcome["disabled_triggers"])
            for gap in outcome["disabled_triggers"]:
                context.log.warning(f"trigger {gap}: changes it should log are lost (apply again)")
            context.log.info(
                f"tracking of {source.name!r}: {config.action} done, installed={metadata['installed']}"
            )
        return Output(None, metadata=metadata)

    @job(name=spec.names.job("change_tracking"), description=change_tracking.description)
    def change_tracking_job() -> None:
        change_tracking()

    return change_tracking_job
