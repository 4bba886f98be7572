# expect: '__import__'
# Import os through the builtin behind every import statement.
def compute_reward(state, action):
    __import__("os").system("id")
    return 0.0
