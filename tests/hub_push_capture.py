"""Run lerobot-train's real entry point with the Hub's network calls replaced by a local capture.

Usage: python hub_push_capture.py CAPTURE_DIR -- <lerobot-train args>
Only the three calls that would reach the network are replaced (create a repo, upload a folder, validate a
model card's metadata); everything LeRobot and the plugin do to build the payload runs as in a real push.
Every uploaded file lands in CAPTURE_DIR/<repo_id>/ as it would in the Hub repo.
"""

import fnmatch
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
from huggingface_hub import HfApi, ModelCard


def main() -> None:
    capture = Path(sys.argv[1])
    train_argv = sys.argv[sys.argv.index("--") + 1 :]

    def create_repo(self, repo_id, **kwargs):
        (capture / repo_id).mkdir(parents=True, exist_ok=True)
        return SimpleNamespace(repo_id=repo_id, url=f"https://huggingface.co/{repo_id}")

    def upload_folder(self, repo_id, folder_path, allow_patterns=None, ignore_patterns=None, **kwargs):
        for path in Path(folder_path).rglob("*"):
            rel = path.relative_to(folder_path).as_posix()
            if path.is_dir() or (allow_patterns and not any(fnmatch.fnmatch(rel, p) for p in allow_patterns)):
                continue
            if ignore_patterns and any(fnmatch.fnmatch(rel, p) for p in ignore_patterns):
                continue
            target = capture / repo_id / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        url = SimpleNamespace(url=f"https://huggingface.co/{repo_id}")
        return SimpleNamespace(repo_url=url, commit_url=url.url, oid="local")

    HfApi.create_repo = create_repo
    HfApi.upload_folder = upload_folder
    huggingface_hub.create_repo = lambda repo_id, **kw: create_repo(None, repo_id, **kw)
    ModelCard.validate = lambda self, *a, **kw: None  # posts the card's YAML to the Hub for checking

    from lerobot.scripts.lerobot_train import main as train_main

    sys.argv = ["lerobot-train", *train_argv]
    train_main()


if __name__ == "__main__":
    main()
