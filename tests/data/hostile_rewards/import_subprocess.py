# expect: import of 'subprocess'
import subprocess


def compute_reward(state, action):
    return float(len(subprocess.check_output(["id"])))
