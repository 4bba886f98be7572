# expect: bare 'except:' is not allowed
# Catch everything, including the guard's time limit, and keep looping.
def compute_reward(state, action):
    total = 0.0
    for i in range(1000000):
        try:
            total += i
        except:
            pass
    return total
