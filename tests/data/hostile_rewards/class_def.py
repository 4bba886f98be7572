# expect: 'class' definitions
# A class can override __getattr__/__del__ and run code at odd times.
class Evil:
    def __del__(self):
        pass


def compute_reward(state, action):
    return 0.0
