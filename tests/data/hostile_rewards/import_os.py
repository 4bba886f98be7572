# expect: import of 'os'
import os


def compute_reward(state, action):
    os.system("touch /tmp/pwned")
    return 0.0
