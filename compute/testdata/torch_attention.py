"""Writes torch_attention.onnx for compute/graph/attention_fusion_test.ts: four attention modules
written the ways real model code writes them, exported by torch.onnx (opset 17, dynamic axes):

- attn1, self-attention as diffusers' processors write it: head size computed from the projected
  tensor's shape, scores scaled by head_size ** -0.5 (exported as Pow of the computed size);
- attn2, cross-attention with a constant head size, scores divided by a constant √d;
- attn3, query and key each scaled by d ** -0.25 before the product (torch's SDPA decomposition),
  keys transposed in one permute(0, 2, 3, 1);
- attn4, with an additive mask on the scores: not plain attention, must be left alone.

Run: /usr/bin/python3 compute/testdata/torch_attention.py (deterministic)."""
import math
import os

import torch

os.chdir(os.path.dirname(os.path.abspath(__file__)))
torch.manual_seed(0)


class Attention(torch.nn.Module):
    def __init__(self, dim, context_dim, heads, style):
        super().__init__()
        self.heads, self.style, self.head_size = heads, style, dim // heads
        self.to_q = torch.nn.Linear(dim, dim, bias=False)
        self.to_k = torch.nn.Linear(context_dim, dim, bias=False)
        self.to_v = torch.nn.Linear(context_dim, dim, bias=False)
        self.to_out = torch.nn.ModuleList([torch.nn.Linear(dim, dim)])

    def forward(self, x, context, mask=None):
        batch = x.shape[0]
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
        d = q.shape[-1] // self.heads if self.style == "computed" else self.head_size
        q = q.view(batch, -1, self.heads, d).transpose(1, 2)
        v = v.view(batch, -1, self.heads, d).transpose(1, 2)
        if self.style == "prescaled":
            k_t = k.view(batch, -1, self.heads, d).permute(0, 2, 3, 1)
            scores = (q * d ** -0.25) @ (k_t * d ** -0.25)
        else:
            k_t = k.view(batch, -1, self.heads, d).transpose(1, 2).transpose(-1, -2)
            if self.style == "computed":
                scores = (q @ k_t) * (d ** -0.5)
            else:
                scores = (q @ k_t) / math.sqrt(d)
        if mask is not None:
            scores = scores + mask
        out = scores.softmax(dim=-1) @ v
        out = out.transpose(1, 2).reshape(batch, -1, self.heads * d)
        return self.to_out[0](out)


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.attn1 = Attention(16, 16, 2, "computed")
        self.attn2 = Attention(16, 12, 4, "constant")
        self.attn3 = Attention(16, 16, 2, "prescaled")
        self.attn4 = Attention(16, 16, 2, "constant")

    def forward(self, x, context, mask):
        x = x + self.attn1(x, x)
        x = x + self.attn2(x, context)
        x = x + self.attn3(x, x)
        return x + self.attn4(x, x, mask)


x, context, mask = torch.randn(2, 10, 16), torch.randn(2, 7, 12), torch.randn(2, 1, 10, 10)
torch.onnx.export(
    Block().eval(), (x, context, mask), "torch_attention.onnx",
    input_names=["hidden_states", "encoder_hidden_states", "mask"], output_names=["out"],
    opset_version=17,
    dynamic_axes={
        "hidden_states": {0: "batch", 1: "tokens"},
        "encoder_hidden_states": {0: "batch", 1: "sequence"},
        "mask": {0: "batch", 2: "tokens", 3: "tokens"},
        "out": {0: "batch", 1: "tokens"},
    },
)
