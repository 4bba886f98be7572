"""TAXONS (Paolo et al., "Unsupervised Learning and Exploration of Reachable Outcome Space", ICRA
2020) and STAX (Paolo et al., "Discovering and Exploiting Sparse Rewards in a Learned Behavior
Space", Evolutionary Computation 2024) as the learners ``taxons`` and ``stax``.

Both search in a behaviour space learned from pixels (:mod:`policies.qd.behaviour`): an
autoencoder over the episode's frames gives each agent a descriptor (its standardised bottleneck)
and a surprise (its reconstruction error).

* ``taxons``: novelty search in that space (ribs ProximityArchive, k-NN novelty, as ``ns``); each
  generation's parents are the most novel offspring or, with probability ``surprise_probability``,
  the most surprising; the autoencoder reads the final frame and is retrained every
  ``retrain_every`` generations for ``ae_epochs`` epochs.
* ``stax``: SERENE (:mod:`policies.qd.serene`: novelty search plus reward emitters under a
  meta-scheduler) in that space; the autoencoder reads ``frames`` frames over the episode (4 by
  default) and is retrained at intervals that grow by ``retrain_growth`` (1.5), each training
  early-stopped on held-out frames (``ae_patience`` 3).

After each training every archive (novelty and, for stax, rewarding), emitter candidate and emitter
is re-embedded from the stored frames of the episode it came from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from policies.qd.behaviour import LearnedSpaceMixin
from policies.qd.learners import NoveltySearchLearner
from policies.qd.serene import SereneLearner

if TYPE_CHECKING:
    from policies.qd.config import QDHyperparams
    from policies.qd.rollout import Outcome

__all__ = ["TaxonsLearner", "StaxLearner"]


class TaxonsLearner(LearnedSpaceMixin, NoveltySearchLearner):
    """TAXONS: novelty or surprise search in a behaviour space learned from the final frame."""

    name = "taxons"

    def init_algo(self, hp: QDHyperparams, dim: int, descriptor_dim: int, rng: np.random.Generator) -> dict[str, Any]:
        algo = super().init_algo(hp, dim, descriptor_dim, rng)
        self.learned_init(algo, hp, rng)
        algo.update(surprise_probability=hp.surprise_probability, selected_by=None,
                    selections={"novelty": 0, "surprise": 0})
        return algo

    def selection_scores(self, algo: dict[str, Any], novelty_scores: np.ndarray) -> np.ndarray:
        by = "surprise" if algo["rng"].random() < algo["surprise_probability"] else "novelty"
        algo["selected_by"] = by
        algo["selections"][by] += 1
        return np.asarray(algo["last_surprise"]) if by == "surprise" else novelty_scores

    def tell(self, algo: dict[str, Any], hp: QDHyperparams, genomes: np.ndarray, outcomes: list[Outcome]) -> None:
        self.embed(algo, outcomes)
        super().tell(algo, hp, genomes, outcomes)
        self.after_generation(algo)

    def generation_info(self, algo: dict[str, Any]) -> dict[str, Any]:
        return {"selected_by": algo["selected_by"], **self.learned_info(algo)}

    def summary(self, algo: dict[str, Any]) -> dict[str, Any]:
        return {"taxons": {"selected_by": dict(algo["selections"])}, **self.learned_summary(algo)}


class StaxLearner(LearnedSpaceMixin, SereneLearner):
    """STAX: SERENE in a behaviour space learned from several frames of the episode."""

    name = "stax"
    default_frames = 4
    default_patience = 3
    default_growth = 1.5
    learned_archives = ("archive", "rewarding")

    def init_algo(self, hp: QDHyperparams, dim: int, descriptor_dim: int, rng: np.random.Generator) -> dict[str, Any]:
        algo = super().init_algo(hp, dim, descriptor_dim, rng)
        self.learned_init(algo, hp, rng)
        return algo

    def tell(self, algo: dict[str, Any], hp: QDHyperparams, genomes: np.ndarray, outcomes: list[Outcome]) -> None:
        self.embed(algo, outcomes)
        super().tell(algo, hp, genomes, outcomes)
        self.after_generation(algo)

    def reembed_more(self, algo: dict[str, Any]) -> None:
        candidates, emitters = algo["candidates"], self._active(algo)
        ids = np.array([c["evaluation"] for c in candidates]
                       + [i for e in emitters for i in (e.parent_evaluation, e.best_evaluation)], dtype=np.int64)
        if not len(ids):
            return
        new = iter(self.encode_ids(algo, ids))
        for c in candidates:
            c["descriptor"] = next(new)
        for e in emitters:
            e.descriptor, e.best_descriptor = next(new), next(new)

    def generation_info(self, algo: dict[str, Any]) -> dict[str, Any]:
        return {**super().generation_info(algo), **self.learned_info(algo)}

    def summary(self, algo: dict[str, Any]) -> dict[str, Any]:
        out = super().summary(algo)
        out["stax"] = out.pop("serene")
        return {**out, **self.learned_summary(algo)}
