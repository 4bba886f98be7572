# expect: call to 'exec'
def compute_reward(state, action):
    exec("import os; os.system('id')")
    return 0.0
