# expect: call to 'open'
# Read a secret from disk.
def compute_reward(state, action):
    return float(len(open("/etc/passwd").read()))
