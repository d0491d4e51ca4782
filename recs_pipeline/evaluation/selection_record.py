"""The record of a model selection: its trials and the champion, as the ``model_selection``
artifact stores them and the run page and the terminal tell them. Plain data, no torch: the
code location reads it where no step runs (:mod:`recs_pipeline.evaluation.selection` searches)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Trial:
    """One evaluated candidate: its model, settings and validation scores."""

    number: int
    model: str
    params: dict
    recall: float | None
    ndcg: float | None
    state: str  # COMPLETE, PRUNED or FAIL
    seconds: float
    error: str | None = None
    worker: str | None = None  # host:pid of the process that ran it


@dataclasses.dataclass(frozen=True)
class Selection:
    """The outcome of a search: the champion and every trial, best first."""

    model: str
    params: dict
    recall: float
    ndcg: float
    k: int
    validation_users: int
    trials: list[Trial]
    seconds: float
    fallback: str | None = None  # why no search ran, when none did

    def leaderboard(self) -> list[Trial]:
        """The best completed trial of each model, best first."""
        best: dict[str, Trial] = {}
        for trial in self.trials:
            if trial.state == "COMPLETE" and (
                trial.model not in best or trial.recall > best[trial.model].recall
            ):
                best[trial.model] = trial
        return sorted(best.values(), key=lambda t: -t.recall)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(data: dict) -> Selection:
        trials = [Trial(**t) for t in data.get("trials", [])]
        return Selection(**{**data, "trials": trials})


def champion_line(selection: Selection, reused_from: str | None = None) -> str:
    """One sentence: which scorer was chosen and why."""
    if selection.fallback:
        return f"model selection: {selection.fallback}"
    board = selection.leaderboard()
    runner = next((t for t in board if t.model != selection.model), None)
    why = (
        f"validation Recall@{selection.k} {selection.recall:.4f}"
        + (f" vs {runner.model}'s {runner.recall:.4f}" if runner else "")
        + f", best of {len(selection.trials)} trials on {selection.validation_users} users"
    )
    source = f" (the choice of {reused_from})" if reused_from else ""
    return f"model selection: {selection.model} chosen{source}: {why}"
