# expect: '.format'
# The template is built at run time, so only the call to .format can be caught.
def compute_reward(state, action):
    template = "{0." + "_" * 2 + "class" + "_" * 2 + "}"
    return float(len("%s".format(action) + template.format(action)))
