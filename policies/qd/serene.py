"""SERENE (Paolo et al., "Sparse Reward Exploration via Novelty Search and Emitters", GECCO 2021)
as the learner ``serene``.

The budget runs in chunks of ``chunk_evaluations`` evaluations. A meta-scheduler gives each chunk's
first ``exploration_fraction`` to EXPLORATION (novelty search on the hand descriptor, exactly the
``ns`` step: ribs ProximityArchive, k-NN novelty) and the rest to EXPLOITATION by emitters, but only
while there is something to exploit (an emitter candidate or emitter); otherwise exploration takes
the whole chunk (the paper's default behaviour).

* Every agent of an exploration generation with reward > 0 is an emitter CANDIDATE (the
  ``max_candidates`` most novel are kept; novelty = that of its descriptor against the novelty archive).
* An emitter is born from a candidate (the most novel one, re-scored against the archive at birth)
  with the initial step size ``sigma0`` = distance in genome space from the candidate to the nearest
  other genome of the novelty archive and the current exploration population, / 3.
* Bootstrap: a new emitter runs ``bootstrap_generations`` generations; its improvement is the mean,
  over those generations, of (mean reward of the offspring) - (mean reward of its elites before the
  generation: the parent at first). After the bootstrap it joins the emitter pool; from then on the
  scheduler alternates between bootstrapping the next candidate and giving a turn (again
  ``bootstrap_generations`` generations, after which its improvement is that turn's) to an emitter
  drawn uniformly from the Pareto front (non-dominated set) over (novelty of its parent's
  descriptor, improvement).
* Emitters: ``elitist`` (a (mu + lambda) population of the ``emitter_population // 2`` best, offspring
  = a uniformly drawn elite + N(0, sigma0^2)) or ``cma`` (ribs' ``CMAEvolutionStrategy`` optimizer,
  ``ribs.emitters.opt``, started at the parent with sigma0, offspring ranked by reward).
* An emitter stops once its best reward has not improved for ``stagnation_generations``
  generations (or, for ``cma``, when ribs' CMA-ES says it should stop); its best agent then joins the
  rewarding archive (a ribs ProximityArchive with local competition over the descriptor: a new agent
  joins if its descriptor is at least ``novelty_threshold`` from every stored one, else replaces
  its nearest neighbour when its reward is higher). At the end of the run the emitters still
  running add their best agents too (the written archive only).
* Offspring of emitters feed the novelty archive: those whose novelty reaches the archive's
  threshold are added (``ProximityArchive.add``).

Every exploration or emitter generation is one generation of the shared loop
(:class:`policies.qd.learners.QDLearner`): rollouts, the budget, the checkpoint of the whole state
(both archives, the candidates, the emitters with their random generators, the scheduler) and the
outputs are the loop's; qd.json gains ``serene``: totals and one row per chunk.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np

from policies.qd.learners import EVALUATION_FIELD, NoveltySearchLearner, evaluations, novelty, require_ribs

if TYPE_CHECKING:
    from policies.qd.config import QDHyperparams
    from policies.qd.rollout import Outcome

__all__ = ["SereneLearner", "Emitter", "ElitistEmitter", "CMAEmitter", "pareto_front", "choose_pareto",
           "initial_step_size"]


def initial_step_size(genome: np.ndarray, others: np.ndarray) -> float | None:
    """SERENE's initial emitter step size: the distance from ``genome`` to the nearest genome of
    ``others`` (copies of ``genome`` itself, at distance 0, are skipped) divided by 3; None when
    there is no other genome."""
    others = np.asarray(others, dtype=np.float64).reshape(-1, np.asarray(genome).size)
    if not len(others):
        return None
    dists = np.linalg.norm(others - np.asarray(genome, dtype=np.float64)[None, :], axis=1)
    dists = dists[dists > 0]
    return float(dists.min() / 3.0) if len(dists) else None


def pareto_front(points: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated points when every column is maximised (a point is dominated
    when another is >= in every column and > in one)."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError("points must be an (n, m) array")
    keep = []
    for i in range(len(p)):
        dominated = np.any(np.all(p >= p[i], axis=1) & np.any(p > p[i], axis=1))
        if not dominated:
            keep.append(i)
    return np.asarray(keep, dtype=int)


def choose_pareto(points: np.ndarray, rng: np.random.Generator) -> int:
    """One index drawn uniformly from the Pareto front of ``points``."""
    front = pareto_front(points)
    return int(front[rng.integers(0, len(front))])


class Emitter:
    """A local search around one rewarding agent (the parent). ``ask`` gives a generation of
    ``population`` genomes, ``tell`` their rewards; ``stopped`` once the best reward has not improved
    for ``stagnation`` generations. ``improvement`` is that of the last bootstrap or turn."""

    kind = "emitter"

    def __init__(self, parent: np.ndarray, *, parent_reward: float, descriptor: np.ndarray, sigma0: float,
                 population: int, stagnation: int, seed: int, ident: int = 0, born_evaluation: int = 0,
                 parent_evaluation: int = -1):
        if sigma0 <= 0 or not np.isfinite(sigma0):
            raise ValueError(f"sigma0 must be a positive number, got {sigma0}")
        self.ident = ident
        self.parent = np.asarray(parent, dtype=np.float64).copy()
        self.parent_reward = float(parent_reward)
        self.descriptor = np.asarray(descriptor, dtype=np.float64).copy()
        self.sigma0 = float(sigma0)
        self.population = int(population)
        self.stagnation = int(stagnation)
        self.rng = np.random.default_rng(seed)
        self.best_reward = float(parent_reward)
        self.best_genome = self.parent.copy()
        self.best_descriptor = self.descriptor.copy()
        self.generations = 0
        self.evaluations = 0
        self.stale = 0  # generations since the best reward last improved
        self.improvement: float | None = None  # None until bootstrapped
        self.turn_improvements: list[float] = []
        self.born_evaluation = born_evaluation
        self.forced_stop = False
        # evaluation indices (0-based) of the parent's and the best agent's episodes (-1: unknown)
        self.parent_evaluation = int(parent_evaluation)
        self.best_evaluation = int(parent_evaluation)

    @property
    def stopped(self) -> bool:
        return self.forced_stop or self.stale >= self.stagnation

    def ask(self) -> np.ndarray:
        raise NotImplementedError

    def _reference(self) -> float:
        """The reward the offspring's mean is compared with (improvement)."""
        raise NotImplementedError

    def _update(self, genomes: np.ndarray, rewards: np.ndarray) -> None:
        raise NotImplementedError

    def tell(self, genomes: np.ndarray, rewards: np.ndarray, descriptors: np.ndarray,
             indices: np.ndarray | None = None) -> float:
        """Record a generation (``indices``: the evaluations' indices); returns its improvement
        (offspring mean - reference before it)."""
        genomes = np.asarray(genomes, dtype=np.float64)
        rewards = np.asarray(rewards, dtype=np.float64)
        gain = float(rewards.mean() - self._reference())
        self._update(genomes, rewards)
        best = int(np.argmax(rewards))
        if rewards[best] > self.best_reward:
            self.best_reward = float(rewards[best])
            self.best_genome = genomes[best].copy()
            self.best_descriptor = np.asarray(descriptors[best], dtype=np.float64).copy()
            self.best_evaluation = int(indices[best]) if indices is not None else -1
            self.stale = 0
        else:
            self.stale += 1
        self.generations += 1
        self.evaluations += len(rewards)
        self.turn_improvements.append(gain)
        return gain

    def end_turn(self) -> float:
        """Close a bootstrap or a turn: the improvement becomes the mean over its generations."""
        if self.turn_improvements:
            self.improvement = float(np.mean(self.turn_improvements))
        self.turn_improvements = []
        return float(self.improvement if self.improvement is not None else 0.0)

    def stats(self) -> dict[str, Any]:
        return {"id": self.ident, "type": self.kind, "parent_reward": self.parent_reward,
                "best_reward": self.best_reward, "sigma0": self.sigma0, "generations": self.generations,
                "evaluations": self.evaluations, "improvement": self.improvement,
                "descriptor": self.descriptor.tolist(), "best_descriptor": self.best_descriptor.tolist(),
                "born_evaluation": self.born_evaluation}


class ElitistEmitter(Emitter):
    """(mu + lambda): keeps the ``population // 2`` best agents seen (the parent at first);
    offspring = a uniformly drawn elite + N(0, sigma0^2)."""

    kind = "elitist"

    def __init__(self, parent: np.ndarray, **kwargs: Any):
        super().__init__(parent, **kwargs)
        self.elites = self.parent[None, :].copy()
        self.elite_rewards = np.array([self.parent_reward])
        self.mu = max(1, self.population // 2)

    def ask(self) -> np.ndarray:
        picks = self.rng.integers(0, len(self.elites), self.population)
        return self.elites[picks] + self.rng.normal(0.0, self.sigma0, (self.population, self.parent.size))

    def _reference(self) -> float:
        return float(self.elite_rewards.mean())

    def _update(self, genomes: np.ndarray, rewards: np.ndarray) -> None:
        pool = np.concatenate([self.elites, genomes])
        pool_rewards = np.concatenate([self.elite_rewards, rewards])
        order = np.argsort(-pool_rewards, kind="stable")[:self.mu]
        self.elites, self.elite_rewards = pool[order], pool_rewards[order]


class CMAEmitter(Emitter):
    """CMA-ES from ribs (``ribs.emitters.opt.CMAEvolutionStrategy``) started at the parent with step
    size sigma0, offspring ranked by reward (the better half are CMA-ES's parents). The reference of
    the improvement is the mean reward of the last generation's better half (the parent at first)."""

    kind = "cma"

    def __init__(self, parent: np.ndarray, **kwargs: Any):
        super().__init__(parent, **kwargs)
        ribs = require_ribs()
        self.es = ribs.emitters.opt.CMAEvolutionStrategy(
            sigma0=self.sigma0, solution_dim=self.parent.size, batch_size=self.population,
            seed=int(self.rng.integers(0, 2**31 - 1)))
        self.es.reset(self.parent)
        self.reference = self.parent_reward

    def ask(self) -> np.ndarray:
        return np.array(self.es.ask(), dtype=np.float64)

    def _reference(self) -> float:
        return float(self.reference)

    def _update(self, genomes: np.ndarray, rewards: np.ndarray) -> None:
        order = np.argsort(-rewards, kind="stable")
        parents = max(1, len(rewards) // 2)
        self.es.tell(order, rewards[order], parents)
        self.reference = float(rewards[order[:parents]].mean())
        # ribs' stop tests (ill-conditioned or collapsed distribution); its flat-fitness test is
        # skipped: with a sparse reward a whole generation at 0 is common, and stagnation handles it
        if np.ptp(rewards) > 0 and self.es.check_stop(rewards[order]):
            self.forced_stop = True


EMITTERS: dict[str, type[Emitter]] = {"elitist": ElitistEmitter, "cma": CMAEmitter}


def _new_chunk(index: int) -> dict[str, Any]:
    return {"chunk": index, "exploration_evaluations": 0, "exploitation_evaluations": 0, "emitters_born": 0,
            "emitters_stopped": 0, "candidates_found": 0, "novel_from_emitters": 0, "improvements": []}


class SereneLearner(NoveltySearchLearner):
    """SERENE: novelty search and reward emitters under a meta-scheduler (module docstring)."""

    name = "serene"

    # ------------------------------------------------------------------ state
    def init_algo(self, hp: QDHyperparams, dim: int, descriptor_dim: int, rng: np.random.Generator) -> dict[str, Any]:
        ribs = require_ribs()
        algo = super().init_algo(hp, dim, descriptor_dim, rng)
        # the rewarding archive's seed comes from a child seed sequence, not from ``rng``: until the
        # first reward, serene's exploration draws exactly what ns does with the same seed
        child = np.random.default_rng(rng.bit_generator.seed_seq.spawn(1)[0])
        algo["rewarding"] = ribs.archives.ProximityArchive(
            solution_dim=dim, measure_dim=descriptor_dim, k_neighbors=1,
            novelty_threshold=max(hp.novelty_threshold, 1e-9), local_competition=True,
            seed=int(child.integers(0, 2**31 - 1)), extra_fields=EVALUATION_FIELD)
        algo.update({"population": np.zeros((0, dim)), "candidates": [], "pool": [], "current": None,
                     "left": 0, "turn": 0, "next_id": 0, "chunk": _new_chunk(0), "chunks": [],
                     "stopped_emitters": [], "asked": None, "evaluations": 0,
                     "totals": {"emitters_born": 0, "emitters_stopped": 0, "candidates_found": 0,
                                "exploration_evaluations": 0, "exploitation_evaluations": 0,
                                "novel_from_emitters": 0}})
        return algo

    # ------------------------------------------------------------------ the meta-scheduler
    @staticmethod
    def _has_work(algo: dict[str, Any]) -> bool:
        return bool(algo["current"] is not None or algo["candidates"] or algo["pool"])

    def _plan(self, algo: dict[str, Any], hp: QDHyperparams) -> tuple[str, bool]:
        """(phase of the next generation, whether a new chunk starts first), without changing anything."""
        for fresh in (False, True):
            c = _new_chunk(0) if fresh else algo["chunk"]
            used = c["exploration_evaluations"] + c["exploitation_evaluations"]
            share = hp.exploration_fraction * hp.chunk_evaluations
            if c["exploration_evaluations"] == 0 or c["exploration_evaluations"] + hp.population <= share:
                if c["exploitation_evaluations"] == 0:  # exploration comes first in a chunk
                    return "explore", fresh
            if self._has_work(algo) and used + hp.emitter_population <= hp.chunk_evaluations:
                return "exploit", fresh
            if not self._has_work(algo) and used + hp.population <= hp.chunk_evaluations:
                return "explore", fresh
        raise AssertionError("a fresh chunk always starts with exploration")

    def next_batch_size(self, algo: dict[str, Any], hp: QDHyperparams) -> int | None:
        phase, _ = self._plan(algo, hp)
        return hp.population if phase == "explore" else hp.emitter_population

    def _close_chunk(self, algo: dict[str, Any]) -> None:
        c = algo["chunk"]
        algo["chunks"].append(self._chunk_row(c))
        algo["chunk"] = _new_chunk(c["chunk"] + 1)

    @staticmethod
    def _chunk_row(c: dict[str, Any]) -> dict[str, Any]:
        row = {k: v for k, v in c.items() if k != "improvements"}
        row["mean_improvement"] = float(np.mean(c["improvements"])) if c["improvements"] else None
        return row

    def ask(self, algo: dict[str, Any], hp: QDHyperparams) -> np.ndarray:
        phase, fresh = self._plan(algo, hp)
        if fresh:
            self._close_chunk(algo)
        if phase == "explore":
            algo["asked"] = "explore"
            return algo["offspring"]
        if algo["current"] is None or algo["left"] <= 0:
            self._pick_emitter(algo, hp)
        algo["asked"] = "exploit"
        return algo["current"].ask()

    def _pick_emitter(self, algo: dict[str, Any], hp: QDHyperparams) -> None:
        """Bootstrap the next candidate, or give a Pareto-chosen pooled emitter a turn (alternating
        when there are both)."""
        bootstrap = bool(algo["candidates"]) and (not algo["pool"] or algo["turn"] % 2 == 0)
        algo["turn"] += 1
        if bootstrap:
            emitter = self._birth(algo, hp)
        else:
            pool = algo["pool"]
            scores = novelty(algo["archive"], np.stack([e.descriptor for e in pool]))
            points = np.column_stack([scores, [e.improvement or 0.0 for e in pool]])
            emitter = pool.pop(choose_pareto(points, algo["rng"]))
        algo["current"], algo["left"] = emitter, hp.bootstrap_generations

    def _birth(self, algo: dict[str, Any], hp: QDHyperparams) -> Emitter:
        candidates = algo["candidates"]
        scores = novelty(algo["archive"], np.stack([c["descriptor"] for c in candidates]))
        cand = candidates.pop(int(np.argmax(scores)))
        archive = algo["archive"]
        dim = cand["genome"].size
        others = np.concatenate([np.asarray(archive.data("solution")).reshape(-1, dim),
                                 algo["population"].reshape(-1, dim)])
        sigma0 = initial_step_size(cand["genome"], others) or hp.sigma
        emitter = EMITTERS[hp.emitter_type](
            cand["genome"], parent_reward=cand["reward"], descriptor=cand["descriptor"], sigma0=sigma0,
            population=hp.emitter_population, stagnation=hp.stagnation_generations,
            seed=int(algo["rng"].integers(0, 2**31 - 1)), ident=algo["next_id"], born_evaluation=algo["evaluations"],
            parent_evaluation=cand["evaluation"])
        algo["next_id"] += 1
        algo["chunk"]["emitters_born"] += 1
        algo["totals"]["emitters_born"] += 1
        return emitter

    def tell(self, algo: dict[str, Any], hp: QDHyperparams, genomes: np.ndarray, outcomes: list[Outcome]) -> None:
        rewards = np.array([o.ret for o in outcomes])
        algo["evaluations"] += len(outcomes)
        if algo["asked"] == "explore":
            scores = self.ns_step(algo, hp, genomes, outcomes)
            algo["population"] = np.asarray(genomes, dtype=np.float64).copy()
            for i in np.flatnonzero(rewards > 0):
                algo["candidates"].append({"genome": genomes[i].copy(), "reward": float(rewards[i]),
                                           "descriptor": outcomes[i].descriptor.copy(), "novelty": float(scores[i]),
                                           "evaluation": outcomes[i].index})
                algo["chunk"]["candidates_found"] += 1
                algo["totals"]["candidates_found"] += 1
            if len(algo["candidates"]) > hp.max_candidates:
                algo["candidates"].sort(key=lambda c: -c["novelty"])
                del algo["candidates"][hp.max_candidates:]
            algo["chunk"]["exploration_evaluations"] += len(outcomes)
            algo["totals"]["exploration_evaluations"] += len(outcomes)
            return
        emitter: Emitter = algo["current"]
        algo["last_emitter"] = emitter.ident
        measures = np.stack([o.descriptor for o in outcomes])
        ids = evaluations(outcomes)
        emitter.tell(genomes, rewards, measures, ids)
        archive = algo["archive"]
        before = len(archive)
        archive.add(genomes, measures=measures, objective=rewards, evaluation=ids)  # only the novel enough join
        novel = len(archive) - before
        algo["chunk"]["novel_from_emitters"] += novel
        algo["totals"]["novel_from_emitters"] += novel
        algo["chunk"]["exploitation_evaluations"] += len(outcomes)
        algo["totals"]["exploitation_evaluations"] += len(outcomes)
        algo["left"] -= 1
        if emitter.stopped:
            if emitter.turn_improvements:
                algo["chunk"]["improvements"].append(emitter.end_turn())
            self._retire(algo, emitter)
            algo["current"], algo["left"] = None, 0
        elif algo["left"] <= 0:
            algo["chunk"]["improvements"].append(emitter.end_turn())
            algo["pool"].append(emitter)
            algo["current"] = None

    @staticmethod
    def _to_rewarding(archive: Any, emitter: Emitter) -> None:
        if emitter.best_reward > 0:
            archive.add(emitter.best_genome[None, :], measures=emitter.best_descriptor[None, :],
                        objective=np.array([emitter.best_reward]), evaluation=np.array([emitter.best_evaluation]))

    def _retire(self, algo: dict[str, Any], emitter: Emitter) -> None:
        self._to_rewarding(algo["rewarding"], emitter)
        algo["stopped_emitters"].append(emitter.stats())
        algo["chunk"]["emitters_stopped"] += 1
        algo["totals"]["emitters_stopped"] += 1

    # ------------------------------------------------------------------ outputs
    def generation_info(self, algo: dict[str, Any]) -> dict[str, Any]:
        explore = algo["asked"] == "explore"
        return {"phase": "exploration" if explore else "exploitation", "chunk": algo["chunk"]["chunk"],
                **({} if explore else {"emitter": algo.get("last_emitter")})}

    def _active(self, algo: dict[str, Any]) -> list[Emitter]:
        return [*algo["pool"], *([algo["current"]] if algo["current"] is not None else [])]

    def archives(self, algo: dict[str, Any]) -> dict[str, Any]:
        rewarding = copy.deepcopy(algo["rewarding"])
        for emitter in self._active(algo):  # emitters still running at the end add their best
            self._to_rewarding(rewarding, emitter)
        return {"novelty_archive": algo["archive"], "rewarding_archive": rewarding}

    def summary(self, algo: dict[str, Any]) -> dict[str, Any]:
        chunks = [*algo["chunks"], self._chunk_row(algo["chunk"])]
        return {"serene": {
            **algo["totals"], "chunks": chunks, "emitters_active": len(self._active(algo)),
            "candidates_left": len(algo["candidates"]),
            "emitters": [*algo["stopped_emitters"], *[{**e.stats(), "active": True} for e in self._active(algo)]],
        }}
