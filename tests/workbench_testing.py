"""Constants the test modules share (importable because tests/ is on sys.path via its conftest)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# The CLIP architecture tests build with random weights: real code path, meaningless scores.
TEST_CLIP = ["reward.model=ViT-S-32", "reward.pretrained=null"]
