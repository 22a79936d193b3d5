"""healthy_training: a real small training loop, transformer blocks in bf16 autocast, data on the GPU.

Known bottleneck by construction: a pre-norm transformer (4 blocks, d_model 2048, 16 heads, MLP 4x,
causal flash attention via scaled_dot_product_attention) trained with fused AdamW on synthetic
batches that already live on the GPU (8 x 1024 tokens), so the GPU is busy and dominated by large
GEMMs: tensor pipes well used. Expected nodetune verdict: compute_bound (healthy). Memory: ~6 GB
(fp32 weights + AdamW state ~3.2 GB, activations ~3 GB).

    python3 bench/workloads/healthy_training.py --seconds 60 --device cuda:0
"""

from __future__ import annotations

from _common import Meter, Run, log, parse_args, sync, torch_device

EXPECTED = ("compute_bound", None)
NAME = "healthy_training"


def _extra(p) -> None:
    p.add_argument("--d-model", type=int, default=2048)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=1024)


def build_model(torch, d: int, layers: int, heads: int):
    nn = torch.nn
    F = torch.nn.functional

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln1 = nn.LayerNorm(d)
            self.qkv = nn.Linear(d, 3 * d, bias=False)
            self.proj = nn.Linear(d, d, bias=False)
            self.ln2 = nn.LayerNorm(d)
            self.fc1 = nn.Linear(d, 4 * d, bias=False)
            self.fc2 = nn.Linear(4 * d, d, bias=False)

        def forward(self, x):
            b, t, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
            return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh"))

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList(Block() for _ in range(layers))
            self.ln = nn.LayerNorm(d)
            self.head = nn.Linear(d, d, bias=False)

        def forward(self, x):
            for blk in self.blocks:
                x = blk(x)
            return self.head(self.ln(x))

    return Model()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, _extra, argv)
    run = Run(NAME, args.seconds)
    import torch

    dev = torch_device(args.device)
    torch.manual_seed(0)
    model = build_model(torch, args.d_model, args.layers, args.heads).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01,
                            fused=dev.type == "cuda")
    amp_dtype = torch.bfloat16
    shape = (args.batch, args.seq, args.d_model)
    batches = [(torch.randn(shape, device=dev), torch.randn(shape, device=dev)) for _ in range(4)]
    nparams = sum(p.numel() for p in model.parameters())
    tokens = args.batch * args.seq

    def step(i: int):
        x, y = batches[i % len(batches)]
        with torch.autocast(device_type=dev.type, dtype=amp_dtype):
            out = model(x)
            loss = torch.nn.functional.mse_loss(out.float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for i in range(3):
        step(i)
    sync(dev)
    log(NAME, f"{nparams / 1e6:.0f}M params, {tokens} tokens/step, bf16 autocast on {dev}")
    meter = Meter(NAME, "tokens/s")
    run.ready()
    i = 0
    loss = None
    while run.running():
        loss = step(i)
        i += 1
        if i % 10 == 0:
            loss_value = loss.item()  # the one sync per 10 steps a logger would do
            meter.add(10 * tokens)
            if i % 200 == 0:
                log(NAME, f"step {i} loss {loss_value:.4f}")
    sync(dev)
    run.finish(meter.mean())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
