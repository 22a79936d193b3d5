"""hf_generate: transformers GPT-2 (from GPT2Config) generate() at batch 1, greedy, 128 new tokens
per call, again and again.

Expected once steady: launch_bound (one token per forward, each forward dozens of small kernels
dispatched from Python).

    python3 bench/workloads/frameworks/hf_generate.py --seconds 60
"""

from __future__ import annotations

from _fw import Meter, Run, log, parse_args, torch_device

EXPECTED = ("launch_bound", None)
NAME = "hf_generate"


def main() -> int:
    args = parse_args(__doc__)
    run = Run(NAME, args.seconds)
    run.ready()
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    dev = torch_device(args.device)
    cfg = GPT2Config()
    model = GPT2LMHeadModel(cfg).to(dev).eval()
    prompt = torch.randint(0, cfg.vocab_size, (1, 16), device=dev)
    meter = Meter(NAME, "tokens/s")
    with torch.no_grad():
        while run.running():
            out = model.generate(prompt, max_new_tokens=128, min_new_tokens=128, do_sample=False,
                                 pad_token_id=0)
            meter.add(out.shape[1] - prompt.shape[1])
    log(NAME, meter.mean())
    run.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
