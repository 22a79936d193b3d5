"""hf_gpt2_train: transformers GPT2LMHeadModel built from GPT2Config (GPT-2 medium shape), trained
with AdamW in bf16 autocast on random tokens, batch 16 x 512.

Expected once steady: compute_bound (healthy: tensor pipes busy). Start-up: importing transformers,
building the model (GPT2LMHeadModel.__init__, weight init), moving it to the GPU, the first steps.

    python3 bench/workloads/frameworks/hf_gpt2_train.py --seconds 60
"""

from __future__ import annotations

from _fw import Meter, Run, log, parse_args, sync, torch_device

EXPECTED = ("compute_bound", None)
NAME = "hf_gpt2_train"


def main() -> int:
    args = parse_args(__doc__)
    run = Run(NAME, args.seconds)
    run.ready()
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    dev = torch_device(args.device)
    cfg = GPT2Config(n_layer=24, n_embd=1024, n_head=16, n_positions=1024)
    model = GPT2LMHeadModel(cfg).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=dev.type == "cuda")
    x = torch.randint(0, cfg.vocab_size, (16, 512), device=dev)
    meter = Meter(NAME, "steps/s")
    while run.running():
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        meter.add(1)
    sync(dev)
    log(NAME, meter.mean())
    run.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
