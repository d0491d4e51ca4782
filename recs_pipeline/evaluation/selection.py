"""Model selection: which scorer serves a day, with which settings, chosen on the team's own log.

The protocol, so that the test period is never read:

1. **A validation slice from the train window alone.** For up to ``val_users`` random users
   with two or more train edges, their latest train edges by the log's own timestamps (a
   ``val_fraction`` of them) are held out: the slice :func:`recs_pipeline.training.train_model` validates on with the same seed, so a
   trained candidate's per-epoch validation and a training-free candidate's score are on the
   same edges. A split without timestamps (every edge at one time, the LightGCN files) holds out
   a seeded random edge per user instead of the file's last one.
2. **A search.** Every candidate (the registered scorers; each declares its ``search_space``
   with its model's settings) is first tried at its defaults, then Optuna's TPE sampler
   (seeded) proposes a model and settings per trial until the time budget is spent. A trained trial reports its
   validation Recall after every check and is pruned when it trails (median rule). A trial that
   fails (out of memory, say) is recorded as failed and the search goes on. The expensive part
   of a filter (its item graph and eigenbasis) is computed once per study and re-weighted per
   trial. The study lives in a storage (:func:`study_storage`: the shared deployment's
   PostgreSQL database, else a journal file beside the selection artifact): a search killed
   part-way resumes where it stopped. Where that storage is a database and the compute engine
   is Ray with several workers, the workers run the trials of the one study in parallel
   (:func:`parallel_trials`; each worker fits its own filters, and the search is then not
   reproducible run to run); otherwise the trials run one after another, reproducibly.
3. **The champion** is the best validation Recall@K of every completed trial. It is refitted
   on the whole train window by the pipeline, and the test period is evaluated once, for the
   report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import hashlib
import math
import os
import socket
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

# A selection's settings and its record need no torch: they live apart, so that the code
# location reads them without it, and are imported from here as well.
from recs_pipeline.evaluation.config import DEFAULT_CANDIDATES, SelectionConfig
from recs_pipeline.evaluation.metrics import ranking_metrics, topk_scored
from recs_pipeline.evaluation.selection_record import Selection, Trial
from recs_pipeline.graph.bipartite import InteractionGraph, interaction_csr
from recs_pipeline.infra.engine import Engine
from recs_pipeline.models import MODELS, TRAINING_FREE, fit_training_free
from recs_pipeline.models.space import Choice, Float, Int, Range
from recs_pipeline.training import TrainConfig, train_model
from recs_pipeline.training.validation import validation_split

Log = Callable[[str], None]

#: The share of a search's budget (and trial cap) the training-free candidates get first.
FILTER_SHARE = 0.4
#: Below this many validation users a choice is noise: the pinned or default scorer serves.
MIN_VALIDATION_USERS = 20


#: A trained candidate's search parameter: learn from the first phase's best filter (its
#: name) or not (NO_TEACHER).
STUDENT = "distill"
NO_TEACHER = "none"


def student_params(teacher: str, teacher_params: dict) -> dict:
    """The TrainConfig settings that make a trained model ``teacher``'s student: the teacher's
    top items as rank-weighted extra positives (``distill_ranked``)."""
    return {"distill": teacher, "distill_params": dict(teacher_params) or None,
            "distill_ranked": True}  # fmt: skip


class SelectionError(ValueError):
    """A selection setting is wrong; the message names it and what is allowed."""


def reusable(searched: Sequence[str], day: str, every_days: int) -> str | None:
    """Of the days a search ran (``searched``), the latest one before ``day`` and fewer than
    ``every_days`` days before it (``day`` itself excluded: a re-run of a day searches, and
    a later day's search is never used)."""
    as_of = dt.date.fromisoformat(day)
    earlier = [s for s in searched if s < day]
    if not earlier:
        return None
    latest = max(earlier)
    return latest if (as_of - dt.date.fromisoformat(latest)).days < every_days else None


def check_candidates(candidates: Sequence[str], item_features: bool = False) -> list[str]:
    """The candidates, each registered; PinSAGE only with item features."""
    known = set(MODELS) | set(TRAINING_FREE)
    unknown = [c for c in candidates if c not in known]
    if unknown:
        raise SelectionError(
            f"selection_candidates: unknown model(s) {unknown}; registered: {sorted(known)}"
        )
    if not candidates:
        raise SelectionError("selection_candidates: name at least one model")
    return [c for c in candidates if c != "pinsage" or item_features]


def validation_mask(
    graph: InteractionGraph, val_users: int, seed: int, fraction: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(held-out mask over train edges, the timestamps the carve used): the slice
    ``train_model`` with the same ``val_users`` and ``seed`` validates on. Without timestamps
    (one time for every edge) a seeded random order stands in, so the held-out edge is a random
    one, not the file's last."""
    last_ts = graph.train_last_ts
    if last_ts.numel() and bool((last_ts == last_ts[0]).all()):
        order = torch.randperm(last_ts.numel(), generator=torch.Generator().manual_seed(seed))
        last_ts = order.to(torch.long)
    generator = torch.Generator().manual_seed(seed)
    mask = validation_split(
        graph.train_users, last_ts, graph.n_users, val_users, generator, fraction
    )
    return mask, last_ts


@dataclasses.dataclass(frozen=True)
class ValidationSlice:
    """A graph's train edges split into the edges candidates fit on and the held-out edges
    they are scored on (:func:`validation_mask`)."""

    fit_u: torch.Tensor
    fit_i: torch.Tensor
    val_u: torch.Tensor
    val_i: torch.Tensor
    carve_ts: torch.Tensor
    n_users: int
    n_items: int

    @staticmethod
    def carve(
        graph: InteractionGraph, val_users: int, seed: int, fraction: float
    ) -> ValidationSlice:
        mask, carve_ts = validation_mask(graph, val_users, seed, fraction)
        return ValidationSlice(
            graph.train_users[~mask], graph.train_items[~mask],
            graph.train_users[mask], graph.train_items[mask],
            carve_ts, graph.n_users, graph.n_items,
        )  # fmt: skip

    @functools.cached_property
    def users(self) -> torch.Tensor:
        return torch.unique(self.val_u)

    @functools.cached_property
    def exclude(self) -> torch.Tensor:
        return interaction_csr(self.fit_u, self.fit_i, self.n_users, self.n_items)

    def score(self, score_fn, k: int) -> tuple[float, float]:
        """(Recall@k, NDCG@k) of a scorer fitted on the fit edges, over the held-out ones."""
        users = self.users
        _, top = topk_scored(score_fn, users, self.exclude, k)
        metrics = ranking_metrics(top, users, self.val_u, self.val_i, self.n_items, (k,))
        return metrics[("recall", k)], metrics[("ndcg", k)]


def quick_scores(
    graph: InteractionGraph,
    models: Sequence[str] = ("popularity", "gfcf"),
    *,
    val_users: int = 3000,
    seed: int = 0,
    val_fraction: float = 0.2,
    k: int = 20,
) -> tuple[int, dict[str, float]]:
    """(validation users, each training-free model's validation Recall@k at its defaults) on
    the slice a selection with these settings carves: what a window gives, at a glance (the
    profile's candidates table). Fewer than :data:`MIN_VALIDATION_USERS` users: no scores."""
    held = ValidationSlice.carve(graph, val_users, seed, val_fraction)
    users = int(held.users.numel())
    if users < MIN_VALIDATION_USERS:
        return users, {}
    k = max(1, min(k, graph.n_items))
    edges = (held.fit_u, held.fit_i, graph.n_users, graph.n_items)
    return users, {
        model: held.score(fit_training_free(model, *edges).scores, k)[0] for model in models
    }


class _Filters:
    """The expensive part of the filters fitted once per study and re-weighted per trial: a
    dnfilter per user exponent with the widest basis any trial may ask (``retune`` sets the
    other settings). GF-CF's item graph and ideal basis are the exponent-½ dnfilter's (the same
    R̃ = D_U^-½ R D_I^-½): its trials cost a scoring pass, not an SVD."""

    def __init__(self, fit_u, fit_i, n_users, n_items) -> None:
        self.edges = (fit_u, fit_i, n_users, n_items)
        self.dnfilters: dict[float, object] = {}

    def dnfilter(self, exponent: float):
        if exponent not in self.dnfilters:
            # One per value of the space's few exponents (on Gowalla each item graph is about
            # 2 GB: three fit in the memory a selection is given).
            widest = max(
                TRAINING_FREE["dnfilter"].search_space["k"].high,
                TRAINING_FREE["gfcf"].search_space["k"].high,
            )
            self.dnfilters[exponent] = fit_training_free(
                "dnfilter", *self.edges, user_exponent=exponent, k=widest, weight=0.1
            )
        return self.dnfilters[exponent]

    def fit(self, model: str, params: dict):
        defaults = TRAINING_FREE[model]().params() if model in TRAINING_FREE else {}
        settings = {**defaults, **params}
        if model == "dnfilter":
            fitted = self.dnfilter(settings["user_exponent"])
            return fitted.retune(
                beta=settings["beta"],
                weight=settings["weight"],
                k=min(settings["k"], fitted.basis.shape[1]),  # a small catalogue's whole basis
                gamma=settings["gamma"],
                sharpen=settings["sharpen"],
            )
        if model == "gfcf":
            return _gfcf_from(self.dnfilter(0.5), settings["alpha"], settings["k"])
        return fit_training_free(model, *self.edges, **params)


def _gfcf_from(fitted, alpha: float, k: int):
    """A GF-CF scorer on an exponent-½ dnfilter's fit: P is the same item graph, V̄ its top
    ``k`` basis vectors, R the binary interactions."""
    from recs_pipeline.models.gfcf import GFCF

    basis = fitted.basis[:, :k].numpy()
    degrees = fitted.degrees
    inv_sqrt = np.where(degrees > 0, 1.0 / np.sqrt(np.maximum(degrees, 1)), 0.0)
    model = GFCF(alpha=alpha, k=basis.shape[1])
    model.interactions, model.item_filter = fitted.binary, fitted.item_filter
    model.ideal_left = torch.from_numpy((basis * inv_sqrt[:, None]).astype(np.float32))
    model.ideal_right = torch.from_numpy((basis * np.sqrt(degrees)[:, None]).T.astype(np.float32))
    return model


def _suggest(trial, model: str, space: dict[str, Range]) -> dict:
    params = {}
    for name, spec in space.items():
        key = f"{model}.{name}"
        if isinstance(spec, Float):
            params[name] = trial.suggest_float(key, spec.low, spec.high, log=spec.log)
        elif isinstance(spec, Int):
            params[name] = trial.suggest_int(key, spec.low, spec.high, log=spec.log)
        else:
            params[name] = trial.suggest_categorical(key, list(spec.options))
    return params


class _Search:
    """What one process needs to evaluate trials: the validation slice, the fit edges, the
    filters' cache and the budget's end. The search's driver builds one; with parallel trials
    each Ray worker builds its own from the shared graph (the slice is seeded, so it is the same
    slice), and so its own :class:`_Filters` cache: the dnfilter basis of an exponent is computed
    once per worker process and phase, not once per study."""

    def __init__(
        self,
        graph: InteractionGraph,
        *,
        seed: int,
        val_users: int,
        val_fraction: float,
        k: int,
        train: TrainConfig,
        item_features: torch.Tensor | None,
        budget_seconds: float,
        budget_ends: float,
        log: Log,
        teacher: tuple[str, dict] | None = None,
    ) -> None:
        self.graph, self.seed, self.k, self.train = graph, seed, k, train
        self.val_users, self.val_fraction = val_users, val_fraction
        self.item_features = item_features
        # budget_ends is wall-clock time (time.time()): the one clock every worker reads.
        self.budget_seconds, self.budget_ends = budget_seconds, budget_ends
        # The best training-free trial of the first phase, (model, settings): a trained
        # candidate may be its student (distilled from its top items; Trial.params say so).
        self.teacher = teacher
        self.log = log
        self.held = ValidationSlice.carve(graph, val_users, seed, val_fraction)
        self.users, self.carve_ts = self.held.users, self.held.carve_ts
        self._filters = None

    @property
    def filters(self) -> _Filters:
        if self._filters is None:
            graph = self.graph
            self._filters = _Filters(self.held.fit_u, self.held.fit_i, graph.n_users, graph.n_items)
        return self._filters

    def score(self, score_fn) -> tuple[float, float]:
        return self.held.score(score_fn, self.k)

    def objective(self, models: list[str], offset: int):
        return lambda trial: self._objective(trial, models, offset)

    def _objective(self, trial, models: list[str], offset: int) -> float:
        import optuna

        # Which process ran the trial (several do with parallel trials; README "How the day's
        # model is chosen").
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        try:
            return self._evaluate(trial, models, offset)
        except optuna.TrialPruned:
            raise
        except Exception as error:  # recorded with the trial, which Optuna marks failed
            trial.set_user_attr("error", f"{type(error).__name__}: {error}"[:500])
            raise

    def _evaluate(self, trial, models: list[str], offset: int) -> float:
        import optuna

        graph, k = self.graph, self.k
        model = trial.suggest_categorical("model", models)
        cls = TRAINING_FREE.get(model) or MODELS[model]
        params = _suggest(trial, model, cls.search_space)
        if model not in TRAINING_FREE and self.teacher is not None:
            teacher, teacher_params = self.teacher
            if trial.suggest_categorical(f"{model}.{STUDENT}", [NO_TEACHER, teacher]) == teacher:
                params |= student_params(teacher, teacher_params)
        trial.set_user_attr("params", params)
        if model in TRAINING_FREE:
            recall, ndcg = self.score(self.filters.fit(model, params).scores)
        else:
            remaining = self.budget_ends - time.time()
            if remaining < 1.0:
                raise optuna.TrialPruned("no budget left for a training run")
            config = dataclasses.replace(
                self.train,
                model=model,
                model_params=None,  # a pinned training-free model's settings are not this model's
                val_users=self.val_users,
                val_fraction=self.val_fraction,
                seed=self.seed,
                val_k=k,
                # No trained trial takes more than a quarter of the budget: the filters' trials
                # (seconds each) would otherwise starve behind one long training run.
                time_budget_minutes=min(remaining, self.budget_seconds / 4) / 60,
                **params,
            )

            def report(record: dict) -> None:
                if "val_recall" in record:
                    trial.report(record["val_recall"], record["epoch"])
                    if trial.should_prune():
                        raise optuna.TrialPruned()

            result = train_model(
                dataclasses.replace(graph, train_last_ts=self.carve_ts), config,
                log=lambda _: None, on_epoch=report, item_features=self.item_features,
            )  # fmt: skip
            best = next((r for r in result.history if r["epoch"] == result.best_epoch), None)
            if best is None or "val_recall" not in best:
                raise RuntimeError(
                    f"{model} reached no validation check within the budget"
                    f" ({len(result.history)} epochs): raise selection_budget_minutes"
                )
            recall, ndcg = result.best_val_recall, best.get("val_ndcg", math.nan)
        trial.set_user_attr("ndcg", ndcg)
        self.log(f"trial {trial.number + offset}: {model} {_short(params)} recall@{k} {recall:.4f}")
        return recall


def _pruner():
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)


def parallel_trials(engine: Engine | None, storage: str | None) -> int:
    """How many processes run a search's trials: the engine's ``workers`` Ray tasks where the
    engine is kind ``ray`` with ``workers`` > 1 and the study is in a database server that every
    worker reaches (:func:`shared_storage`); else 1 (this process, sequentially)."""
    if engine is not None and engine.distributed and engine.workers > 1 and shared_storage(storage):
        return engine.workers
    return 1


def select(
    graph: InteractionGraph,
    *,
    candidates: Sequence[str] = DEFAULT_CANDIDATES,
    budget_seconds: float,
    seed: int = 0,
    val_users: int = 3000,
    val_fraction: float = 0.2,
    k: int = 20,
    train: TrainConfig | None = None,
    storage: str | None = None,
    study_name: str = "selection",
    warm_start: dict | None = None,
    item_features: torch.Tensor | None = None,
    max_trials: int | None = None,
    fallback_model: str = "dnfilter",
    engine: Engine | None = None,
    log: Log = print,
) -> Selection:
    """Search ``candidates`` on a validation slice of ``graph``'s train edges for at most
    ``budget_seconds`` (module docstring). ``val_fraction`` of each validation user's latest
    train edges are held out (at least one; 0: one edge), as the test period holds out a share
    of a user's history rather than one item. ``train`` holds the trained candidates' other
    settings (epochs, dimension, loss; its model and searched fields are set per trial).
    ``storage`` is an Optuna storage URL or a journal file path (None: in memory; see
    :func:`study_storage`); a study of the same name there is resumed. ``warm_start``
    ({"model", "params"}: a previous champion) is tried first. With fewer than
    :data:`MIN_VALIDATION_USERS` validation users no search runs: ``fallback_model`` at its
    defaults is returned, saying why.

    ``engine``: with kind ``ray``, ``workers`` > 1 and a database server as ``storage``
    (:func:`parallel_trials`), each phase of the search runs as ``workers`` Ray tasks, each
    calling ``study.optimize`` on the same study until the phase's time is spent, the trial cap
    split between them (the study never exceeds it); the graph goes to the cluster once. Such a
    search is not reproducible run to run: which trials TPE has seen when it proposes the next
    depends on the workers' timing. Otherwise the trials run here, one after another, and the
    same seed gives the same search."""
    import optuna

    if not budget_seconds > 0:
        raise SelectionError(f"selection_budget_minutes must be > 0, not {budget_seconds / 60:g}")
    candidates = check_candidates(candidates, item_features is not None)
    k = max(1, min(k, graph.n_items))  # a catalogue smaller than K ranks all of it
    started = time.perf_counter()
    settings = dict(
        seed=seed,
        val_users=val_users,
        val_fraction=val_fraction,
        k=k,
        train=train or TrainConfig(),
        budget_seconds=budget_seconds,
        budget_ends=time.time() + budget_seconds,
    )
    search = _Search(graph, item_features=item_features, log=log, **settings)
    users = search.users
    if users.numel() < MIN_VALIDATION_USERS:
        reason = (
            f"the validation slice has {users.numel()} users (train users with two or more"
            f" edges), fewer than the {MIN_VALIDATION_USERS} a choice needs: {fallback_model}"
            " serves at its defaults"
        )
        log(f"model selection skipped: {reason}")
        return Selection(
            fallback_model, {}, math.nan, math.nan, k, int(users.numel()), [], 0.0, reason
        )
    # Failed trials are reported below, in one line each, not as Optuna's tracebacks.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    studies = _Studies(search, settings, storage, parallel_trials(engine, storage), engine, log)
    first = []  # tried before TPE proposes anything: the last champion, then every default
    if warm_start and warm_start.get("model") in candidates:
        first.append((warm_start["model"], warm_start.get("params", {})))
    first += [(model, default_params(model)) for model in candidates]
    with studies.session(graph, item_features):
        if any(m in TRAINING_FREE for m in candidates) and any(
            m not in TRAINING_FREE for m in candidates
        ):
            trials = _filters_then_all(studies, study_name, candidates, first, max_trials)
        else:
            ran = studies.run(study_name, list(candidates), budget_seconds, max_trials, first)
            trials = [_trial(t) for t in ran if t.state.is_finished()]
    for trial in trials:
        if trial.state == "FAIL":
            log(f"trial {trial.number}: {trial.model} failed ({trial.error}); the search went on")
    best = _best(trials)
    if best is None:
        raise SelectionError(
            f"no trial of the study {study_name!r} completed within the budget"
            f" ({budget_seconds / 60:g} min; {len(trials)} started): raise"
            " selection_budget_minutes"
        )
    trials.sort(key=lambda t: (t.recall is None, -(t.recall or 0.0), t.number))
    return Selection(
        best.model,
        best.params,
        best.recall,
        best.ndcg,
        k,
        int(users.numel()),
        trials,
        time.perf_counter() - started,
    )


class _Studies:
    """Runs the phases of one search: each an Optuna study of ``storage`` (created, or resumed
    where a killed search left it), its trials here or on ``workers`` Ray workers."""

    def __init__(self, search, settings: dict, storage, workers: int, engine, log: Log) -> None:
        self.search, self.settings, self.storage = search, settings, storage
        self.workers, self.engine, self.log = workers, engine, log
        self.shared: tuple = ()  # with workers > 1: the graph and item features on the cluster

    @contextlib.contextmanager
    def session(self, graph: InteractionGraph, item_features):
        if self.workers <= 1:
            yield
            return
        with self.engine.session():
            self.log(
                f"model selection: {self.workers} Ray workers run the trials of one study in"
                f" {_printable(self.storage)} (several workers: not reproducible run to run)"
            )
            # To the cluster once, for every phase's workers.
            self.shared = (self.engine.share(graph), self.engine.share(item_features))
            yield

    def run(
        self, name: str, models: list[str], seconds: float, cap: int | None, first, offset: int = 0
    ) -> list:
        """The study ``name``'s trials after searching ``models`` for at most ``seconds`` (and
        the search's remaining budget) and ``cap`` finished trials in all, ``first`` (model,
        params) queued before TPE proposes unless the study tried them already."""
        import optuna

        study = optuna.create_study(
            study_name=name,
            storage=_storage(self.storage),
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=self.settings["seed"]),
            pruner=_pruner(),
            load_if_exists=True,
        )
        _fail_stale_trials(study)
        # What the study has tried, in its own (suggested) parameters: a student's settings
        # beyond its teacher's name are derived, not searched.
        done = {
            (t.params.get("model"), _key({n.split(".", 1)[1]: v for n, v in t.params.items()
                                          if n != "model"}))
            for t in study.trials
        }  # fmt: skip
        for model, params in first:
            if model in models and (model, _key(params)) not in done:
                done.add((model, _key(params)))
                study.enqueue_trial(
                    {"model": model, **{f"{model}.{n}": v for n, v in params.items()}},
                    skip_if_exists=True,
                )
        seconds = min(seconds, self.settings["budget_ends"] - time.time())
        if cap is not None:  # a cap on the study's trials, those of a killed search included
            cap -= sum(t.state.is_finished() for t in study.trials)
        if seconds > 0 and (cap is None or cap > 0):
            if self.workers > 1:
                phase = _Phase(
                    name, self.storage, models, offset, time.time() + seconds, self.settings
                )
                shares = list(enumerate(_shares(cap, self.workers)))
                ran = self.engine.map(_optimize_on_worker, shares, *self.shared, phase)
                self.log(
                    f"model selection: {sum(n for _, n in ran)} trials of {name} on"
                    f" {len(ran)} Ray workers ({', '.join(w for w, _ in ran)})"
                )
            else:
                study.optimize(
                    self.search.objective(models, offset),
                    timeout=seconds,
                    n_trials=cap,
                    catch=(Exception,),
                )
        return study.trials


def _filters_then_all(
    studies: _Studies, study_name: str, candidates, first: list, max_trials: int | None
) -> list[Trial]:
    """Two phases: the filters first (seconds a trial), for FILTER_SHARE of the budget and
    trials, so that one long training run cannot starve their search; then every candidate,
    from the filters' best, the trained models' defaults and TPE. Each filter's default runs
    first, even under a small trial cap."""
    budget_seconds = studies.settings["budget_seconds"]
    free = [m for m in candidates if m in TRAINING_FREE]
    trained = [m for m in candidates if m not in TRAINING_FREE]
    queued = sum(model in free for model, _ in first)
    head = studies.run(
        f"{study_name}-filters",
        free,
        budget_seconds * FILTER_SHARE,
        None
        if max_trials is None
        else min(max_trials, max(queued, int(max_trials * FILTER_SHARE))),
        first,
    )
    first_phase = [_trial(t) for t in head if t.state.is_finished()]
    best_filter = _best(first_phase)
    # The filters' defaults ran in the first phase: their best stands for them. It is also the
    # teacher a trained candidate may learn from: the trained models' defaults are tried plain,
    # then the first one as its student, then TPE proposes.
    queue = [(best_filter.model, best_filter.params)] if best_filter else []
    plain = {STUDENT: NO_TEACHER} if best_filter else {}
    queue += [(model, params | plain) for model, params in first if model in trained]
    if best_filter:
        teacher = (best_filter.model, dict(best_filter.params))
        studies.settings["teacher"] = studies.search.teacher = teacher
        queue.append((trained[0], default_params(trained[0]) | {STUDENT: teacher[0]}))
    # The trials the first phase ran count against the cap; those it queued and never ran (a
    # cap below its queue) do not, but keep their numbers.
    cap = None if max_trials is None else max_trials - len(first_phase)
    tail = studies.run(study_name, candidates, budget_seconds, cap, queue, offset=len(head))
    return first_phase + [_trial(t, offset=len(head)) for t in tail if t.state.is_finished()]


# --- parallel trials: Ray workers on one study in a database server ------------------------


@dataclasses.dataclass(frozen=True)
class _Phase:
    """One phase of a search as its Ray workers receive it (the graph comes separately, shared
    once)."""

    study_name: str
    storage: str
    models: list[str]
    offset: int
    ends: float  # wall-clock time (time.time()) the phase's trials stop starting at
    settings: dict  # _Search's settings


def _shares(cap: int | None, workers: int) -> list[int | None]:
    """Each worker's ``n_trials``: the cap split as evenly as it goes (so that the study never
    exceeds it; a worker with no share is not started), or no cap for any."""
    if cap is None:
        return [None] * workers
    return [n for n in (cap // workers + (r < cap % workers) for r in range(workers)) if n]


def _optimize_on_worker(
    share: tuple[int, int | None], graph: InteractionGraph, item_features, phase: _Phase
) -> tuple[str, int]:
    """A Ray task: trials of ``phase``'s study until the phase's time ends or the worker's
    share of the cap (``share``: (rank, n_trials)) ran. Each trial's line goes to the worker's
    stdout, which Ray forwards to the step's. Returns (host:pid, trials it ran)."""
    import optuna

    rank, n_trials = share
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    search = _Search(
        graph, item_features=item_features, log=lambda line: print(line, flush=True),
        **phase.settings,
    )  # fmt: skip
    # Each worker a seed of its own: one seed everywhere would propose the same random start-up
    # trials in every worker. constant_liar: a worker's TPE counts the others' running trials
    # as poor ones, so that the workers do not all try the same promising region at once.
    worker_seed = np.random.SeedSequence([phase.settings["seed"], rank]).generate_state(1)[0]
    study = optuna.load_study(
        study_name=phase.study_name,
        storage=_storage(phase.storage),
        sampler=optuna.samplers.TPESampler(seed=int(worker_seed), constant_liar=True),
        pruner=_pruner(),
    )
    before = len(study.trials)
    timeout = phase.ends - time.time()
    if timeout > 0:
        study.optimize(
            search.objective(phase.models, phase.offset),
            timeout=timeout,
            n_trials=n_trials,
            catch=(Exception,),
        )
    worker = f"{socket.gethostname()}:{os.getpid()}"
    mine = [t for t in study.trials[before:] if t.user_attrs.get("worker") == worker]
    return worker, len(mine)


def default_params(model: str) -> dict:
    """The model's own defaults for the parameters its space searches (the first trial of
    each candidate is its shipped configuration)."""
    space = (TRAINING_FREE.get(model) or MODELS[model]).search_space
    if model in TRAINING_FREE:
        defaults = TRAINING_FREE[model]().params()
    else:
        config = TrainConfig()
        defaults = {name: getattr(config, name) for name in space}
    params = {}
    for name, spec in space.items():
        value = defaults.get(name)
        if value is None or not _within(spec, value):
            continue  # not a default the space can express: TPE proposes one
        params[name] = value
    return params


def _within(spec: Range, value) -> bool:
    if isinstance(spec, Choice):
        return value in spec.options
    return spec.low <= value <= spec.high


# --- where a study lives ----------------------------------------------------------------------

#: The schema of the studies in the shared deployment's PostgreSQL database. Optuna's tables
#: sit apart from Dagster's there: each keeps its schema revision in a table ``alembic_version``,
#: and in one schema each would read the other's (Dagster's set-up refuses a second row).
STUDY_SCHEMA = "optuna"
#: The journal file of a study on a local artifact root, beside the day's selection artifact.
STUDY_JOURNAL = "study.journal"
#: In a database storage a running trial records a heartbeat this often; one silent for
#: STALE_AFTER_SECONDS (its process was killed, its machine lost) is marked failed by the next
#: search that opens the study, so that it counts neither as running nor against the cap.
HEARTBEAT_SECONDS = 30
STALE_AFTER_SECONDS = 120
# The advisory lock under which one process at a time creates the schema and Optuna's tables.
_SETUP_LOCK = (
    int.from_bytes(hashlib.sha256(b"recs_pipeline.evaluation.selection").digest()[:8], "big") >> 1
)


def study_storage(location: str, shared_database: str | None = None) -> str | None:
    """Where a search's study lives (the one place that decides; README "How the day's model is
    chosen"), as :func:`select`'s ``storage``:

    - the shared deployment (``shared_database``: the URL of the Dagster instance's PostgreSQL
      database, which the asset layer passes, ``assets.platform.instance.shared_database_url``):
      that database, schema :data:`STUDY_SCHEMA`, as an Optuna RDB URL that every machine reaches.
      With a Ray engine of several workers the trials then run in parallel
      (:func:`parallel_trials`);
    - else, where ``location`` (the day's selection artifact) is a local path: the journal file
      :data:`STUDY_JOURNAL` beside it (under the data root, by default);
    - else (artifacts addressed by URL and no shared database): None, in memory; a killed
      search starts over.

    A killed search resumes from a journal or a database study."""
    if shared_database:
        import sqlalchemy

        url = sqlalchemy.engine.make_url(shared_database)
        if url.get_backend_name() == "postgresql":
            url = url.update_query_dict({"options": f"-csearch_path={STUDY_SCHEMA}"})
        return url.render_as_string(hide_password=False)
    if "://" not in location:
        folder = os.path.dirname(location)
        os.makedirs(folder, exist_ok=True)
        return os.path.join(folder, STUDY_JOURNAL)
    return None


def shared_storage(storage: str | None) -> bool:
    """Whether ``storage`` is a database server that processes on several machines share (an
    RDB URL other than SQLite's), where Ray workers can run trials of one study."""
    if storage is None or "://" not in storage:
        return False
    import sqlalchemy

    return sqlalchemy.engine.make_url(storage).get_backend_name() != "sqlite"


def _printable(storage: str | None) -> str:
    """``storage`` for a log line: a URL without its password."""
    if storage is None:
        return "memory"
    if "://" not in storage:
        return storage
    import sqlalchemy

    return sqlalchemy.engine.make_url(storage).render_as_string(hide_password=True)


def _storage(storage: str | None):
    """An Optuna storage: None in memory, a plain path a journal file (safe for several
    processes on one filesystem; a killed search resumes from it), a URL a database
    (:func:`_rdb_storage`)."""
    if storage is None:
        return None
    if "://" in storage:
        return _rdb_storage(storage)
    import optuna
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(storage))


def _rdb_storage(url: str):
    """Optuna's RDB storage of ``url``, with heartbeats. On PostgreSQL the schema that the URL's
    ``search_path`` names is created first, and Optuna's tables with it, under an advisory lock:
    two searches starting together on a new database would otherwise both create them."""
    import sqlalchemy

    options = dict(heartbeat_interval=HEARTBEAT_SECONDS, grace_period=STALE_AFTER_SECONDS)
    parsed = sqlalchemy.engine.make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return _rdb(url, options)
    schema = _search_path(parsed)
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as con:
            con.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": _SETUP_LOCK})
            con.commit()
            try:
                if schema:
                    con.execute(sqlalchemy.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
                    con.commit()
                return _rdb(url, options)
            finally:
                con.execute(
                    sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": _SETUP_LOCK}
                )
                con.commit()
    finally:
        engine.dispose()


def _rdb(url: str, options: dict):
    import warnings

    import optuna

    with warnings.catch_warnings():  # heartbeats: "experimental" since Optuna 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, **options)


def _search_path(url) -> str | None:
    """The schema a PostgreSQL URL's ``options=-csearch_path=…`` names (None: none)."""
    import re

    options = url.query.get("options", "")
    options = " ".join(options) if isinstance(options, tuple) else options
    found = re.search(r"search_path=([A-Za-z_][A-Za-z0-9_]*)", options)
    return found.group(1) if found else None


def _fail_stale_trials(study) -> None:
    """Mark failed the trials of a database study whose process stopped beating
    (:data:`STALE_AFTER_SECONDS`): a killed search's last trial, before the search resumes."""
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _search_digest(config: SelectionConfig, graph: InteractionGraph) -> str:
    """What a study's trials were scored on: the search's settings and the train edges (their
    weights included), so that a day searched again after a re-ingest starts a study of its
    own instead of resuming trials scored on other data."""
    what = (config.candidates, config.val_users, config.val_fraction, config.seed)
    digest = hashlib.sha256(repr(what).encode())
    for tensor in (graph.train_users, graph.train_items, graph.train_weight):
        if tensor is not None:
            digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()[:10]


def _best(trials: list[Trial]) -> Trial | None:
    complete = [t for t in trials if t.state == "COMPLETE" and t.recall is not None]
    return max(complete, key=lambda t: (t.recall, -t.number)) if complete else None


def _trial(trial, offset: int = 0) -> Trial:
    params = trial.user_attrs.get("params")
    model = trial.params.get("model", "?")
    if params is None:
        prefix = f"{model}."
        params = {n[len(prefix) :]: v for n, v in trial.params.items() if n.startswith(prefix)}
    seconds = (
        (trial.datetime_complete - trial.datetime_start).total_seconds()
        if trial.datetime_complete and trial.datetime_start
        else 0.0
    )
    error = trial.user_attrs.get("error")
    if trial.state.name == "FAIL" and error is None:  # failed by _fail_stale_trials
        error = "its process stopped mid-trial (killed?)"

    return Trial(
        trial.number + offset,
        model,
        params,
        trial.value,
        trial.user_attrs.get("ndcg"),
        trial.state.name,
        round(seconds, 3),
        error,
        trial.user_attrs.get("worker"),
    )


def _key(params: dict) -> tuple:
    return tuple(
        sorted((n, round(v, 12) if isinstance(v, float) else v) for n, v in params.items())
    )


def _short(params: dict) -> str:
    return (
        "{"
        + ", ".join(
            f"{n}={v:.4g}" if isinstance(v, float) else f"{n}={v}" for n, v in params.items()
        )
        + "}"
    )


def daily_selection(
    store,
    key: str,
    graph: InteractionGraph,
    config: SelectionConfig,
    train: TrainConfig,
    item_features: torch.Tensor | None = None,
    log: Log = print,
    *,
    shared_database: str | None = None,
    engine: Engine | None = None,
) -> tuple[Selection, str | None]:
    """Day ``key``'s selection, stored as its ``model_selection`` artifact: the latest one made
    as of an earlier day fewer than ``every_days`` before (never a later day's: a backfill
    sees only what was known then), else a new search warm-started from the latest earlier
    champion. Returns (selection, the day it was reused from or None).

    The study lives where :func:`study_storage` says (``shared_database``: the shared
    deployment's PostgreSQL URL, else a journal beside the artifact); ``engine`` runs its
    trials in parallel where :func:`parallel_trials` allows."""
    from recs_pipeline.infra.artifacts import SELECTION

    earlier = [day for day in store.partitions(SELECTION) if day < key]
    warm = None
    if earlier:
        # The latest earlier day's record names the day its search ran (itself, or the day it
        # reused): the cadence counts from that search, not from the last reuse.
        previous = store.get(SELECTION, max(earlier))
        searched = previous.get("reused_from") or max(earlier)
        source = reusable([searched], key, config.every_days)
        choice = Selection.from_dict(previous["selection"])
        if source is not None and not choice.fallback:
            log(f"model selection: reusing the choice searched on {source}, {choice.model}"
                f" (a search every {config.every_days} days)")  # fmt: skip
            store.put(SELECTION, key, {"selection": choice.to_dict(), "reused_from": source})
            return choice, source
        warm = {"model": choice.model, "params": choice.params}
    storage = study_storage(store.location(SELECTION, key), shared_database)
    try:
        result = select(
            graph,
            candidates=config.candidates,
            budget_seconds=config.budget_minutes * 60,
            seed=config.seed,
            val_users=config.val_users,
            val_fraction=config.val_fraction,
            train=train,
            storage=storage,
            # A study resumes only under the same search: other candidates or another slice
            # start a study of their own (Optuna refuses a changed choice list under one name).
            study_name=f"selection-{key}-{_search_digest(config, graph)}",
            warm_start=warm,
            item_features=item_features,
            max_trials=config.trials,
            fallback_model=train.model,
            engine=engine,
            log=log,
        )
    except SelectionError as error:
        if "completed" not in str(error):
            raise
        reason = f"{error}; {train.model} serves at its defaults"
        log(f"model selection failed: {reason}")
        result = Selection(train.model, {}, math.nan, math.nan, 20, 0, [], 0.0, reason)
    store.put(SELECTION, key, {"selection": result.to_dict(), "reused_from": None})
    return result, None
