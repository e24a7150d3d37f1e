"""ONNX export of shapes-tiny in the diffusers/Optimum folder layout (current Optimum era:
float32 IO, int64 input_ids, float rank-0 timestep, fixed channel dims) plus configs, tokenizer
files and the loss-curve figure."""

import csv
import json
import os

import torch

import model as M
import tokenizer as tok

OPSET = 17


class TextEncoderExport(torch.nn.Module):
    def __init__(self, te):
        super().__init__()
        self.te = te

    def forward(self, input_ids):
        h = self.te(input_ids)
        # CLIP's pooled output: the state at the end-of-text token (the largest id).
        pooled = h[torch.arange(h.shape[0]), input_ids.argmax(dim=-1)]
        return h, pooled


class VaeEncoderExport(torch.nn.Module):
    """`latent_parameters` = concat(mean, logvar); the autoencoder is deterministic, so logvar is
    a constant -30 (std 3e-7) and mean * scaling_factor is the latent."""

    def __init__(self, ae):
        super().__init__()
        self.encoder = ae.encoder

    def forward(self, sample):
        mean = self.encoder(sample)
        return torch.cat([mean, torch.full_like(mean, -30.0)], dim=1)


class VaeDecoderExport(torch.nn.Module):
    def __init__(self, ae):
        super().__init__()
        self.decoder = ae.decoder

    def forward(self, latent_sample):
        return self.decoder(latent_sample)


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def onnx_export(module, inputs, path, input_names, output_names, dynamic_axes):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.onnx.export(module, inputs, path, input_names=input_names, output_names=output_names,
                      dynamic_axes=dynamic_axes, opset_version=OPSET, do_constant_folding=True)
    import onnx
    m = onnx.load(path)
    onnx.checker.check_model(m)
    print(f"exported {path} ({os.path.getsize(path) / 1e6:.2f} MB)")


def export_all(out, ae, scaling_factor, unet, text_encoder, tokenizer):
    unet.eval()
    text_encoder.eval()
    ae.eval()
    with torch.no_grad():
        ids = torch.tensor([tokenizer.encode("a red circle on a blue background")] * 2)
        onnx_export(TextEncoderExport(text_encoder), (ids,), f"{out}/text_encoder/model.onnx",
                    ["input_ids"], ["last_hidden_state", "pooler_output"],
                    {"input_ids": {0: "batch_size", 1: "sequence_length"},
                     "last_hidden_state": {0: "batch_size", 1: "sequence_length"},
                     "pooler_output": {0: "batch_size"}})
        latent = unet.conv_out.out_channels
        sample = torch.randn(2, latent, 32, 32)
        hidden = text_encoder(ids)
        onnx_export(unet, (sample, torch.tensor(500.0), hidden), f"{out}/unet/model.onnx",
                    ["sample", "timestep", "encoder_hidden_states"], ["out_sample"],
                    {"sample": {0: "batch_size", 2: "height", 3: "width"},
                     "encoder_hidden_states": {0: "batch_size", 1: "sequence_length"},
                     "out_sample": {0: "batch_size", 2: "height", 3: "width"}})
        onnx_export(VaeDecoderExport(ae), (torch.randn(1, latent, 32, 32),),
                    f"{out}/vae_decoder/model.onnx", ["latent_sample"], ["sample"],
                    {"latent_sample": {0: "batch_size", 2: "latent_height", 3: "latent_width"},
                     "sample": {0: "batch_size", 2: "height", 3: "width"}})
        onnx_export(VaeEncoderExport(ae), (torch.randn(1, 3, 256, 256),),
                    f"{out}/vae_encoder/model.onnx", ["sample"], ["latent_parameters"],
                    {"sample": {0: "batch_size", 2: "sample_height", 3: "sample_width"},
                     "latent_parameters": {0: "batch_size", 2: "sample_height / 8",
                                           3: "sample_width / 8"}})

    for name, text in tok.files().items():
        os.makedirs(f"{out}/tokenizer", exist_ok=True)
        with open(f"{out}/tokenizer/{name}", "w") as f:
            f.write(text)
    write_json(f"{out}/model_index.json", {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.30.0",
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "EulerAncestralDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    })
    write_json(f"{out}/scheduler/scheduler_config.json", {
        "_class_name": "EulerAncestralDiscreteScheduler",
        "_diffusers_version": "0.30.0",
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        # Read only by DDIM-like schedulers, which otherwise clip x0 to +-1; these latents reach
        # +-3.6 (shape codes of radius 2 times scaling_factor).
        "clip_sample": False,
        "interpolation_type": "linear",
        "num_train_timesteps": 1000,
        "prediction_type": "v_prediction",
        "steps_offset": 0,
        "timestep_spacing": "linspace",
        "trained_betas": None,
        "use_karras_sigmas": False,
    })
    c = [m.out_channels for m in (unet.down_blocks[0].resnets[0].conv2,
                                  unet.down_blocks[1].resnets[0].conv2,
                                  unet.down_blocks[2].resnets[0].conv2)]
    write_json(f"{out}/unet/config.json", {
        "_class_name": "UNet2DConditionModel",
        "_diffusers_version": "0.30.0",
        "in_channels": unet.conv_out.out_channels,
        "out_channels": unet.conv_out.out_channels,
        "sample_size": 32,
        "block_out_channels": c,
        "layers_per_block": 1,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "cross_attention_dim": text_encoder.final_layer_norm.normalized_shape[0],
        "attention_head_dim": 4,
        "use_linear_projection": True,
        "norm_num_groups": 8,
        "_denoise_notes": "not loadable by diffusers: a layout prior (an MLP over each 1/4-"
                          "resolution cell's position and the mean token state) adds a guess of "
                          "the clean latents and two coordinate channels to the input of conv_in "
                          "and its features at 1/4 resolution, the up blocks take 2 skips each, "
                          "self-attention only at 1/4 resolution, and only the first 32 text "
                          "token states are read (see README.md)",
    })
    write_json(f"{out}/vae_decoder/config.json", {
        "_class_name": "AutoencoderKL",
        "_diffusers_version": "0.30.0",
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": unet.conv_out.out_channels,
        "block_out_channels": [16, 32, 64, 64],
        "sample_size": 256,
        "scaling_factor": round(scaling_factor, 6),
    })
    write_json(f"{out}/vae_encoder/config.json", {
        "_class_name": "AutoencoderKL",
        "_diffusers_version": "0.30.0",
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": unet.conv_out.out_channels,
        "block_out_channels": [16, 32, 64, 64],
        "sample_size": 256,
        "scaling_factor": round(scaling_factor, 6),
    })
    te = text_encoder
    write_json(f"{out}/text_encoder/config.json", {
        "architectures": ["CLIPTextModel"],
        "model_type": "clip_text_model",
        "hidden_size": te.final_layer_norm.normalized_shape[0],
        "intermediate_size": te.encoder.layers[0].mlp.fc1.out_features,
        "num_hidden_layers": len(te.encoder.layers),
        "num_attention_heads": te.encoder.layers[0].self_attn.heads,
        "max_position_embeddings": 77,
        "vocab_size": tokenizer.vocab_size,
        "hidden_act": "gelu",
        "bos_token_id": tokenizer.bos,
        "eos_token_id": tokenizer.eos,
        "pad_token_id": tokenizer.pad,
    })


def read_csv(path):
    with open(path) as f:
        r = csv.reader(f)
        next(r)
        return [[float(v) for v in row] for row in r]


def plot_losses(work, path):
    """A small PNG, log y, EMA-smoothed, one panel per phase that has a loss file: the decoder's
    loss (then its fine-tune's) and the encoder's; the layout prior phase's prior loss and parsing cross-entropy; the
    diffusion model's v-MSE and its layout prior's loss."""
    import math
    from PIL import Image, ImageDraw

    def series(name, col, offset=0, alpha=0.03):
        f = os.path.join(work, name)
        if not os.path.exists(f):
            return []
        out, sm = [], None
        for row in read_csv(f):
            sm = row[col] if sm is None else (1 - alpha) * sm + alpha * row[col]
            out.append((row[0] + offset, sm))
        return out

    dec = series("decoder_loss.csv", 1)
    snap = series("decoder_snap_loss.csv", 1, offset=(dec[-1][0] + 1) if dec else 0)
    panels = [("autoencoder: decoder L1+MSE+edge, then fine-tune | encoder MSE",
               [dec, snap, series("encoder_loss.csv", 1)]),
              ("layout prior phase: prior loss | parsing CE",
               [series("prior_loss.csv", 1), series("prior_loss.csv", 2)]),
              ("diffusion: v-MSE | layout prior loss",
               [series("loss.csv", 1), series("loss.csv", 2)])]
    # A resumed run has no curves for the phases it reused.
    panels = [(title, parts) for title, parts in panels if any(parts)]
    W, H, pad = 400, 220, 44
    img = Image.new("RGB", (W * len(panels), H), "white")
    d = ImageDraw.Draw(img)
    colours = [(30, 60, 200), (220, 60, 30), (30, 160, 60)]
    for i, (title, parts) in enumerate(panels):
        pts = [p for part in parts for p in part]
        if not pts:
            continue
        ox = i * W
        xs = [p[0] for p in pts]
        ys = [math.log10(max(p[1], 1e-6)) for p in pts]
        lo, hi = min(ys), max(ys)
        hi = hi if hi > lo else lo + 1
        x0, x1 = min(xs), max(xs)
        d.rectangle([ox + pad, 20, ox + W - 10, H - pad], outline="black")
        d.text((ox + pad, 5), title, fill="black")
        for part, colour in zip(parts, colours):
            if len(part) < 2:
                continue
            line = [(ox + pad + (x - x0) / max(1, x1 - x0) * (W - pad - 10),
                     20 + (hi - math.log10(max(y, 1e-6))) / (hi - lo) * (H - pad - 20))
                    for x, y in part]
            d.line(line, fill=colour, width=2)
        d.text((ox + 2, 20), f"{10 ** hi:.3g}", fill="black")
        d.text((ox + 2, H - pad - 10), f"{10 ** lo:.3g}", fill="black")
        d.text((ox + pad, H - pad + 5), "0", fill="black")
        d.text((ox + W - 80, H - pad + 5), f"{int(x1) + 1} steps", fill="black")
    img.save(path)
