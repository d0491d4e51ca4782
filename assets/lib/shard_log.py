"""What the sharded steps (hard_negatives, model_evaluation, recommendations) tell the UI about
their shards: one log line per shard as it completes, a summary line, and metadata naming the
engine with a small table of the shards (users, seconds, worker)."""

import dagster as dg

from recs_pipeline.infra.engine import Engine, ShardRun

SHARD_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("shard", "int", description="1-based, in user order"),
        dg.TableColumn("users", "int", description="users the shard ranked"),
        dg.TableColumn("seconds", "float", description="compute time inside the shard"),
        dg.TableColumn("worker", "string", description="host:pid that ran it"),
    ]
)


class ShardLog:
    """The ``on_shard`` callback of a sharded core function: logs each shard as it completes
    and keeps the runs for the step's metadata."""

    def __init__(self, context: dg.AssetExecutionContext, engine: Engine, what: str) -> None:
        self.context, self.engine, self.what = context, engine, what
        self.runs: list[ShardRun] = []

    def __call__(self, run: ShardRun) -> None:
        self.runs.append(run)
        self.context.log.info(
            f"{self.what}: shard {run.shard + 1} done, {run.users:,} users in"
            f" {run.seconds:.2f}s on {run.worker}"
        )

    def summary(self) -> str:
        slowest = max((run.seconds for run in self.runs), default=0.0)
        return (
            f"{self.what}: {len(self.runs)} shard(s) on engine {self.engine.kind}"
            f" ({self.engine.workers} worker(s)), {sum(r.users for r in self.runs):,} users,"
            f" slowest shard {slowest:.2f}s"
        )

    def metadata(self) -> dict:
        runs = sorted(self.runs, key=lambda run: run.shard)
        self.context.log.info(self.summary())
        return {
            "engine": self.engine.kind,
            **({"engine_address": self.engine.address} if self.engine.address else {}),
            "engine_workers": self.engine.workers,
            "shards": len(runs),
            "shard_seconds_max": round(max((r.seconds for r in runs), default=0.0), 3),
            "shard_runs": dg.MetadataValue.table(
                [
                    dg.TableRecord(
                        {
                            "shard": r.shard + 1,
                            "users": r.users,
                            "seconds": round(r.seconds, 3),
                            "worker": r.worker,
                        }
                    )
                    for r in runs
                ],
                schema=SHARD_SCHEMA,
            ),
        }
