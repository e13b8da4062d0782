"""Scripted PushT expert: plans pushes in a private copy of gym-pusht's physics and records a LeRobotDataset.

    python examples/pusht/generate_expert.py --root DIR --episodes N --seed S [--no-images] [--noise X] [--force]

Episode i starts from `env.reset(seed=S + i)`. Before each push the expert copies the physics state into its own
pymunk world, walks the agent around the T to each of ~45 contact points on the T's edges, pushes into the edge
and scores every push step by the distance of the T's keypoints to the goal's. It executes the best
approach + push (the copy runs the same physics, so the push happens as simulated) and plans again. Every episode
is recorded, successful or not, with the features of `pusht_common.dataset_features`.
"""

from __future__ import annotations

import argparse
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pusht_common import TASK, create_dataset, tee_local_vertices  # noqa: E402

ENV_ID = "gym_pusht/PushT-v0"
MAX_STEPS = 300
AGENT_RADIUS = 15.0  # gym-pusht's agent circle
GAP = 3.0  # free space between the agent and the edge where an approach ends
ENTRY = 12.0  # the last approach leg runs this far along the edge normal, so the agent arrives square on
CORNER_MARGIN = 12.0  # extra room at the T's corners: the PD-controlled agent cuts corners of its target path
APPROACH_SPEED = 25.0  # target advance per step (px) while walking around the T
COARSE_PUSH = (8.0, 8)  # target advance per step (px), max steps
FINE_PUSH = (3.0, 6)  # slower, for placing the T precisely ...
FINE_BELOW = 20.0  # ... once its keypoint error (px) is below this
CHECK_COVERAGE_BELOW = 6.0  # keypoint error (px) under which the (slow) gym coverage test is worth running


# --- The T's geometry in its body frame ---------------------------------------------------------------------

@lru_cache(maxsize=1)
def tee_boxes() -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """(lo, hi) corners of the T's two rectangles (bar, stem)."""
    local = tee_local_vertices()
    return tuple((part.min(0), part.max(0)) for part in (local[:4], local[4:]))


def distance_to_tee(p: np.ndarray) -> float:
    return min(float(np.linalg.norm(np.maximum(np.maximum(lo - p, p - hi), 0.0))) for lo, hi in tee_boxes())


def segment_is_clear(p: np.ndarray, q: np.ndarray) -> bool:
    """Whether the agent can move from p to q without touching the T (each box grown by the agent radius)."""
    d = q - p
    for lo, hi in tee_boxes():
        lo, hi = lo - AGENT_RADIUS, hi + AGENT_RADIUS
        t0, t1 = 0.0, 1.0
        for k in range(2):
            if abs(d[k]) < 1e-12:
                if not lo[k] < p[k] < hi[k]:
                    t0, t1 = 1.0, 0.0
            else:
                ta, tb = (lo[k] - p[k]) / d[k], (hi[k] - p[k]) / d[k]
                t0, t1 = max(t0, min(ta, tb)), min(t1, max(ta, tb))
        if t1 - t0 > 1e-9:
            return False
    return True


def leave_tee(p: np.ndarray) -> np.ndarray:
    """The nearest point to p from which the agent can move freely (p itself when it already can)."""
    if segment_is_clear(p, p + 1e-6):
        return p
    exits = []
    for lo, hi in tee_boxes():
        lo, hi = lo - AGENT_RADIUS - 0.5, hi + AGENT_RADIUS + 0.5
        for k in range(2):
            for bound in (lo[k], hi[k]):
                q = p.copy()
                q[k] = bound
                if segment_is_clear(q, q + 1e-6):
                    exits.append(q)
    return min(exits, key=lambda q: np.linalg.norm(q - p))


@lru_cache(maxsize=1)
def contacts() -> tuple[np.ndarray, np.ndarray]:
    """Agent positions just off the T's edges, every ~10 px, and the edges' outward normals: (N, 2) each.

    A position is kept only where the agent fits, which drops the edges hidden inside the T and the inner
    corners between bar and stem."""
    points, normals = [], []
    for lo, hi in tee_boxes():
        for k in range(2):
            other = 1 - k
            n_samples = int(round((hi[other] - lo[other]) / 10)) + 1
            for sign, side in ((-1.0, lo[k]), (1.0, hi[k])):
                normal = np.zeros(2)
                normal[k] = sign
                for s in np.linspace(lo[other], hi[other], n_samples):
                    p = np.zeros(2)
                    p[k], p[other] = side, s
                    p = p + normal * (AGENT_RADIUS + GAP)
                    if distance_to_tee(p) >= AGENT_RADIUS + GAP - 1e-6:
                        points.append(p)
                        normals.append(normal)
    return np.array(points), np.array(normals)


@lru_cache(maxsize=1)
def route_graph() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nodes (the T's outer corners, then one entry point per contact), all-pairs path lengths and next hops."""
    offset = AGENT_RADIUS + CORNER_MARGIN
    corners = [
        np.array([x, y])
        for lo, hi in tee_boxes()
        for x in (lo[0] - offset, hi[0] + offset)
        for y in (lo[1] - offset, hi[1] + offset)
    ]
    corners = [c for c in corners if distance_to_tee(c) >= offset - 1e-6]
    points, normals = contacts()
    nodes = np.concatenate([np.array(corners), points + normals * ENTRY])
    n = len(nodes)
    dist = np.full((n, n), np.inf)
    for i in range(n):
        for j in range(n):
            if i == j or segment_is_clear(nodes[i], nodes[j]):
                dist[i, j] = np.linalg.norm(nodes[i] - nodes[j])
    hop = np.tile(np.arange(n), (n, 1))
    for k in range(n):  # Floyd-Warshall
        shorter = dist[:, k : k + 1] + dist[k : k + 1, :] < dist
        dist = np.where(shorter, dist[:, k : k + 1] + dist[k : k + 1, :], dist)
        hop = np.where(shorter, hop[:, k : k + 1], hop)
    return nodes, dist, hop


def approach_paths(agent: np.ndarray) -> list[list[np.ndarray]]:
    """Per contact, the shortest polyline (body frame) from `agent` around the T to the contact point."""
    nodes, dist, hop = route_graph()
    points, _ = contacts()
    start = leave_tee(agent)
    first_leg = np.array([np.linalg.norm(node - start) if segment_is_clear(start, node) else np.inf for node in nodes])
    n_corners = len(nodes) - len(points)
    paths = []
    for c, point in enumerate(points):
        entry = n_corners + c
        total = first_leg + dist[:, entry]
        node = int(np.argmin(total))
        path = [agent, start]
        while True:
            path.append(nodes[node])
            if node == entry:
                break
            node = int(hop[node, entry])
        paths.append(path + [point])
    return paths


# --- A private copy of the physics ----------------------------------------------------------------------------

class World:
    """gym-pusht's physics without rendering, restored from the live env's state."""

    def __init__(self, goal_pose: np.ndarray):
        from gym_pusht.envs.pusht import PushTEnv

        class Sim(PushTEnv):
            def _handle_collision(self, arbiter, space, data):
                pass  # gym counts contact points for its info dict only; reading them is slow

        self.sim = Sim(obs_type="state")
        self.goal_pose = np.array(goal_pose)
        self.goal_keypoints = keypoints(self.goal_pose)

    def restore(self, env) -> None:
        """Copy agent and block state (velocities too: pymunk moves bodies by their last velocity first)."""
        sim = self.sim
        sim._setup()
        sim.goal_pose = self.goal_pose
        sim.agent.position, sim.agent.velocity = env.agent.position, env.agent.velocity
        # Angle before position: setting the angle rotates the block about its centre of gravity, which would
        # move it away from the position just set (gym-pusht's own _set_state has that bug).
        sim.block.angle = env.block.angle
        sim.block.position = env.block.position
        sim.block.velocity, sim.block.angular_velocity = env.block.velocity, env.block.angular_velocity

    def step(self, action: np.ndarray) -> None:
        """PushTEnv.step's PD control and physics, minus observation and reward. Scalar float arithmetic in
        the same order as gym's numpy/Vec2d expression, so the result is bit-identical and several times faster."""
        sim, agent = self.sim, self.sim.agent
        ax, ay = float(action[0]), float(action[1])
        k_p, k_v, dt = sim.k_p, sim.k_v, sim.dt
        for _ in range(int(1 / (dt * sim.control_hz))):
            (px, py), (vx, vy) = agent.position, agent.velocity
            agent.velocity = (vx + (k_p * (ax - px) + k_v * (0 - vx)) * dt,
                              vy + (k_p * (ay - py) + k_v * (0 - vy)) * dt)
            sim.space.step(dt)

    def block_pose(self) -> np.ndarray:
        return np.array([*self.sim.block.position, self.sim.block.angle])

    def is_success(self) -> bool:
        return self.sim._get_coverage() > self.sim.success_threshold


def keypoints(pose: np.ndarray) -> np.ndarray:
    local = tee_local_vertices_cached()
    c, s = np.cos(pose[2]), np.sin(pose[2])
    return local @ np.array([[c, s], [-s, c]]) + pose[:2]


@lru_cache(maxsize=1)
def tee_local_vertices_cached() -> np.ndarray:
    return tee_local_vertices()


def pose_error(pose: np.ndarray, goal_keypoints: np.ndarray) -> float:
    """Mean distance (px) between the T's 8 keypoints and the goal's: position and angle in one unit."""
    return float(np.linalg.norm(keypoints(pose) - goal_keypoints, axis=1).mean())


# --- Planning ---------------------------------------------------------------------------------------------------

def to_world(pose: np.ndarray, local: np.ndarray) -> np.ndarray:
    c, s = np.cos(pose[2]), np.sin(pose[2])
    return np.asarray(local) @ np.array([[c, s], [-s, c]]) + pose[:2]


def walk(points: list[np.ndarray], step: float) -> list[np.ndarray]:
    """Targets spaced <= `step` along a polyline, ending on its last point."""
    points = np.array(points)
    lengths = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    n = max(1, int(np.ceil(lengths[-1] / step)))
    at = lengths[-1] * np.arange(1, n + 1) / n
    return list(np.stack([np.interp(at, lengths, points[:, 0]), np.interp(at, lengths, points[:, 1])], axis=1))


def candidate_plans(env, error: float) -> list[tuple[list[np.ndarray], int]]:
    """Per contact point and push speed: the action sequence and the index of its first push action."""
    pose = np.array([*env.block.position, env.block.angle])
    c, s = np.cos(pose[2]), np.sin(pose[2])
    agent_local = (np.array(env.agent.position) - pose[:2]) @ np.array([[c, -s], [s, c]])
    _, normals = contacts()
    plans = []
    for path, normal in zip(approach_paths(agent_local), normals):
        approach = walk([to_world(pose, p) for p in path], APPROACH_SPEED)
        inward = -to_world(pose, normal) + to_world(pose, np.zeros(2))
        for speed, n_steps in [COARSE_PUSH] + ([FINE_PUSH] if error < FINE_BELOW else []):
            push = [approach[-1] + inward * speed * k for k in range(1, n_steps + 1)]
            actions = [np.clip(a, 0, 512).astype(np.float32) for a in approach + push]
            plans.append((actions, len(approach)))
    return plans


def plan(env, world: World) -> list[np.ndarray]:
    """The best prefix (approach + some push steps) over all candidate pushes, by pose error and time."""
    goal = world.goal_keypoints
    error = pose_error(np.array([*env.block.position, env.block.angle]), goal)
    start = np.log(error + 1.0)
    best_cost, best = np.inf, None
    for actions, first_push in candidate_plans(env, error):
        world.restore(env)
        for i, action in enumerate(actions):
            world.step(action)
            error = pose_error(world.block_pose(), goal)
            if error < CHECK_COVERAGE_BELOW and world.is_success():
                cost = -1e6 + i
            elif i + 1 >= first_push:
                cost = (np.log(error + 1.0) - start) / (i + 1)
            else:
                continue
            if cost < best_cost:
                best_cost, best = cost, actions[: i + 1]
            if cost < -1e5:
                break
    return best


# --- Episodes and the dataset ------------------------------------------------------------------------------------

def make_env(with_images: bool):
    import gymnasium as gym
    import gym_pusht  # noqa: F401  (registers the env)

    obs_type = "pixels_agent_pos" if with_images else "environment_state_agent_pos"
    return gym.make(ENV_ID, obs_type=obs_type, max_episode_steps=MAX_STEPS)


def record(obs, env, action: np.ndarray, with_images: bool) -> dict:
    frame = {
        "observation.state": np.asarray(obs["agent_pos"], dtype=np.float32),
        "observation.environment_state": env.get_keypoints(env._block_shapes).flatten().astype(np.float32),
        "action": action,
        "task": TASK,
    }
    if with_images:
        frame["observation.image"] = obs["pixels"]
    return frame


def run_episode(seed: int, noise: float = 0.0, rng: np.random.Generator | None = None,
                with_images: bool = False) -> dict:
    """One expert episode from reset(seed): success, length, the dataset frames and the block pose per frame."""
    rng = rng if rng is not None else np.random.default_rng(seed)
    env = make_env(with_images)
    obs, _ = env.reset(seed=seed)
    sim = env.unwrapped
    world = World(sim.goal_pose)
    frames, poses, success, done = [], [], False, False
    while not done:
        for target in plan(sim, world):
            action = target
            if noise > 0:
                action = np.clip(target + rng.normal(0.0, noise, 2), 0, 512).astype(np.float32)
            frames.append(record(obs, sim, action, with_images))
            poses.append(np.array([*sim.block.position, sim.block.angle]))
            obs, _, terminated, truncated, info = env.step(action)
            success, done = bool(info["is_success"]), terminated or truncated
            if done:
                break
    env.close()
    return {"success": success, "length": len(frames), "frames": frames, "block_poses": poses}


def generate(root: Path, episodes: int, seed: int, with_images: bool = True, noise: float = 0.0,
             force: bool = False, repo_id: str = "local/pusht_expert") -> dict:
    """Record `episodes` expert episodes from seeds seed, seed+1, ...; returns success rate and mean length."""
    dataset = create_dataset(root, repo_id, with_images, force)
    rng = np.random.default_rng(seed)
    successes, lengths = 0, []
    for i in tqdm(range(episodes), desc="episodes", unit="ep"):
        result = run_episode(seed + i, noise, rng, with_images)
        for frame in result["frames"]:
            dataset.add_frame(frame)
        dataset.save_episode()
        successes += result["success"]
        lengths.append(result["length"])
    dataset.finalize()
    summary = {"success_rate": successes / episodes, "successes": successes, "mean_length": float(np.mean(lengths))}
    print(f"success rate {summary['success_rate']:.2f} ({successes}/{episodes}), "
          f"mean length {summary['mean_length']:.1f} steps")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="output dataset folder")
    parser.add_argument("--episodes", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0, help="episode i starts from env.reset(seed=SEED + i)")
    parser.add_argument("--no-images", action="store_true", help="skip observation.image (keypoints only)")
    parser.add_argument("--noise", type=float, default=0.0, help="std (px) of Gaussian noise added to actions")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --root")
    parser.add_argument("--repo-id", default="local/pusht_expert")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be >= 1")
    if args.noise < 0:
        parser.error("--noise must be >= 0")
    generate(args.root, args.episodes, args.seed, not args.no_images, args.noise, args.force, args.repo_id)


if __name__ == "__main__":
    main()
