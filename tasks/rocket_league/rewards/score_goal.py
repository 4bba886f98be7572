# Dense reward for scoring on an empty net, in the style of rlgym's usual shaping terms:
#   approach   0.5 x car_vel_toward_ball / 2300: get to the ball (summed over an episode it is the
#              distance closed, so circling the ball earns nothing)
#   ball_goal  2 x ball_vel_toward_opp_goal / 6000: move the ball toward the opponent goal (summed,
#              the distance the ball travelled goalward)
#   goal       +10 for a goal, -10 for an own goal
# No per-touch bonus: a car that dribbles touches the ball on most steps and could farm it.
def compute_reward(state, action):
    approach = 0.5 * float(state.car_vel_toward_ball) / 2300.0
    ball_goal = 2.0 * float(state.ball_vel_toward_opp_goal) / 6000.0
    goal = 10.0 * float(state.goal_scored) - 10.0 * float(state.goal_conceded)
    return approach + ball_goal + goal, {"approach": approach, "ball_goal": ball_goal, "goal": goal}
