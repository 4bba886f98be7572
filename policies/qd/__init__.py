"""Quality-diversity explorers for sparse rewards (issue 16), on pyribs archives.

Learners (``learner.name``): ``ns`` (novelty search, ribs ProximityArchive, k-NN novelty), ``serene``
(SERENE: novelty search plus reward emitters under a meta-scheduler, :mod:`policies.qd.serene`), ``taxons``
and ``stax`` (novelty search / SERENE in a behaviour space an autoencoder learns from the episode's frames,
:mod:`policies.qd.taxons`, :mod:`policies.qd.behaviour`), and the
baselines ``map_elites`` (ribs GridArchive + Gaussian/IsoLine emitter + Scheduler), ``cma_me``
(ribs EvolutionStrategyEmitters) and ``random_search``. A genome is the flat parameter vector of a
small numpy MLP (:class:`MLPController`); the trained policy is the best genome (:class:`MLPPolicy`).
pyribs is the ``qd`` extra: ``pip install "rl-workbench[qd]"``.
"""

from policies.qd.genome import MLPController, MLPPolicy
from policies.qd.learners import (
    CMAMELearner,
    MapElitesLearner,
    NoveltySearchLearner,
    QDLearner,
    RandomSearchLearner,
    novelty,
)
from policies.qd.serene import SereneLearner
from policies.qd.taxons import StaxLearner, TaxonsLearner

__all__ = ["MLPController", "MLPPolicy", "QDLearner", "NoveltySearchLearner", "MapElitesLearner", "CMAMELearner",
           "RandomSearchLearner", "SereneLearner", "TaxonsLearner", "StaxLearner", "novelty"]
