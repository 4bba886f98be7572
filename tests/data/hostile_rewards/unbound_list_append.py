# expect: 'list' may only be called
# Count calls by mutating a read-only module-level list through list's unbound method.
calls = [0]


def compute_reward(state, action):
    list.append(calls, 1)
    return float(len(calls) > 3000) * 1e9
