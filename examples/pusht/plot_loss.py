"""Plot the training loss that lerobot-train logged: `python plot_loss.py train.log loss.png [LOG_FREQ]`.

lerobot-train prints one `step:... loss:...` line every `--log_freq` steps, with the step rounded
("2K"), so the step of the i-th line is taken as (i + 1) * LOG_FREQ.
"""

import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LINE = re.compile(r"\bstep:\S+ .*?\bloss:([0-9.eE+-]+)")


def parse(text: str, log_freq: int) -> tuple[list[int], list[float]]:
    losses = [float(m.group(1)) for m in LINE.finditer(text)]
    return [(i + 1) * log_freq for i in range(len(losses))], losses


def main(log_path: str, png_path: str, log_freq: str = "100") -> None:
    steps, losses = parse(open(log_path, errors="replace").read(), int(log_freq))
    if not steps:
        raise SystemExit(f"error: no 'step:... loss:...' lines in {log_path}")
    plt.figure(figsize=(6, 3.5))
    plt.plot(steps, losses)
    plt.yscale("log")
    plt.xlabel("optimizer step")
    plt.ylabel("training loss (MSE)")
    plt.title("diffusion_plus on PushT")
    plt.grid(alpha=0.3)
    plt.tight_layout()
    plt.savefig(png_path, dpi=120)
    print(f"wrote {png_path}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
