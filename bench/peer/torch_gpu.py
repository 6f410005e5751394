#!/usr/bin/env python3
# The PyTorch side of bench/gpu.ts, on the same GPU in the same call: the card's measured bf16 matmul peak (the figure
# the addon's matmul is compared with) and an eager PyTorch forward of the DINOv3 ViT architecture (RECIPE §1:
# patch embedding, CLS + 4 storage tokens, 2-D RoPE on patch tokens, pre-norm blocks with LayerScale, SDPA attention,
# GELU MLP, final LayerNorm), ViT-S/16 and ViT-L/16 at 224×224, batch 64, with bf16 weights and with fp32 weights
# under bf16 autocast, optionally torch.compile'd. Random weights. Prints JSON and writes it to --out.
#   python3 bench/peer/torch_gpu.py --out bench/results/gpu-h100-torch.json [--compile]
# `--device cpu` (with small sizes) is a dry run of this script where there is no GPU.
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {"vits16": (384, 12, 6), "vitl16": (1024, 24, 16)}  # embed_dim, depth, heads; ffn_ratio 4, patch 16


def rope_tables(h, w, head_dim, base=100.0, device="cuda"):
    # DINOv3 RoPE: coords normalised to [-1, 1] per axis ("separate"), periods base^(2i/(d/2)), sin/cos tiled.
    d4 = head_dim // 4
    periods = base ** (2 * torch.arange(d4, device=device, dtype=torch.float32) / (head_dim // 2))
    ys = (torch.arange(h, device=device) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=device) + 0.5) / w * 2 - 1
    coords = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), -1).flatten(0, 1)  # [HW, 2]
    angles = 2 * math.pi * coords[:, :, None] / periods[None, None, :]  # [HW, 2, d4]
    angles = angles.flatten(1, 2).tile(2)  # [HW, head_dim]
    return angles.sin(), angles.cos()


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ls1 = nn.Parameter(torch.full((dim,), 1e-5))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)
        self.ls2 = nn.Parameter(torch.full((dim,), 1e-5))

    def forward(self, x, sin, cos, prefix):
        b, n, c = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        qp, kp = q[:, :, prefix:], k[:, :, prefix:]
        sin, cos = sin.to(q.dtype), cos.to(q.dtype)
        q = torch.cat((q[:, :, :prefix], qp * cos + rotate_half(qp) * sin), dim=2)
        k = torch.cat((k[:, :, :prefix], kp * cos + rotate_half(kp) * sin), dim=2)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
        x = x + self.ls1 * self.proj(a)
        return x + self.ls2 * self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    def __init__(self, dim, depth, heads, patch=16, storage=4):
        super().__init__()
        self.patch, self.heads = patch, heads
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.storage_tokens = nn.Parameter(torch.randn(1, storage, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x):
        b, _, hh, ww = x.shape
        h, w = hh // self.patch, ww // self.patch
        t = self.patch_embed(x).flatten(2).transpose(1, 2)
        prefix = 1 + self.storage_tokens.shape[1]
        t = torch.cat((self.cls_token.expand(b, -1, -1), self.storage_tokens.expand(b, -1, -1), t), dim=1)
        sin, cos = rope_tables(h, w, t.shape[-1] // self.heads, device=x.device)
        for blk in self.blocks:
            t = blk(t, sin, cos, prefix)
        return self.norm(t)[:, prefix:]


def time_ms(fn, iters, warmup, device="cuda"):
    for _ in range(warmup):
        fn()
    if device == "cpu":
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        return (time.perf_counter() - t0) * 1000 / iters
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / iters


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--res", type=int, default=224)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--models", default="vits16,vitl16")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--device", default="cuda")
    p.add_argument("--matmul", type=int, default=8192)
    a = p.parse_args()
    dev = a.device
    torch.manual_seed(0)
    n = a.matmul
    ma = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    mb = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    mm_ms = time_ms(lambda: ma @ mb, 50 if dev == "cuda" else 2, 5 if dev == "cuda" else 1, dev)
    out = {
        "benchmark": "gpu peer: PyTorch eager (same card, same call)",
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu",
        "config": {"resolution": a.res, "batch": a.batch, "iters": a.iters, "warmup": a.warmup},
        "matmul": {"n": n, "dtype": "bfloat16", "msPerCall": round(mm_ms, 4), "tflops": round(2 * n**3 / (mm_ms * 1e-3) / 1e12, 1)},
        "features": [],
    }
    del ma, mb
    x = torch.randn(a.batch, 3, a.res, a.res, device=dev)
    for name in a.models.split(","):
        r = {"model": name}
        for variant in ["bf16Weights", "autocastBf16"] + (["compiledAutocastBf16"] if a.compile else []):
            m = ViT(*PRESETS[name]).to(dev).eval()
            xin = x
            if variant == "bf16Weights":
                m = m.to(torch.bfloat16)
                xin = x.to(torch.bfloat16)
            fwd = torch.compile(m) if variant.startswith("compiled") else m

            def run():
                with torch.inference_mode(), torch.autocast(dev, torch.bfloat16, enabled=variant != "bf16Weights"):
                    return fwd(xin)

            ms = time_ms(run, a.iters, a.warmup + (5 if variant.startswith("compiled") else 0), dev)
            r[variant] = {"msPerBatch": round(ms, 3), "imgPerSec": round(a.batch * 1000 / ms, 1)}
            del m, fwd
            if dev == "cuda":
                torch.cuda.empty_cache()
        out["features"].append(r)
    out["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    s = json.dumps(out, indent=2)
    print(s)
    with open(a.out, "w") as f:
        f.write(s + "\n")


if __name__ == "__main__":
    main()
