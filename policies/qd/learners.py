"""The QD learners behind the Learner contract: novelty search (``ns``) and the baselines
``map_elites``, ``cma_me`` and ``random_search``, every archive, emitter and scheduler from pyribs.

A generation asks the learner for genomes, rolls them out as full episodes (:mod:`.rollout`),
tells the learner the outcomes, records them (a ground-truth coverage archive, the reward areas
found, the best genome), and checkpoints everything (a pickle of the ribs objects and the rest of
the state, written into a fresh checkpoint directory that ``latest.json`` then points to). The
budget is ``training.total_steps`` env steps: a generation starts only while the steps used plus the
last generation's steps fit in it, so a run with fixed-length episodes never goes over.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np

from policies.qd.config import QDHyperparams, parse_hyperparams
from policies.qd.genome import MLPController, MLPPolicy
from policies.qd.rollout import Evaluator, FrameSpec, Outcome, read_fields
from workbench.errors import MissingDependency, TaskError, WorkbenchError
from workbench.executor import RayOptions, make_executor
from workbench.learner import FitHooks, TrainingInterrupted, TrainingStopped
from workbench.runs import atomic_path

if TYPE_CHECKING:
    from workbench.runs import Run
    from workbench.spec import TaskSpec

__all__ = ["QDLearner", "NoveltySearchLearner", "MapElitesLearner", "CMAMELearner", "RandomSearchLearner",
           "QDState", "novelty", "require_ribs", "EVALUATION_FIELD", "evaluations"]

STATE_FILE = "qd_state.pkl"
# every ProximityArchive of the QD learners stores each member's evaluation index (0-based), which
# names the episode it came from (and its frames, for a learned behaviour space)
EVALUATION_FIELD = {"evaluation": ((), np.int64)}


def evaluations(outcomes: Sequence[Outcome]) -> np.ndarray:
    return np.array([o.index for o in outcomes], dtype=np.int64)


def require_ribs() -> Any:
    try:
        import ribs.archives
        import ribs.emitters
        import ribs.schedulers
    except ImportError:
        raise MissingDependency("the QD learners (ns, taxons, serene, stax, map_elites, cma_me, random_search)", "qd",
                                "ribs") from None
    return ribs


def novelty(archive: Any, measures: np.ndarray) -> np.ndarray:
    """k-NN novelty of ``measures`` against a ribs ProximityArchive: the mean distance to the k
    nearest descriptors stored (fewer while the archive holds fewer; the archive's threshold when empty)."""
    return np.asarray(archive.compute_novelty(np.asarray(measures, dtype=np.float64)), dtype=np.float64)


@dataclass
class QDState:
    """Everything a run needs to continue from a generation (pickled into each checkpoint)."""

    generation: int = 0
    steps: int = 0
    evaluations: int = 0
    last_generation_steps: int = 0
    last_generation_episodes: int = 0
    algo: dict[str, Any] = field(default_factory=dict)  # the learner's ribs objects, parents, rng
    coverage: Any = None  # ribs GridArchive over the outcome grid (None: the task has none)
    areas: dict[str, dict[str, Any]] = field(default_factory=dict)  # reward area -> best found there
    best: dict[str, Any] | None = None  # the best genome so far: reward, genome, evaluation, area
    first_reward_evaluation: int | None = None  # 1-based: evaluations until the first reward
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


class QDLearner:
    """The generation loop shared by every QD learner; subclasses say how to ask and tell."""

    name: ClassVar[str]

    # ------------------------------------------------------------------ validation
    @classmethod
    def validate_spec(cls, spec: TaskSpec, *, file: str) -> None:
        require_ribs()
        parse_hyperparams(cls.name, spec, file=file)

    # ------------------------------------------------------------------ to override
    def init_algo(self, hp: QDHyperparams, dim: int, descriptor_dim: int, rng: np.random.Generator) -> dict[str, Any]:
        raise NotImplementedError

    def ask(self, algo: dict[str, Any], hp: QDHyperparams) -> np.ndarray:
        raise NotImplementedError

    def tell(self, algo: dict[str, Any], hp: QDHyperparams, genomes: np.ndarray, outcomes: list[Outcome]) -> None:
        raise NotImplementedError

    def archives(self, algo: dict[str, Any]) -> dict[str, Any]:
        """The learner's ribs archives, by file stem, for the run's outputs."""
        return {}

    def descriptor_dim(self, hp: QDHyperparams, probe: gym.Env) -> int:
        """The length of the descriptor (the named StateView fields' values, here)."""
        return len(read_fields(probe, hp.descriptor))

    def frame_spec(self, hp: QDHyperparams, spec: TaskSpec) -> FrameSpec | None:
        """The frames each outcome carries (None: none; learners of a pixel descriptor say which)."""
        return None

    def attach(self, algo: dict[str, Any], run: Run, hp: QDHyperparams) -> None:
        """Called once the state is made or loaded, before the first generation: a learner opens
        what it keeps outside the pickled state (e.g. a frame store in the run directory)."""

    def write_files(self, algo: dict[str, Any], out: Path) -> dict[str, Any]:
        """Extra files of the learner in the run's ``qd/`` directory; returns keys for qd.json."""
        return {}

    def next_batch_size(self, algo: dict[str, Any], hp: QDHyperparams) -> int | None:
        """How many genomes the next ``ask`` gives, without asking (None: as many as the last
        generation). The loop uses it to keep a generation of another size within the budget."""
        return None

    def generation_info(self, algo: dict[str, Any]) -> dict[str, Any]:
        """Extra keys for the generation's row of the history (qd.json)."""
        return {}

    def summary(self, algo: dict[str, Any]) -> dict[str, Any]:
        """Extra keys for qd.json."""
        return {}

    # ------------------------------------------------------------------ the loop
    def fit(self, spec: TaskSpec, env_fns: Sequence[Callable[[], gym.Env]], budget: int, run: Run, *,
            hooks: FitHooks, resume: bool = False) -> MLPPolicy:
        from policies.qd.outputs import write_outputs

        ribs = require_ribs()
        hp = parse_hyperparams(self.name, spec, file=spec.source_path or "<task>", check_fields=False)
        if hooks.reward_needs_vec:  # the rollouts step single envs: a vector-only reward would read 0
            raise TaskError(f"{self.name} rolls out single envs, and the reward {spec.reward.source!r} is scored "
                            "across a vector of envs (frames or a learned decoder)", file=spec.source_path,
                            key="reward.source", hint="use a state-based reward (env, code, sketch, text2reward) "
                            "with the QD learners, or ppo / sac with this reward")
        env_fn = env_fns[0]
        probe = env_fn()
        try:
            if not isinstance(probe.action_space, gym.spaces.Box):
                raise TaskError(f"{self.name} needs a continuous (Box) action space; {spec.sim.env_id} has "
                                f"{probe.action_space}", file=spec.source_path, key="learner.name",
                                hint="use ppo or sac for this task")
            controller = MLPController.for_spaces(probe.observation_space, probe.action_space, tuple(hp.hidden))
            reward_areas = list(getattr(probe.unwrapped, "reward_areas", []) or [])
            probe.reset(seed=0)
            descriptor_dim = self.descriptor_dim(hp, probe)
        finally:
            probe.close()
        checkpoint = run.latest_checkpoint() if resume else None
        if checkpoint is not None:
            with open(checkpoint[1] / STATE_FILE, "rb") as fh:  # our own run's file, like SB3's zip
                state: QDState = pickle.load(fh)
        else:
            state = QDState()
            rng = np.random.default_rng(np.random.SeedSequence([spec.training.seed, 7]))
            state.algo = self.init_algo(hp, controller.n_params, descriptor_dim, rng)
            if hp.outcome_grid is not None:
                g = hp.outcome_grid
                state.coverage = ribs.archives.GridArchive(solution_dim=controller.n_params, dims=g.cells,
                                                           ranges=list(zip(g.low, g.high)))
        self.attach(state.algo, run, hp)
        executor = make_executor("ray", hp.workers, RayOptions()) if hp.executor == "ray" else None
        evaluator = Evaluator(env_fn, controller, descriptor=hp.descriptor,
                              outcome=hp.outcome_grid.fields if hp.outcome_grid else [], seed=spec.training.seed,
                              workers=hp.workers, frames=self.frame_spec(hp, spec), executor=executor)
        saved_step = checkpoint[0] if checkpoint else 0
        next_eval = (state.steps // hooks.eval_every + 1) * hooks.eval_every if hooks.eval_every else 0
        try:
            while state.steps < budget and (state.generation == 0
                                            or state.steps + self._next_steps(state, hp) <= budget):
                started = time.perf_counter()
                genomes = np.asarray(self.ask(state.algo, hp), dtype=np.float64)
                outcomes = evaluator.evaluate(genomes, state.evaluations)
                self.tell(state.algo, hp, genomes, outcomes)
                self._record(state, genomes, outcomes)
                state.history[-1].update(self.generation_info(state.algo))
                state.seconds += time.perf_counter() - started
                saved_step = self._checkpoint(run, state, controller)
                if hooks.on_steps is not None:
                    hooks.on_steps(state.steps)
                if next_eval and state.steps >= next_eval and hooks.on_eval is not None:
                    hooks.on_eval(state.steps, self._best_policy(state, controller))
                    next_eval = (state.steps // hooks.eval_every + 1) * hooks.eval_every
        except KeyboardInterrupt:
            raise TrainingInterrupted(saved_step) from None  # the last complete generation is checkpointed
        except WorkbenchError as err:  # e.g. a reward program broke the run-time guard
            raise TrainingStopped(saved_step, err) from None
        finally:
            evaluator.close()
            if executor is not None:
                executor.close()
        if state.generation == 0:
            raise TaskError(f"the budget of {budget} steps ran out before the first generation", file=spec.source_path,
                            key="training.total_steps", hint="raise training.total_steps")
        write_outputs(run, spec, self, state, controller, reward_areas, hp, env_fn)
        return self._best_policy(state, controller)

    def _next_steps(self, state: QDState, hp: QDHyperparams) -> int:
        """The env steps the next generation is expected to take: the last one's, scaled to the
        next batch size where the learner knows it (steps per episode as in the last generation)."""
        size = self.next_batch_size(state.algo, hp)
        if size is None or not state.last_generation_episodes:
            return state.last_generation_steps
        return int(np.ceil(state.last_generation_steps * size / state.last_generation_episodes))

    @staticmethod
    def _record(state: QDState, genomes: np.ndarray, outcomes: list[Outcome]) -> None:
        steps = sum(o.length for o in outcomes)
        for i, (genome, o) in enumerate(zip(genomes, outcomes)):
            index = state.evaluations + i
            if state.best is None or o.ret > state.best["reward"]:
                state.best = {"reward": o.ret, "genome": genome.copy(), "evaluation": index + 1, "area": o.area}
            if o.ret > 0:
                if state.first_reward_evaluation is None:
                    state.first_reward_evaluation = index + 1
                area = o.area or "reward"
                found = state.areas.get(area)
                if found is None or o.ret > found["best_reward"]:
                    state.areas[area] = {"best_reward": o.ret, "genome": genome.copy(), "evaluation": index + 1,
                                         "outcome": o.outcome.tolist(),
                                         "first_evaluation": found["first_evaluation"] if found else index + 1}
        if state.coverage is not None:
            state.coverage.add(genomes, np.array([o.ret for o in outcomes]), np.stack([o.outcome for o in outcomes]))
        state.evaluations += len(outcomes)
        state.steps += steps
        state.last_generation_steps = steps
        state.last_generation_episodes = len(outcomes)
        state.generation += 1
        state.history.append({
            "generation": state.generation, "steps": state.steps, "evaluations": state.evaluations,
            "coverage": None if state.coverage is None else float(state.coverage.stats.coverage),
            "areas_found": len(state.areas), "best_reward": float(state.best["reward"]) if state.best else None,
        })

    def _checkpoint(self, run: Run, state: QDState, controller: MLPController) -> int:
        directory = run.new_checkpoint_dir(state.steps)
        with atomic_path(directory / STATE_FILE) as tmp, open(tmp, "wb") as fh:
            pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)
        self._best_policy(state, controller).save(directory)
        run.commit_checkpoint(state.steps, directory)
        run.update_info(steps=state.steps, qd_generation=state.generation, qd_evaluations=state.evaluations)
        return state.steps

    @staticmethod
    def _best_policy(state: QDState, controller: MLPController) -> MLPPolicy:
        assert state.best is not None
        return MLPPolicy(controller, state.best["genome"],
                         {"reward": state.best["reward"], "evaluation": state.best["evaluation"],
                          "area": state.best["area"]})

    @classmethod
    def load_checkpoint(cls, directory: Path, spec: TaskSpec) -> MLPPolicy:
        return MLPPolicy.load(directory)


def _initial(rng: np.random.Generator, hp: QDHyperparams, dim: int) -> np.ndarray:
    return rng.normal(0.0, hp.init_sigma, (hp.population, dim))


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


class NoveltySearchLearner(QDLearner):
    """Novelty search: a ribs ProximityArchive of descriptors (k-NN novelty); each generation the
    ``parents`` (default population // 4) most novel of the ``population`` offspring (novelty against
    the archive before they are added) are the parents of the next, each child a uniformly drawn
    parent plus Gaussian noise (``sigma``)."""

    name = "ns"

    def init_algo(self, hp: QDHyperparams, dim: int, descriptor_dim: int, rng: np.random.Generator) -> dict[str, Any]:
        archive = self.novelty_archive(hp, dim, descriptor_dim, rng)
        return {"archive": archive, "rng": rng, "offspring": _initial(rng, hp, dim)}

    @staticmethod
    def novelty_archive(hp: QDHyperparams, dim: int, descriptor_dim: int, rng: np.random.Generator) -> Any:
        """The ribs ProximityArchive of novelty search; each member records its evaluation index."""
        ribs = require_ribs()
        return ribs.archives.ProximityArchive(solution_dim=dim, measure_dim=descriptor_dim, k_neighbors=hp.k,
                                              novelty_threshold=hp.novelty_threshold, seed=_seed(rng),
                                              extra_fields=EVALUATION_FIELD)

    def ask(self, algo: dict[str, Any], hp: QDHyperparams) -> np.ndarray:
        return algo["offspring"]

    def tell(self, algo: dict[str, Any], hp: QDHyperparams, genomes: np.ndarray, outcomes: list[Outcome]) -> None:
        self.ns_step(algo, hp, genomes, outcomes)

    def selection_scores(self, algo: dict[str, Any], novelty_scores: np.ndarray) -> np.ndarray:
        """What parents are chosen by (the most of it): novelty here."""
        return novelty_scores

    def ns_step(self, algo: dict[str, Any], hp: QDHyperparams, genomes: np.ndarray,
                outcomes: list[Outcome]) -> np.ndarray:
        """One novelty-search generation told: novelty of each outcome against the archive (before
        they join it), the archive updated, the next offspring bred from the parents of the highest
        :meth:`selection_scores`; returns the novelty scores."""
        archive, rng = algo["archive"], algo["rng"]
        measures = np.stack([o.descriptor for o in outcomes])
        scores = novelty(archive, measures)
        archive.add(genomes, measures=measures, objective=np.array([o.ret for o in outcomes]),
                    evaluation=evaluations(outcomes))
        order = np.argsort(-self.selection_scores(algo, scores), kind="stable")
        parents = genomes[order[:hp.parents or max(1, hp.population // 4)]]
        picks = rng.integers(0, len(parents), hp.population)
        algo["offspring"] = parents[picks] + rng.normal(0.0, hp.sigma, (hp.population, genomes.shape[1]))
        algo["last_novelty"] = scores
        return scores

    def archives(self, algo: dict[str, Any]) -> dict[str, Any]:
        return {"novelty_archive": algo["archive"]}


class _SchedulerLearner(QDLearner):
    """A ribs Scheduler over a GridArchive of the descriptor; the objective is the episode return."""

    def _grid(self, hp: QDHyperparams, dim: int, rng: np.random.Generator) -> Any:
        ribs = require_ribs()
        assert hp.descriptor_bounds is not None
        return ribs.archives.GridArchive(solution_dim=dim, dims=[hp.descriptor_cells] * len(hp.descriptor_bounds),
                                         ranges=[tuple(b) for b in hp.descriptor_bounds], seed=_seed(rng))

    def ask(self, algo: dict[str, Any], hp: QDHyperparams) -> np.ndarray:
        return algo["scheduler"].ask()

    def tell(self, algo: dict[str, Any], hp: QDHyperparams, genomes: np.ndarray, outcomes: list[Outcome]) -> None:
        algo["scheduler"].tell(np.array([o.ret for o in outcomes]), np.stack([o.descriptor for o in outcomes]))

    def archives(self, algo: dict[str, Any]) -> dict[str, Any]:
        return {"grid_archive": algo["scheduler"].archive}


class MapElitesLearner(_SchedulerLearner):
    """MAP-Elites: a GridArchive over the descriptor (``descriptor_cells`` per axis within
    ``descriptor_bounds``), one GaussianEmitter (``emitter: gaussian``, std ``sigma``) or
    IsoLineEmitter (``iso_line``: iso ``sigma``, line ``line_sigma``) of ``population`` per batch."""

    name = "map_elites"

    def init_algo(self, hp: QDHyperparams, dim: int, descriptor_dim: int, rng: np.random.Generator) -> dict[str, Any]:
        ribs = require_ribs()
        archive = self._grid(hp, dim, rng)
        first = _initial(rng, hp, dim)
        if hp.emitter == "gaussian":
            emitter = ribs.emitters.GaussianEmitter(archive, sigma=hp.sigma, initial_solutions=first,
                                                    batch_size=hp.population, seed=_seed(rng))
        else:
            emitter = ribs.emitters.IsoLineEmitter(archive, iso_sigma=hp.sigma, line_sigma=hp.line_sigma,
                                                   initial_solutions=first, batch_size=hp.population, seed=_seed(rng))
        return {"scheduler": ribs.schedulers.Scheduler(archive, [emitter])}


class CMAMELearner(_SchedulerLearner):
    """CMA-ME: ``emitters`` EvolutionStrategyEmitters (CMA-ES, improvement ranking) on a GridArchive
    of the descriptor, starting at 0 with step size ``init_sigma``; ``population`` split among them."""

    name = "cma_me"

    def init_algo(self, hp: QDHyperparams, dim: int, descriptor_dim: int, rng: np.random.Generator) -> dict[str, Any]:
        ribs = require_ribs()
        archive = self._grid(hp, dim, rng)
        batch = max(2, hp.population // hp.emitters)
        emitters = [ribs.emitters.EvolutionStrategyEmitter(archive, x0=np.zeros(dim), sigma0=hp.init_sigma,
                                                           ranker="2imp", batch_size=batch, seed=_seed(rng))
                    for _ in range(hp.emitters)]
        return {"scheduler": ribs.schedulers.Scheduler(archive, emitters)}


class RandomSearchLearner(QDLearner):
    """Random search: every generation ``population`` fresh genomes from N(0, init_sigma²)."""

    name = "random_search"

    def init_algo(self, hp: QDHyperparams, dim: int, descriptor_dim: int, rng: np.random.Generator) -> dict[str, Any]:
        return {"rng": rng, "dim": dim}

    def ask(self, algo: dict[str, Any], hp: QDHyperparams) -> np.ndarray:
        return _initial(algo["rng"], hp, algo["dim"])

    def tell(self, algo: dict[str, Any], hp: QDHyperparams, genomes: np.ndarray, outcomes: list[Outcome]) -> None:
        return None
