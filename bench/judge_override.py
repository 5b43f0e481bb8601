"""What the adaptive default's judge chose against: its fine-tuning phase
kept on every seed, whatever the held-out slice said.

Runs `recipes.py`'s recipe (n), the default as a user meets it, with
`holdout_judge.verdict` overridden to keep fine-tuning, and prints per
seed the validation accuracy of the fine-tuned model (its best epoch on
the slice), what the judge would have kept, the probe's and fine-tuning's
held-out scores, and the validation curve per epoch. Compare with the
default's own run of `recipes.py` (same seeds): where the judge kept the
probe, the probe's figure is the default's. Variants of the fine-tuning
phase's rates, for the diagnosis of a setting where it loses:

    --peak-lr 3e-4        the head's peak rate (default: adaptive.PEAK_LR)
    --block-factor 0.1    each block's rate that factor times the one above
                          (ULMFiT's spread), not the geometric PEAK_LR/LR_MULT
    --head-mult 0.1       the head's rate that factor times the peak

    KERAS_BACKEND=tensorflow python bench/judge_override.py --setting dtd10 --seeds 0 1 2
"""

import argparse
import time
from unittest import mock

import keras
from recipes import SETTINGS, Setting, recipe_n

from keras_transfer.heads.classifier_head import find_head
from keras_transfer.rates import rate_multipliers
from keras_transfer.recipes import adaptive

# The library's own, before they are patched.
VERDICT, RECIPE_MULTIPLIERS = adaptive.verdict, rate_multipliers.recipe_multipliers


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=list(SETTINGS), default="dtd10")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--peak-lr", type=float, default=adaptive.PEAK_LR)
    parser.add_argument("--block-factor", type=float)
    parser.add_argument("--head-mult", type=float)
    args = parser.parse_args()
    setting = Setting(args.setting)
    setting.require()
    would_keep = []

    def verdict(gained, lost, smallest):
        kept, test, rule = VERDICT(gained, lost, smallest)
        would_keep.append(kept)
        return "fine_tuned", test, rule

    def multipliers(model, lr_range):
        if args.block_factor is None:
            found = RECIPE_MULTIPLIERS(model, lr_range)
        else:
            found = rate_multipliers.block_multipliers(model, factor=args.block_factor)
        if args.head_mult is not None:
            found[find_head(model).name] = args.head_mult
        return found

    print(
        f"{args.setting}: fine-tuning kept on every seed; peak_lr={args.peak_lr:g}, "
        f"block_factor={args.block_factor}, head_mult={args.head_mult}"
    )
    for seed in args.seeds:  # as recipes.py seeds each run
        keras.utils.clear_session()
        keras.utils.set_random_seed(seed)
        start = time.perf_counter()
        with (
            # The slice's own model, not one trained again on every image.
            mock.patch.multiple(adaptive, verdict=verdict, PEAK_LR=args.peak_lr, RETRAIN=False),
            mock.patch.object(rate_multipliers, "recipe_multipliers", multipliers),
        ):
            accuracy, curve, decision = recipe_n(setting, seed)
        print(
            f"  seed {seed}: fine-tuned {accuracy:.4f} on val (the judge kept "
            f"{would_keep[-1]}); held-out: probe {decision['probe_holdout_accuracy']:.3f}, "
            f"fine-tuning's best {decision['fine_tune_holdout_accuracy']:.3f} (epoch "
            f"{decision['fine_tune_best_epoch'] + 1}); val per epoch "
            f"{[round(float(a), 3) for a in curve]}; {time.perf_counter() - start:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
