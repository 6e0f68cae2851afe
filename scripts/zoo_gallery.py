"""Write docs/zoo.md from the cards in registry/models (run after scripts/publish_model.py)."""
from pathlib import Path

from ganzoo.zoo import shipped_cards

REPO = Path(__file__).resolve().parent.parent
IMAGE_KEYS = ("fid", "kid", "precision", "recall", "density", "coverage", "class_kl", "label_accuracy")
POINT_KEYS = ("modes", "hq_fraction", "kl", "spread", "precision", "recall")


COUNTS = ("modes", "classes_covered")  # stored as floats, shown as counts


def fmt(key, v):
    if key in COUNTS and isinstance(v, float):
        return f"{v:.0f}"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def table(title, cards, keys) -> list[str]:
    """One markdown table of ``cards``: id, arch, loss, steps, training time, then ``keys``."""
    out = [title, "", "| id | arch | loss | steps | train time | " + " | ".join(keys) + " |",
           "|" + "---|" * (5 + len(keys))]
    for c in cards:
        out.append(f"| {c.id} | {c.architecture} | {loss_text(c)} | {c.raw['steps']} | "
                   f"{c.raw['training_time_s'] / 60:.0f} min | " +
                   " | ".join(fmt(k, c.metrics.get(k, "")) for k in keys) + " |")
    return out + [""]


def loss_text(card) -> str:
    config = card.raw.get("config") or {}
    weight = config.get("class_weight")  # a card written before methods (ganzoo 0.7)
    methods = list(config.get("methods") or []) + ([f"class-loss:weight={weight:g}"] if weight else [])
    return " + ".join([card.raw["loss"], *methods])


def main():
    cards = shipped_cards()
    out = ["# Model zoo", "",
           "Pretrained generators shipped in `registry/models/` (inside the wheel too, as "
           "`ganzoo/_registry/`), usable offline:", "",
           "```bash", "ganzoo list models", "ganzoo sample dcgan-fashion-mnist -n 64 --out grid.png",
           "ganzoo eval dcgan-fashion-mnist -n 10000", "ganzoo train --recipe dcgan-fashion-mnist --init dcgan-fashion-mnist --steps 2000 --out runs/dcgan-finetune   # fine-tune with its settings",
           "```", "",
           "`ganzoo.load_generator(\"dcgan-fashion-mnist\")` does the same from Python. Each card records the "
           "plugin and versions it needs and the sha256 of its weights, checked before anything is loaded. "
           "Image metrics are in the feature space of the shipped evaluator classifier "
           "(`registry/evaluators/`, see [evaluation.md](evaluation.md)); they are not comparable with "
           "Inception-based FIDs. The real-data floor (`ganzoo eval --real --dataset fashion-mnist`): "
           "FID 0.31, precision 0.887, recall 0.882, coverage 0.968.", ""]
    images = [c for c in cards if len(c.raw.get("data_shape", [])) == 3 and "fid" in c.metrics]
    stacked = [c for c in cards if c.raw.get("dataset") == "stacked-mnist"]
    points = [c for c in cards if len(c.raw.get("data_shape", [])) == 1]
    if images:
        out += table("## Image models", images, [k for k in IMAGE_KEYS if any(k in c.metrics for c in images)])
    if stacked:
        out += table("## Stacked MNIST (1,000 modes, 26,000 samples; docs/benchmarks.md)", stacked, ["modes", "kl"])
    if points:
        out += table("## 2-D models", points, list(POINT_KEYS))
    out += ["## Gallery and how each was trained", ""]
    for c in cards:
        out += [f"### {c.id}", "", c.description + ".", "",
                f"![{c.id}](zoo/{c.id}.png)", "",
                f"Trained with `{c.raw['command']}`"
                + (f" (recipe `{c.raw['recipe']}`: `ganzoo train --recipe {c.raw['recipe']}`, which holds the seed too)"
                   if c.raw.get("recipe") else "")
                + f" — {c.raw['steps']} steps in "
                f"{c.raw['training_time_s']:.0f} s on {c.raw['hardware']}. Weights: {c.raw['weights']}, "
                f"sha256 `{c.sha256[:16]}…`. Data: {c.raw['license']}."
                + (f" Note: {c.raw['note']}" if c.raw.get("note") else ""), ""]
    (REPO / "docs" / "zoo.md").write_text("\n".join(out))
    print(f"wrote docs/zoo.md ({len(cards)} models)")


if __name__ == "__main__":
    main()
