# Dense TouchBall reward: pay for closing in on the ball, and a bonus for the touch itself.
#   approach  car_vel_toward_ball / 2300 each step, in [-1, 1]. Summed over an episode it is the
#             distance closed (a potential difference), so circling the ball earns nothing.
#   facing    0.05 x facing_ball: a small nudge to point the nose at the ball before driving.
#   touch     +10 on the step the car touches the ball (the episode ends there).
def compute_reward(state, action):
    approach = float(state.car_vel_toward_ball) / 2300.0
    facing = 0.05 * float(state.facing_ball)
    touch = 10.0 if float(state.ball_touched) > 0 else 0.0
    return approach + facing + touch, {"approach": approach, "facing": facing, "touch": touch}
