"""CLIP reward throughput: the batched scoring a training run uses vs scoring frame by frame.

Side by side in one run on the same frames (rendered from the task's own camera):
- per-frame: what a plain open_clip user writes inside each env's step — ``preprocess(PIL image)``
  (open_clip's own transform), ``encode_image`` on a batch of one, cosine against cached prompt
  embeddings;
- batched: ``PixelReward`` as ``VecFrameReward`` calls it — the n envs' frames of one vector step
  preprocessed as one tensor and embedded in one forward pass.

Architecture speed does not depend on the weights, so random weights (none download here) give
the real timing. The last line is ``ratio=<batched frames/s ÷ per-frame frames/s>``.

    .venv/bin/python benchmarks/clip_batching.py [--model ViT-B-32] [--n-envs 16] [--steps 4] [--device auto]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from reward_synthesis.pixels.combine import compile_combine  # noqa: E402
from reward_synthesis.pixels.vlm import load_backbone  # noqa: E402
from reward_synthesis.pixels.vlm_rewards import ClipGoalSource, PixelReward  # noqa: E402
from workbench.sims.mujoco import MujocoAdapter  # noqa: E402
from workbench.spec import SimSpec  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
POSITIVE, NEGATIVE = "the tip of the robot arm touches the small red ball", "the robot arm is far from the red ball"


def render_frames(n: int, size: int) -> np.ndarray:
    env = MujocoAdapter().make_env(SimSpec(env_id="Reacher-v5", kwargs={"width": size, "height": size}),
                                   render_mode="rgb_array")
    env.reset(seed=0)
    frames = []
    for _ in range(n):
        env.step(env.action_space.sample())
        frames.append(env.render())
    env.close()
    return np.stack(frames)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--n-envs", type=int, default=16)
    ap.add_argument("--steps", type=int, default=4, help="vector steps timed per side")
    ap.add_argument("--size", type=int, default=224, help="camera frame size")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    import open_clip
    import torch
    from PIL import Image

    backbone = load_backbone(args.model, None, device=args.device)
    _, _, transform = open_clip.create_model_and_transforms(args.model, pretrained=None)
    opts = ClipGoalSource.Options(positive=POSITIVE, negative=NEGATIVE)
    scorer = ClipGoalSource.make_scorer(opts, backbone)
    batched = PixelReward("clip_goal", backbone, scorer, None, compile_combine("vlm", ["vlm"]))
    pos, neg = backbone.encode_text([POSITIVE, NEGATIVE])
    pos_t, neg_t = (torch.from_numpy(x).to(backbone.device) for x in (pos, neg))

    frames = render_frames(args.n_envs * args.steps, args.size)
    steps = frames.reshape(args.steps, args.n_envs, *frames.shape[1:])

    def per_frame(frame: np.ndarray) -> float:
        with torch.inference_mode():
            x = transform(Image.fromarray(frame)).unsqueeze(0).to(backbone.device)
            e = backbone.model.encode_image(x).float()
            e = e / e.norm(dim=-1, keepdim=True)
            return float((e @ pos_t - e @ neg_t).item())

    def sync() -> None:
        if backbone.device.startswith("cuda"):
            torch.cuda.synchronize()

    # Warm up both paths (allocator, kernels), then time them alternately on the same frames.
    per_frame(steps[0, 0])
    batched(steps[0], {})
    sync()
    t_single = t_batch = 0.0
    check = []
    for s in range(args.steps):
        t0 = time.perf_counter()
        one = [per_frame(f) for f in steps[s]]
        sync()
        t1 = time.perf_counter()
        total, comps = batched(steps[s], {})
        sync()
        t2 = time.perf_counter()
        t_single += t1 - t0
        t_batch += t2 - t1
        check.append(np.max(np.abs(np.array(one) - comps["vlm_raw"])))
    n = args.n_envs * args.steps
    fps_single, fps_batch = n / t_single, n / t_batch
    print(f"model={args.model} device={backbone.device} frames={args.size}x{args.size} n_envs={args.n_envs} "
          f"torch_threads={torch.get_num_threads()}")
    print(f"per-frame (open_clip transform, batch of 1): {fps_single:8.1f} frames/s")
    print(f"batched   (one forward pass per vec step):   {fps_batch:8.1f} frames/s")
    print(f"max |score difference| between the paths: {max(check):.2e} (PIL vs tensor resize)")
    print(f"ratio={fps_batch / fps_single:.3f}")


if __name__ == "__main__":
    main()
