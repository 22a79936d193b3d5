"""pl_checkpoint: a Lightning Trainer fitting a 300M-parameter MLP (1.2 GB in fp32) on random data,
with ModelCheckpoint saving every 20 training steps (weights and optimizer state, ~3.6 GB).

Expected once steady: checkpoint (the GPU idles while torch.save writes; counters show the writes,
stacks show torch.save under the checkpoint callback).

    python3 bench/workloads/frameworks/pl_checkpoint.py --dir /tmp/nt-ckpt --seconds 60
"""

from __future__ import annotations

from _fw import Run, log, parse_args

EXPECTED = ("checkpoint", "checkpoint")
NAME = "pl_checkpoint"


def main() -> int:
    args = parse_args(__doc__, lambda p: (p.add_argument("--dir", default="/tmp/nt-ckpt"),
                                          p.add_argument("--every", type=int, default=20)))
    run = Run(NAME, args.seconds)
    run.ready()
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import Callback, ModelCheckpoint

    class Net(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(*[torch.nn.Linear(8192, 8192) for _ in range(4)])

        def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
            (x,) = batch
            return self.net(x).float().pow(2).mean()

        def configure_optimizers(self):  # type: ignore[no-untyped-def]
            return torch.optim.SGD(self.parameters(), lr=1e-6, momentum=0.9)

    class Stop(Callback):
        def on_train_batch_end(self, trainer, *a) -> None:  # type: ignore[no-untyped-def]
            if not run.running():
                trainer.should_stop = True

    data = torch.utils.data.TensorDataset(torch.randn(256, 8192))
    dl = torch.utils.data.DataLoader(data, batch_size=128, num_workers=0)
    trainer = L.Trainer(accelerator="gpu" if args.device.startswith("cuda") else "cpu", devices=1,
                        precision="bf16-mixed", max_epochs=-1, max_time={"seconds": args.seconds + 60},
                        logger=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[ModelCheckpoint(dirpath=args.dir, every_n_train_steps=args.every, save_top_k=1),
                                   Stop()])
    trainer.fit(Net(), dl)
    log(NAME, f"{trainer.global_step} steps")
    run.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
