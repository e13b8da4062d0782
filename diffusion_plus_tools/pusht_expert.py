"""Scripted PushT expert: plans pushes in a private copy of gym-pusht's physics and records a LeRobotDataset.

    python examples/pusht/generate_expert.py --root DIR --episodes N --seed S \
        [--no-images] [--noise X [--labels executed|planned]] [--workers N] [--force]

Episode i starts from `env.reset(seed=S + i)`. Before each push the expert copies the physics state into its
own pymunk world and tries every contact point on the T's edges (one every 10 px): walk the agent around the
T to it, then push into the edge. Each push step is scored by how much it shrinks the distance between the
T's keypoints and the goal's, per step spent; reaching gym-pusht's success wins outright. The expert executes
the best approach + push, which happens exactly as simulated (same physics, same arithmetic), and plans again.

--noise X adds Gaussian noise (std X px) to every executed action, for more varied demos; planning again after
each push lets the expert recover. `--labels` says which action is recorded: the executed (noisy) one, or the
planned (clean) one, as in DART (Laskey et al. 2017): the states drift off the expert's path and each is
labelled with the action the plan meant, what a cloned policy needs once its own errors compound. Every
episode is recorded, successful or not, with the features of `pusht_data.dataset_features`.
"""

from __future__ import annotations

import argparse
import multiprocessing
from contextlib import nullcontext
from functools import lru_cache
from pathlib import Path

import numpy as np
from tqdm import tqdm

from diffusion_plus_tools.pusht_data import TASK, create_dataset, tee_local_vertices

ENV_ID = "gym_pusht/PushT-v0"
MAX_STEPS = 300
LABELS = ("executed", "planned")
AGENT_RADIUS = 15.0  # gym-pusht's agent circle
GAP = 3.0  # free space left between agent and edge where an approach ends
ENTRY = 12.0  # the approach's last leg runs this far along the edge normal, so the agent arrives square on
CORNER_MARGIN = 12.0  # extra room at the T's corners: the PD-controlled agent cuts the corners of its targets
APPROACH_SPEED = 25.0  # target advance per step (px) while walking around the T
COARSE_PUSH = (8.0, 8)  # pushes: target advance per step (px), number of steps
FINE_PUSH = (3.0, 6)  # slower pushes for placing the T precisely, tried ...
FINE_BELOW = 20.0  # ... once the keypoint error (px) is below this
SUCCESS_BELOW = 4.0  # coverage > 0.95 needs a keypoint error under ~3 px; only then is it worth computing


# --- The T in its body frame --------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def tee_vertices() -> np.ndarray:
    """(8, 2) body-frame keypoints; pusht_data builds a pymunk space for them, so compute them once."""
    return tee_local_vertices()


@lru_cache(maxsize=1)
def tee_boxes() -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """(lo, hi) corners of the T's two rectangles, bar then stem."""
    local = tee_vertices()
    return tuple((part.min(0), part.max(0)) for part in (local[:4], local[4:]))


def to_world(pose: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Body-frame points -> world, for a block pose (x, y, angle) as pymunk reports it."""
    c, s = np.cos(pose[2]), np.sin(pose[2])
    return np.asarray(local) @ np.array([[c, s], [-s, c]]) + pose[:2]


def to_body(pose: np.ndarray, world: np.ndarray) -> np.ndarray:
    c, s = np.cos(pose[2]), np.sin(pose[2])
    return (np.asarray(world) - pose[:2]) @ np.array([[c, -s], [s, c]])


def distance_to_tee(p: np.ndarray) -> float:
    return min(float(np.linalg.norm(np.maximum(np.maximum(lo - p, p - hi), 0.0))) for lo, hi in tee_boxes())


def grown_boxes() -> list[tuple[np.ndarray, np.ndarray]]:
    """The T's rectangles grown by the agent radius: where the agent's centre must not go.

    Square corners make it a little cautious at the T's outer corners, which is the safe side."""
    return [(lo - AGENT_RADIUS, hi + AGENT_RADIUS) for lo, hi in tee_boxes()]


def inside_grown_tee(p: np.ndarray) -> bool:
    return any(np.all(lo < p) and np.all(p < hi) for lo, hi in grown_boxes())


def segment_is_clear(p: np.ndarray, q: np.ndarray) -> bool:
    """Whether the agent can move straight from p to q without touching the T (slab test per grown box)."""
    d = q - p
    for lo, hi in grown_boxes():
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
    """p if the agent there is clear of the T, else the nearest clear point: straight out through an edge
    (after a push the agent still touches it), or diagonally into the nook between bar and stem (an agent
    caught where they meet drags the T along if it leaves through the bar)."""
    if not inside_grown_tee(p):
        return p
    xs = [p[0]] + [x for lo, hi in grown_boxes() for x in (lo[0] - 0.5, hi[0] + 0.5)]
    ys = [p[1]] + [y for lo, hi in grown_boxes() for y in (lo[1] - 0.5, hi[1] + 0.5)]
    exits = [np.array([x, y]) for x in xs for y in ys if not inside_grown_tee(np.array([x, y]))]
    return min(exits, key=lambda q: np.linalg.norm(q - p))


@lru_cache(maxsize=1)
def contacts() -> tuple[np.ndarray, np.ndarray]:
    """Agent positions just off the T's edges, every ~10 px, and the edges' outward normals: (N, 2) each.

    A position is kept only where the agent fits, which drops the edges inside the T and the inner corners
    between bar and stem."""
    points, normals = [], []
    for lo, hi in tee_boxes():
        for k in range(2):
            along = 1 - k
            n_samples = int(round((hi[along] - lo[along]) / 10)) + 1
            for sign, side in ((-1.0, lo[k]), (1.0, hi[k])):
                normal = np.zeros(2)
                normal[k] = sign
                for s in np.linspace(lo[along], hi[along], n_samples):
                    p = np.zeros(2)
                    p[k], p[along] = side, s
                    p += normal * (AGENT_RADIUS + GAP)
                    if distance_to_tee(p) >= AGENT_RADIUS + GAP - 1e-6:
                        points.append(p)
                        normals.append(normal)
    return np.array(points), np.array(normals)


@lru_cache(maxsize=1)
def route_graph() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shortest routes around the T, computed once in its body frame.

    Nodes are the T's outer corners (pushed out by the agent radius and a margin) and one entry point per
    contact. Returns the nodes, all-pairs route lengths and next hops (Floyd-Warshall over clear segments)."""
    offset = AGENT_RADIUS + CORNER_MARGIN
    corners = [
        np.array([x, y])
        for lo, hi in tee_boxes()
        for x in (lo[0] - offset, hi[0] + offset)
        for y in (lo[1] - offset, hi[1] + offset)
    ]
    corners = [c for c in corners if distance_to_tee(c) >= offset - 1e-6]  # drop those inside the other box
    points, normals = contacts()
    nodes = np.concatenate([np.array(corners), points + normals * ENTRY])
    n = len(nodes)
    dist = np.full((n, n), np.inf)
    for i in range(n):
        for j in range(n):
            if i == j or segment_is_clear(nodes[i], nodes[j]):
                dist[i, j] = np.linalg.norm(nodes[i] - nodes[j])
    hop = np.tile(np.arange(n), (n, 1))
    for k in range(n):
        via_k = dist[:, k : k + 1] + dist[k : k + 1, :]
        shorter = via_k < dist
        dist = np.where(shorter, via_k, dist)
        hop = np.where(shorter, hop[:, k : k + 1], hop)
    return nodes, dist, hop


def approach_paths(agent: np.ndarray) -> list[list[np.ndarray]]:
    """Per contact, the shortest polyline (body frame) from the agent around the T to the contact point."""
    nodes, dist, hop = route_graph()
    points, _ = contacts()
    start = leave_tee(agent)
    first_leg = np.array([np.linalg.norm(n - start) if segment_is_clear(start, n) else np.inf for n in nodes])
    n_corners = len(nodes) - len(points)
    paths = []
    for c, point in enumerate(points):
        entry = n_corners + c
        node = int(np.argmin(first_leg + dist[:, entry]))
        path = [agent, start] if start is not agent else [agent]
        while True:
            path.append(nodes[node])
            if node == entry:
                break
            node = int(hop[node, entry])
        paths.append(path + [point])
    return paths


# --- A private copy of the physics --------------------------------------------------------------------------


class World:
    """gym-pusht's physics without rendering or reward, restored from the live env's state."""

    def __init__(self, goal_pose: np.ndarray):
        from gym_pusht.envs.pusht import PushTEnv

        class Sim(PushTEnv):
            def _handle_collision(self, arbiter, space, data):
                pass  # gym counts contact points for its info dict only, and reading them is slow

        self.sim = Sim(obs_type="state")
        self.goal_pose = np.array(goal_pose)
        self.goal_keypoints = to_world(self.goal_pose, tee_vertices())

    def restore(self, env) -> None:
        """A fresh space with the env's agent and block, velocities included: pymunk moves bodies by their
        last velocity at the start of a step."""
        sim = self.sim
        sim._setup()
        sim.goal_pose = self.goal_pose
        sim.agent.position, sim.agent.velocity = env.agent.position, env.agent.velocity
        # Angle before position: setting the angle turns the block about its centre of gravity, which would
        # move it off a position set first (gym-pusht's own _set_state misplaces the block that way).
        sim.block.angle = env.block.angle
        sim.block.position = env.block.position
        sim.block.velocity, sim.block.angular_velocity = env.block.velocity, env.block.angular_velocity

    def step(self, action: np.ndarray) -> None:
        """PushTEnv.step's PD control and physics. Scalar floats in the order of gym's numpy/Vec2d expression,
        so the result is bit-identical and much faster."""
        sim, agent = self.sim, self.sim.agent
        ax, ay = float(action[0]), float(action[1])
        k_p, k_v, dt = sim.k_p, sim.k_v, sim.dt
        for _ in range(int(1 / (dt * sim.control_hz))):
            (px, py), (vx, vy) = agent.position, agent.velocity
            agent.velocity = (
                vx + (k_p * (ax - px) + k_v * (0 - vx)) * dt,
                vy + (k_p * (ay - py) + k_v * (0 - vy)) * dt,
            )
            sim.space.step(dt)

    def pose_error(self) -> float:
        """Mean distance (px) between the T's 8 keypoints and the goal's: position and angle in one unit."""
        pose = np.array([*self.sim.block.position, self.sim.block.angle])
        return float(np.linalg.norm(to_world(pose, tee_vertices()) - self.goal_keypoints, axis=1).mean())

    def is_success(self) -> bool:
        return self.sim._get_coverage() > self.sim.success_threshold


# --- Planning -----------------------------------------------------------------------------------------------


def walk(points: list[np.ndarray], step: float) -> list[np.ndarray]:
    """Targets evenly spaced, at most `step` apart, along a polyline; the last one is its end."""
    points = np.array(points)
    lengths = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    n = max(1, int(np.ceil(lengths[-1] / step)))
    at = lengths[-1] * np.arange(1, n + 1) / n
    return [np.array([np.interp(a, lengths, points[:, 0]), np.interp(a, lengths, points[:, 1])]) for a in at]


def candidate_plans(env, error: float) -> list[tuple[list[np.ndarray], int]]:
    """Per contact point and push speed: the actions (approach, then push) and how many approach steps."""
    pose = np.array([*env.block.position, env.block.angle])
    rotation = to_world(pose, np.eye(2)) - pose[:2]  # rows: body axes in the world
    pushes = [COARSE_PUSH] + ([FINE_PUSH] if error < FINE_BELOW else [])
    plans = []
    for path, normal in zip(approach_paths(to_body(pose, env.agent.position)), contacts()[1]):
        approach = walk(to_world(pose, path), APPROACH_SPEED)
        inward = -normal @ rotation
        for speed, n_steps in pushes:
            push = [approach[-1] + inward * speed * k for k in range(1, n_steps + 1)]
            plans.append(([np.clip(a, 0, 512).astype(np.float32) for a in approach + push], len(approach)))
    return plans


def plan(env, world: World) -> list[np.ndarray]:
    """The best prefix (approach + some push steps) of all candidate plans.

    Best = the soonest to reach success, else the largest drop in log keypoint error per step: a rate, so
    long walks must buy proportionally more progress, and the same rule works 100 px or 3 px from the goal."""
    world.restore(env)
    error = world.pose_error()
    start = np.log(error + 1.0)
    best_score, best = None, None
    for actions, n_approach in candidate_plans(env, error):
        world.restore(env)
        for i, action in enumerate(actions):
            world.step(action)
            error = world.pose_error()
            succeeded = error < SUCCESS_BELOW and world.is_success()
            if succeeded:
                score = (1, -i)
            elif i >= n_approach:
                score = (0, (start - np.log(error + 1.0)) / (i + 1))
            else:
                continue
            if best is None or score > best_score:
                best_score, best = score, actions[: i + 1]
            if succeeded:
                break
    return best


# --- Episodes and the dataset -------------------------------------------------------------------------------


def make_env(with_images: bool):
    import gymnasium as gym
    import gym_pusht  # noqa: F401  (registers the env)

    obs_type = "pixels_agent_pos" if with_images else "environment_state_agent_pos"
    return gym.make(ENV_ID, obs_type=obs_type, max_episode_steps=MAX_STEPS)


def make_frame(obs: dict, env, action: np.ndarray, with_images: bool) -> dict:
    frame = {
        "observation.state": np.asarray(obs["agent_pos"], dtype=np.float32),
        # What obs["environment_state"] holds; computed here because the pixel observation lacks it.
        "observation.environment_state": env.get_keypoints(env._block_shapes).flatten().astype(np.float32),
        "action": action,
        "task": TASK,
    }
    if with_images:
        frame["observation.image"] = obs["pixels"]
    return frame


def run_episode(seed: int, noise: float = 0.0, rng: np.random.Generator | None = None,
                with_images: bool = False, labels: str = "executed") -> dict:
    """One expert episode from reset(seed). Returns success, length (steps), the dataset frames and the block
    pose (x, y, angle) at each frame. `noise` (px) is the std of Gaussian noise added to every action, drawn
    from `rng` (default: seeded with `seed`, so an episode is reproducible); `labels` ("executed" or
    "planned") picks the action recorded when there is noise."""
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {LABELS}, got {labels!r}")
    rng = rng if rng is not None else np.random.default_rng(seed)
    env = make_env(with_images)
    obs, _ = env.reset(seed=seed)
    live = env.unwrapped
    world = World(live.goal_pose)
    frames, poses, success, done = [], [], False, False
    while not done:
        for planned in plan(live, world):
            action = planned
            if noise > 0:
                action = np.clip(planned + rng.normal(0.0, noise, 2), 0, 512).astype(np.float32)
            label = planned if labels == "planned" else action
            frames.append(make_frame(obs, live, np.asarray(label, dtype=np.float32), with_images))
            poses.append(np.array([*live.block.position, live.block.angle]))
            obs, _, terminated, truncated, info = env.step(action)
            success, done = bool(info["is_success"]), terminated or truncated
            if done:
                break
    env.close()
    return {"success": success, "length": len(frames), "frames": frames, "block_poses": poses}


def _episode(job: tuple[int, float, bool, str]) -> dict:
    seed, noise, with_images, labels = job
    return run_episode(seed, noise, with_images=with_images, labels=labels)


def generate(root: Path, episodes: int, seed: int, with_images: bool = True, noise: float = 0.0,
             force: bool = False, repo_id: str = "local/pusht_expert", workers: int = 1,
             labels: str = "executed") -> dict:
    """Record expert episodes from seeds seed .. seed + episodes - 1; returns success rate and mean length.

    With workers > 1 the episodes are planned in that many processes; each depends on its seed only, so the
    dataset is the same, written in seed order."""
    dataset = create_dataset(root, repo_id, with_images, force)
    successes, lengths = 0, []
    jobs = [(seed + i, noise, with_images, labels) for i in range(episodes)]
    # spawn: fresh worker interpreters, nothing forked from this process's threads and open dataset files.
    with multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else nullcontext() as pool:
        results = pool.imap(_episode, jobs) if pool else map(_episode, jobs)
        for result in tqdm(results, total=episodes, desc="episodes", unit="ep"):
            for frame in result["frames"]:
                dataset.add_frame(frame)
            dataset.save_episode()
            successes += result["success"]
            lengths.append(result["length"])
    dataset.finalize()
    summary = {
        "success_rate": successes / episodes,
        "successes": successes,
        "mean_length": float(np.mean(lengths)),
    }
    print(f"success rate {summary['success_rate']:.2f} ({successes}/{episodes}), "
          f"mean length {summary['mean_length']:.1f} steps")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, required=True, help="output dataset folder")
    parser.add_argument("--episodes", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True, help="episode i starts from reset(seed=SEED + i)")
    parser.add_argument("--no-images", action="store_true", help="skip observation.image (keypoints only)")
    parser.add_argument("--noise", type=float, default=0.0, help="std (px) of Gaussian action noise")
    parser.add_argument("--labels", choices=LABELS, default="executed",
                        help="with --noise, record the executed (noisy) or the planned (clean, DART) action")
    parser.add_argument("--workers", type=int, default=1, help="processes planning episodes in parallel")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --root")
    parser.add_argument("--repo-id", default="local/pusht_expert")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be >= 1")
    if args.noise < 0:
        parser.error("--noise must be >= 0")
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    if args.labels == "planned" and args.noise == 0:
        parser.error("--labels planned needs --noise > 0 (without noise the planned action is the executed one)")
    generate(args.root, args.episodes, args.seed, not args.no_images, args.noise, args.force, args.repo_id,
             args.workers, args.labels)


if __name__ == "__main__":
    main()
