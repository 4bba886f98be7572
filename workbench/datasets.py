"""Offline data: Minari datasets the workbench records from its own tasks (nothing downloads here).

A dataset is collected by rolling a policy (``random``, a run's final model or its latest
checkpoint) through the task's env, or by converting a run's stable-baselines3 replay buffer
(D4RL's "medium-replay"). Each dataset carries, in its Minari metadata, the resolved task that made
it (``workbench_task``), the policy (``workbench_policy``) and the D4RL-style reference scores (the
simulator's own return of a random and of an expert policy), so a normalised score can be given for
any policy evaluated on that task. Datasets live where Minari keeps them: ``MINARI_DATASETS_PATH``
or ``~/.minari/datasets``.

Offline learners read a dataset through :func:`load_transitions` after :func:`check_spaces` has
matched it to the task's env; both raise one :class:`~workbench.errors.TaskError` (exit 2) for a
user's mistake.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from workbench.errors import MissingDependency, TaskError, WorkbenchError
from workbench.evaluate import EVAL_SEED_OFFSET, policy_actor, reference_actor, run_episode

if TYPE_CHECKING:
    from workbench.task import Task

__all__ = ["Transitions", "require_minari", "check_dataset_id", "open_dataset", "load_transitions", "check_spaces",
           "reference_scores", "normalized_score", "dataset_summary", "list_datasets", "record_rollouts",
           "record_replay_buffer", "RandomPolicy", "ActFor", "policy_acts", "reference_acts", "noisy",
           "episode_returns", "collect", "TASK_KEY", "POLICY_KEY"]

TASK_KEY = "workbench_task"  # metadata: the resolved task (JSON) the data was recorded in
POLICY_KEY = "workbench_policy"  # metadata: what acted (JSON)
ENV_RETURNS_KEY = "workbench_env_returns"  # metadata: [mean, std] of the episodes' simulator returns


def require_minari() -> Any:
    try:
        import minari
    except ImportError:
        raise MissingDependency("offline datasets (workbench data, the bc / mopo / morec learners)", "offline",
                                "minari") from None
    return minari


@contextmanager
def _quiet_minari() -> Iterator[None]:
    """Minari warns about every optional metadata key left empty (author_email, eval_env, ...)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"minari\..*")
        yield


def check_dataset_id(name: str, *, file: str | Path | None = None, key: str | None = None) -> str:
    """``name`` when it is a Minari dataset id (``[namespace/]name-vN``), else a TaskError."""
    require_minari()
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(name)
    except ValueError:
        raise TaskError(f"{name!r} is not a dataset id", file=file, key=key,
                        hint="ids look like halfcheetah-medium-v0 or workbench/hopper-random-v0 "
                             "(a name, then -v and a version number)") from None
    return name


def open_dataset(name: str, *, file: str | Path | None = None, key: str | None = None) -> Any:
    """The local Minari dataset ``name``; an unknown id is a TaskError listing the local ones."""
    minari = require_minari()
    check_dataset_id(name, file=file, key=key)
    local = sorted(minari.list_local_datasets())
    if name not in local:
        raise TaskError(f"no local dataset {name!r} (in {_root()})", file=file, key=key,
                        hint=(f"local datasets: {', '.join(local)}; " if local else "there are none yet; ")
                        + "record one with `workbench data collect TASK.yaml --policy random --episodes 100 "
                          f"--out {name}`")
    with _quiet_minari():
        return minari.load_dataset(name)


def _root() -> Path:
    from minari.storage.datasets_root_dir import get_dataset_path

    return Path(get_dataset_path())


def _metadata(dataset: Any) -> dict[str, Any]:
    return dict(dataset.storage.metadata)


def _json_meta(dataset: Any, key: str) -> Any:
    raw = _metadata(dataset).get(key)
    try:
        return json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return None


# ----------------------------------------------------------------------------- reading


@dataclass
class Transitions:
    """A dataset flattened to transitions (one row per step, episodes in order)."""

    observations: np.ndarray  # [N, obs_dim] float32
    actions: np.ndarray  # [N, act_dim] float32
    rewards: np.ndarray  # [N] float32
    next_observations: np.ndarray  # [N, obs_dim] float32
    terminals: np.ndarray  # [N] bool: the episode ended in a terminal state (not a time limit)
    episode_starts: np.ndarray  # [N] bool: the first step of an episode
    episode_returns: np.ndarray  # [episodes] float64: each episode's summed reward

    def __len__(self) -> int:
        return len(self.rewards)


def load_transitions(dataset: Any) -> Transitions:
    """Every episode of a Minari dataset with Box observations and actions, flattened."""
    obs, act, rew, nxt, term, start, returns = [], [], [], [], [], [], []
    for episode in dataset.iterate_episodes():
        o = np.asarray(episode.observations, dtype=np.float32).reshape(len(episode.observations), -1)
        n = len(episode.actions)
        obs.append(o[:-1])
        nxt.append(o[1:])
        act.append(np.asarray(episode.actions, dtype=np.float32).reshape(n, -1))
        r = np.asarray(episode.rewards, dtype=np.float32).reshape(n)
        rew.append(r)
        term.append(np.asarray(episode.terminations, dtype=bool).reshape(n))
        first = np.zeros(n, dtype=bool)
        first[:1] = True
        start.append(first)
        returns.append(float(r.sum()))
    if not obs:
        raise WorkbenchError(f"dataset {dataset.spec.dataset_id!r} has no episodes\n"
                             "  fix: record it again with --episodes > 0")
    return Transitions(np.concatenate(obs), np.concatenate(act), np.concatenate(rew), np.concatenate(nxt),
                       np.concatenate(term), np.concatenate(start), np.array(returns))


def _describe(space: gym.Space) -> str:
    if isinstance(space, gym.spaces.Box):
        return f"Box(shape={space.shape}, dtype={space.dtype})"
    if isinstance(space, gym.spaces.Dict):
        return "Dict(" + ", ".join(f"{k}: {_describe(v)}" for k, v in space.spaces.items()) + ")"
    return type(space).__name__


def check_spaces(dataset: Any, env: gym.Env, *, file: str | Path | None = None, key: str | None = None) -> None:
    """The dataset's observation and action spaces are Boxes of the env's shapes (else a TaskError)."""
    name = dataset.spec.dataset_id
    for what, theirs, ours in (("observation", dataset.observation_space, env.observation_space),
                               ("action", dataset.action_space, env.action_space)):
        if not isinstance(ours, gym.spaces.Box):
            raise TaskError(f"offline learners need a Box {what} space; the task's env has {_describe(ours)}",
                            file=file, key="sim.env_id", hint="use a task with continuous observations and actions")
        if not isinstance(theirs, gym.spaces.Box) or theirs.shape != ours.shape:
            task = _json_meta(dataset, TASK_KEY) or {}
            made = f" (recorded in {task.get('sim', {}).get('env_id')})" if task else ""
            raise TaskError(f"dataset {name!r}{made} has {what} space {_describe(theirs)}; this task's env has "
                            f"{_describe(ours)}", file=file, key=key,
                            hint="name a dataset recorded in this task's env (`workbench data list`), or record "
                                 "one: workbench data collect TASK.yaml --policy random --episodes 100 --out NAME")


def reference_scores(dataset: Any) -> tuple[float, float] | None:
    """(random, expert) mean simulator returns for the normalised score, when the dataset has both."""
    meta = _metadata(dataset)
    low, high = meta.get("ref_min_score"), meta.get("ref_max_score")
    if low is None or high is None or float(high) == float(low):
        return None
    return float(low), float(high)


def normalized_score(score: float, refs: tuple[float, float]) -> float:
    """D4RL's normalised score: 0 is the random policy, 100 the expert."""
    low, high = refs
    return 100.0 * (score - low) / (high - low)


def dataset_summary(name: str) -> dict[str, Any]:
    """What ``workbench data show`` prints: size, spaces, the task, the policy, reference scores."""
    dataset = open_dataset(name)
    returns_list, terminals = [], 0
    for episode in dataset.iterate_episodes():  # any observation space: only rewards and end flags are read
        returns_list.append(float(np.sum(episode.rewards)))
        terminals += int(np.sum(episode.terminations))
    returns = np.asarray(returns_list or [np.nan])
    task = _json_meta(dataset, TASK_KEY) or {}
    meta = _metadata(dataset)
    return {
        "id": name, "path": str(_root() / name), "episodes": int(dataset.total_episodes),
        "steps": int(dataset.total_steps), "observation_space": _describe(dataset.observation_space),
        "action_space": _describe(dataset.action_space), "task": task.get("name"),
        "env_id": task.get("sim", {}).get("env_id"), "policy": _json_meta(dataset, POLICY_KEY),
        "return_mean": float(returns.mean()), "return_std": float(returns.std()),
        "return_min": float(returns.min()), "return_max": float(returns.max()),
        "env_return": _json_meta(dataset, ENV_RETURNS_KEY),
        "terminals": terminals,
        "ref_min_score": meta.get("ref_min_score"), "ref_max_score": meta.get("ref_max_score"),
        "description": meta.get("description"),
    }


def list_datasets() -> list[dict[str, Any]]:
    """Every local dataset (id, episodes, steps, the task's name) without loading its data."""
    minari = require_minari()
    out = []
    with _quiet_minari():
        found = minari.list_local_datasets()
    for name, meta in sorted(found.items()):
        task = meta.get(TASK_KEY)
        try:
            task = json.loads(task) if isinstance(task, str) else {}
        except ValueError:
            task = {}
        out.append({"id": name, "episodes": meta.get("total_episodes"), "steps": meta.get("total_steps"),
                    "task": task.get("name"), "env_id": task.get("sim", {}).get("env_id"),
                    "policy": (json.loads(meta[POLICY_KEY]).get("kind") if isinstance(meta.get(POLICY_KEY), str)
                               else None)})
    return out


# ----------------------------------------------------------------------------- recording


class RandomPolicy:
    """Uniform random actions (the D4RL "random" policy), seeded; SB3-shaped ``predict``."""

    def __init__(self, space: gym.Space, seed: int):
        self.space = space
        self.space.seed(seed)

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        return np.asarray(self.space.sample()), None


def _refuse_existing(name: str, overwrite: bool) -> None:
    minari = require_minari()
    check_dataset_id(name, key="--out")
    if name in minari.list_local_datasets():
        if not overwrite:
            raise WorkbenchError(f"dataset {name!r} exists ({_root() / name})\n"
                                 "  fix: pick another --out name (e.g. bump -vN), or pass --force to replace it")
        minari.delete_dataset(name)


def _finish(dataset: Any, task: Task, policy: dict[str, Any], env_returns: list[float]) -> None:
    dataset.storage.update_metadata({
        TASK_KEY: json.dumps(task.spec.resolved_dict()), POLICY_KEY: json.dumps(policy),
        ENV_RETURNS_KEY: json.dumps([float(np.mean(env_returns)), float(np.std(env_returns))] if env_returns
                                    else None)})


def _refs(refs: tuple[float, float | None]) -> dict[str, Any]:
    low, high = refs
    # Minari stores both only when ref_max_score is given (and would then estimate a missing minimum
    # by building the env from its spec; ours is always given)
    return {"ref_min_score": low, "ref_max_score": high} if high is not None else {}


class _Recorder(gym.Wrapper):
    """Keeps each episode's observations, actions, rewards and end flags in Minari's buffer shape."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.episodes: list[dict[str, Any]] = []

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._current: dict[str, list[Any]] = {"observations": [obs], "actions": [], "rewards": [],
                                               "terminations": [], "truncations": []}
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        c = self._current
        c["observations"].append(obs)
        c["actions"].append(np.asarray(action))
        c["rewards"].append(float(reward))
        c["terminations"].append(bool(terminated))
        c["truncations"].append(bool(truncated))
        return obs, reward, terminated, truncated, info

    def close_episode(self) -> None:
        """The episode just run, as one buffer entry (its last step marked truncated if it was cut)."""
        c = self._current
        if c["actions"] and not (c["terminations"][-1] or c["truncations"][-1]):
            c["truncations"][-1] = True
        self.episodes.append({k: _stack(v) for k, v in c.items()} | {"infos": {}})


def _stack(items: list[Any]) -> Any:
    """One episode's per-step values in Minari's buffer shape: arrays, a dict of them per key
    (Dict spaces), or a list of strings (Text spaces)."""
    if items and isinstance(items[0], dict):
        return {key: _stack([item[key] for item in items]) for key in items[0]}
    if items and isinstance(items[0], str):
        return list(items)
    return np.asarray(items)


def _create(task: Task, name: str, episodes: list[dict[str, Any]], *, refs: tuple[float, float | None],
            policy_record: dict[str, Any], env_returns: list[float]) -> Any:
    minari = require_minari()
    from minari.data_collector.episode_buffer import EpisodeBuffer

    buffers = [EpisodeBuffer(id=i, **episode) for i, episode in enumerate(episodes)]
    env = task.make_env()
    try:
        with _quiet_minari():
            dataset = minari.create_dataset_from_buffers(
                name, buffers, env=env, algorithm_name=str(policy_record.get("kind")), author="rl-workbench",
                code_permalink="https://github.com/rl-workbench (workbench data collect)",
                description=f"{task.spec.name}: {len(episodes)} episodes of {policy_record.get('describe')}",
                # Minari JPEG-encodes image observations by default (lossy): a policy would train on
                # colours it never sees in the simulator. The workbench keeps the exact frames.
                jpeg_encoding=False, **_refs(refs))
            _finish(dataset, task, policy_record, env_returns)
    except BaseException:  # no half-written dataset under that id
        if name in minari.list_local_datasets():
            minari.delete_dataset(name)
        raise
    finally:
        env.close()
    return dataset


# What acts in an episode: given the live env, ``act(obs) -> action`` (a scripted reference reads the env).
ActFor = Callable[[gym.Env], Callable[[Any], Any]]


def policy_acts(policy: Any, *, deterministic: bool) -> ActFor:
    """An SB3-shaped policy as an :data:`ActFor`."""
    return lambda env: policy_actor(policy, deterministic=deterministic)


def reference_acts(task: Task) -> ActFor:
    """The adapter's scripted reference policy of ``task`` as an :data:`ActFor`."""
    reference = task.profile.reference
    if reference is None:
        raise WorkbenchError(f"{task.spec.sim.env_id} has no scripted reference policy\n"
                             "  fix: --policy random or a run directory")
    return lambda env: reference_actor(env, reference)


def noisy(act_for: ActFor, sigma: float, seed: int) -> ActFor:
    """``act_for`` plus Gaussian noise of ``sigma`` x the action range's half-width, clipped to the box."""
    def make(env: gym.Env) -> Callable[[Any], Any]:
        act, space = act_for(env), env.action_space
        if not isinstance(space, gym.spaces.Box):
            raise WorkbenchError(f"--noise needs a continuous (Box) action space, not {_describe(space)}\n"
                                 "  fix: drop --noise")
        rng = np.random.default_rng(seed)
        half = (space.high - space.low) / 2.0

        def noisy_act(obs: Any) -> Any:
            a = np.asarray(act(obs), dtype=np.float64)
            return np.clip(a + rng.normal(0.0, sigma, a.shape) * half, space.low, space.high).astype(space.dtype)
        return noisy_act
    return make


def episode_returns(task: Task, act_for: ActFor, *, episodes: int, seed: int, recorder: _Recorder | None = None,
                    progress: Callable[[int], None] | None = None) -> list[float]:
    """The simulator's own return of each of ``episodes`` episodes (episode i reset with ``seed + i``),
    kept by ``recorder`` when one is given (its env is then the one stepped)."""
    env = recorder if recorder is not None else task.make_env()
    act = act_for(env)
    returns: list[float] = []
    try:
        for i in range(episodes):
            total = [0.0]

            def on_step(action: Any, reward: Any, info: dict[str, Any], total: list[float] = total) -> None:
                total[0] += float(info.get("reward/env", reward))

            run_episode(env, act, seed=seed + i, on_step=on_step)
            if recorder is not None:
                recorder.close_episode()
            returns.append(total[0])
            if progress is not None:
                progress(i + 1)
    finally:
        env.close()
    return returns


def record_rollouts(task: Task, act_for: ActFor, *, name: str, episodes: int, seed: int,
                    refs: tuple[float, float | None], policy_record: dict[str, Any], overwrite: bool = False,
                    progress: Callable[[int], None] | None = None) -> Any:
    """``episodes`` episodes in ``task``'s env, acted by ``act_for`` (episode i reset with ``seed + i``),
    as the Minari dataset ``name``; ``refs`` = (random, expert or None) simulator returns."""
    _refuse_existing(name, overwrite)
    recorder = _Recorder(task.make_env())
    env_returns = episode_returns(task, act_for, episodes=episodes, seed=seed, recorder=recorder, progress=progress)
    return _create(task, name, recorder.episodes, refs=refs, policy_record=policy_record, env_returns=env_returns)


def record_replay_buffer(task: Task, buffer: Any, *, name: str, refs: tuple[float, float | None],
                         policy_record: dict[str, Any], overwrite: bool = False) -> Any:
    """A stable-baselines3 ReplayBuffer of one env (a SAC run's checkpoint) as the Minari dataset
    ``name``, episodes split where an episode ended (D4RL's medium-replay). An episode still
    running at the buffer's end is kept, cut off as truncated. Needs a buffer that did not wrap."""
    _refuse_existing(name, overwrite)
    if buffer.full:
        raise WorkbenchError("the replay buffer is full and has overwritten its oldest steps, so its episodes "
                             "are no longer whole\n  fix: record from a run whose buffer_size exceeds its steps")
    if buffer.n_envs != 1:
        raise WorkbenchError(f"the replay buffer holds {buffer.n_envs} envs' steps interleaved\n"
                             "  fix: record from a run with training.n_envs: 1")
    n = buffer.pos
    obs, nxt, act = buffer.observations[:n, 0], buffer.next_observations[:n, 0], buffer.actions[:n, 0]
    rew, done = buffer.rewards[:n, 0], buffer.dones[:n, 0].astype(bool)
    timeout = buffer.timeouts[:n, 0].astype(bool) if getattr(buffer, "timeouts", None) is not None \
        else np.zeros(n, dtype=bool)
    ends = np.flatnonzero(done)
    if len(ends) == 0 or ends[-1] != n - 1:
        ends = np.append(ends, n - 1)
    episodes, begin = [], 0
    for end in ends.tolist():
        sl = slice(begin, end + 1)
        terminated = done[sl] & ~timeout[sl]
        truncated = ~terminated & (np.arange(begin, end + 1) == end)
        episodes.append({"observations": np.concatenate([obs[sl], nxt[end:end + 1]]), "actions": act[sl],
                         "rewards": rew[sl], "terminations": terminated, "truncations": truncated, "infos": {}})
        begin = end + 1
    return _create(task, name, episodes, refs=refs, policy_record=policy_record, env_returns=[])


def _run_policy(run_dir: Path, *, checkpoint: bool) -> tuple[Any, dict[str, Any], Any]:
    """(policy, record, run) of a run directory: its final model, or its latest checkpoint."""
    from workbench.learner import load_policy
    from workbench.registry import LEARNERS
    from workbench.runs import Run

    run = Run.open(run_dir)
    if checkpoint:
        latest = run.latest_checkpoint()
        if latest is None:
            raise WorkbenchError(f"{run.path}: no checkpoint yet\n  fix: train the run further, or drop --checkpoint")
        step, directory = latest
        learner = run.resolved_task()["learner"]["name"]
        from workbench.spec import validate_task_data

        spec = validate_task_data(run.resolved_task(), file=str(run.path / "task.yaml"))
        policy = LEARNERS.get(learner).load_checkpoint(directory, spec)
        return policy, {"run": str(run.path), "step": step, "checkpoint": directory.name}, run
    policy = load_policy(run.path / "model")
    return policy, {"run": str(run.path), "step": run.info().get("steps"), "checkpoint": None}, run


def collect(task_file: Path, overrides: list[str], *, policy: str, out: str, episodes: int, seed: int = 0,
            checkpoint: bool = False, replay_buffer: bool = False, expert: str | None = None, noise: float = 0.0,
            deterministic: bool = True, reference_episodes: int = 10, overwrite: bool = False,
            progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """``workbench data collect``: record the dataset ``out`` in the task of ``task_file`` and
    return its summary. ``policy`` is ``random``, ``reference`` (the adapter's scripted policy) or a
    run directory (its final model; ``checkpoint``: its latest checkpoint; ``replay_buffer``: that
    checkpoint's SB3 replay buffer instead of new episodes); ``noise`` adds Gaussian action noise.
    The expert reference score is that of ``expert`` (a run directory or ``reference``), by default
    of the policy run's final model, or of the scripted reference when that is the policy."""
    from workbench.spec import load_task
    from workbench.task import Task

    require_minari()
    check_dataset_id(out, key="--out")
    spec = load_task(task_file, overrides, learner=False)  # recording trains nothing
    task = Task.build(spec)
    run = None
    if policy in ("random", "reference"):
        if checkpoint or replay_buffer:
            raise WorkbenchError("--checkpoint and --replay-buffer read a run directory\n"
                                 f"  fix: --policy RUN_DIR, or drop them for {policy} actions")
        if policy == "random":
            act_for = _random_acts(seed)
            record: dict[str, Any] = {"kind": "random", "describe": "uniform random actions"}
        else:
            act_for = reference_acts(task)
            record = {"kind": "reference", "describe": f"the scripted reference policy of {spec.sim.env_id}"}
    else:
        actor, where, run = _run_policy(Path(policy), checkpoint=checkpoint or replay_buffer)
        made_in = run.resolved_task()["sim"]
        if made_in.get("env_id") != spec.sim.env_id or made_in.get("name") != spec.sim.name:
            raise WorkbenchError(f"{run.path} trained in {made_in.get('name')}:{made_in.get('env_id')}, not in this "
                                 f"task's {spec.sim.name}:{spec.sim.env_id}\n  fix: pass a run of the same env")
        kind = "replay_buffer" if replay_buffer else "checkpoint" if checkpoint else "final_model"
        act_for = policy_acts(actor, deterministic=deterministic)
        record = {"kind": kind, "describe": f"{run.resolved_task()['learner']['name']} run {run.name} ({kind}, "
                                            f"step {where['step']})", **where}
    if noise:
        act_for = noisy(act_for, noise, seed)
        record.update(noise=noise, describe=f"{record['describe']} + Gaussian action noise {noise:g}")
    expert = expert or (str(run.path) if run is not None else "reference" if policy == "reference" else None)
    refs = _reference_returns(task, expert, episodes=reference_episodes, seed=seed)
    record["reference_expert"] = expert
    if replay_buffer:
        assert run is not None
        record_replay_buffer(task, _replay_buffer(run), name=out, refs=refs, policy_record=record, overwrite=overwrite)
    else:
        record_rollouts(task, act_for, name=out, episodes=episodes, seed=seed, refs=refs, policy_record=record,
                        overwrite=overwrite, progress=progress)
    return dataset_summary(out)


def _random_acts(seed: int) -> ActFor:
    return lambda env: policy_actor(RandomPolicy(env.action_space, seed), deterministic=False)


def _reference_returns(task: Task, expert: str | None, *, episodes: int, seed: int) -> tuple[float, float | None]:
    """(random, expert) mean simulator returns over ``episodes`` held-out starts (the evaluation's
    seeds); ``expert`` is a run directory (its final model) or ``reference`` (the scripted policy)."""
    from workbench.learner import load_policy

    start = seed + EVAL_SEED_OFFSET
    low = float(np.mean(episode_returns(task, _random_acts(seed), episodes=episodes, seed=start)))
    if expert is None:
        return low, None
    act_for = reference_acts(task) if expert == "reference" else \
        policy_acts(load_policy(Path(expert) / "model"), deterministic=True)
    return low, float(np.mean(episode_returns(task, act_for, episodes=episodes, seed=start)))


def _replay_buffer(run: Any) -> Any:
    """The SB3 replay buffer saved in a run's latest checkpoint (SAC / TD3 runs keep one)."""
    from stable_baselines3.common.save_util import load_from_pkl

    latest = run.latest_checkpoint()
    path = latest[1] / "replay_buffer.pkl" if latest else None
    if path is None or not path.is_file():
        raise WorkbenchError(f"{run.path}: its latest checkpoint has no replay_buffer.pkl (only off-policy "
                             "learners such as sac keep one)\n  fix: use a sac run, or drop --replay-buffer")
    return load_from_pkl(path)
