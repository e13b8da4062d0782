"""diffusion-plus-score: per-joint action error of a checkpoint on held-out episodes, beside blind predictors."""

import json

import numpy as np
import pandas as pd
import pytest
from cli import run_cli

from lerobot_policy_diffusion_plus import score


@pytest.fixture(scope="module")
def checkpoint(pusht_dataset, tmp_path_factory):
    """An untrained keypoint policy saved as lerobot-train saves one (config, weights, processors)."""
    from lerobot.configs.types import FeatureType
    from lerobot.datasets import LeRobotDatasetMetadata
    from lerobot.utils.feature_utils import dataset_to_policy_features
    from lerobot.policies.factory import make_pre_post_processors

    from lerobot_policy_diffusion_plus import DiffusionPlusConfig
    from lerobot_policy_diffusion_plus.modeling_diffusion_plus import DiffusionPlusPolicy

    meta = LeRobotDatasetMetadata("local/pusht3", root=pusht_dataset)
    features = dataset_to_policy_features(meta.features)
    config = DiffusionPlusConfig(
        device="cpu", down_dims=(16, 32, 64), diffusion_step_embed_dim=16, n_groups=4,
        input_features={k: f for k, f in features.items() if f.type is not FeatureType.ACTION},
        output_features={k: f for k, f in features.items() if f.type is FeatureType.ACTION},
    )
    out = tmp_path_factory.mktemp("score") / "pretrained_model"
    DiffusionPlusPolicy(config).save_pretrained(out)
    pre, post = make_pre_post_processors(config, dataset_stats=meta.stats)
    pre.save_pretrained(out)
    post.save_pretrained(out)
    return out


def _table(root):
    return pd.concat(pd.read_parquet(p) for p in sorted((root / "data").rglob("*.parquet")))


def test_scores_the_last_episodes_beside_blind_predictors(checkpoint, pusht_dataset, tmp_path):
    out = tmp_path / "score.json"
    score.main(["--checkpoint", str(checkpoint), "--dataset.root", str(pusht_dataset),
                "--dataset.repo_id", "local/pusht3", "--held-out", "1", "--every", "2", "--json", str(out)])
    result = json.loads(out.read_text())
    table = _table(pusht_dataset)
    last = table[table["episode_index"] == 2]
    action = np.stack(last["action"].to_numpy())[::2]
    state = np.stack(last["observation.state"].to_numpy())[::2]
    assert result["held_out_episodes"] == [2] and result["frames"] == len(action)
    # "hold" computed here from the parquet files: the current position as the action.
    np.testing.assert_allclose(result["errors"]["hold"]["all"], np.abs(action - state).mean(0), atol=1e-3)
    moving = (np.abs(action - state) > 2.0).any(1)
    assert result["moving_frames"] == int(moving.sum())
    for name in ("policy", "state only"):
        errs = result["errors"][name]["all"]
        assert len(errs) == 2 and all(np.isfinite(errs)), (name, errs)


def test_state_only_predictor_is_least_squares_on_the_other_episodes(pusht_dataset):
    table = _table(pusht_dataset)
    fit = table[table["episode_index"] < 2]
    state = np.stack(fit["observation.state"].to_numpy()).astype(np.float64)
    action = np.stack(fit["action"].to_numpy()).astype(np.float64)
    predict = score.fit_state_only({"observation.state": state, "action": action})
    # Its residual is orthogonal to the inputs (the normal equations), so no other linear map does better.
    residual = predict(state) - action
    np.testing.assert_allclose(np.concatenate([state, np.ones((len(state), 1))], 1).T @ residual, 0, atol=1e-4)


def test_every_episode_held_out_is_refused(checkpoint, pusht_dataset):
    with pytest.raises(SystemExit, match=r"--held-out 3: expected 1..2"):
        score.main(["--checkpoint", str(checkpoint), "--dataset.root", str(pusht_dataset),
                    "--dataset.repo_id", "local/pusht3", "--held-out", "3"])


def test_the_command_is_installed(checkpoint, tmp_path):
    result = run_cli("diffusion-plus-score", "--checkpoint", str(checkpoint), "--dataset.repo_id", "local/x",
                     "--dataset.root", str(tmp_path))
    assert result.returncode == 2 and "not a LeRobotDataset" in result.stderr
