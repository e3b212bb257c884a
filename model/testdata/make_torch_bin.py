#!/usr/bin/env python3
"""Writes the PyTorch checkpoint fixtures of model/torch_bin_test.ts and model/checkpoint_test.ts.

Run by hand (not by CI), with torch installed (Debian: apt-get install python3-torch, then
/usr/bin/python3 model/testdata/make_torch_bin.py), from the repository root with ../shared beside
it. torch.save writes the zip format (torch >= 1.6). The fixtures:

- torch/dtypes.bin: small tensors of known values (see torch_bin_test.ts): float32, float16,
  bfloat16, int64 and int32; a transposed (non-contiguous) view; a view at a storage offset; two
  names on one storage (tied); a scalar; an empty tensor; a permuted 3-d view.
- torch/module.bin: a module's state_dict() (torch.nn.Linear(3, 2) with weight = arange(6) / 4,
  bias = [0.5, -0.5]): an OrderedDict with a `_metadata` attribute, which pickles as BUILD, as
  transformers' pytorch_model.bin files do.
- torch/t5-tiny-v1_1-untied.bin: the weights of ../shared/fixtures/hf-t5/t5-tiny-v1_1-untied (its
  token tables differ: untied), with one transposed (non-contiguous) weight, encoder block 1's q, k, v as views into one storage,
  the layer norms in float16 and the final ones in bfloat16 (their values, 1.0, are exact there).
- torch/t5-tiny-relu/: ../shared/fixtures/hf-t5/t5-tiny-relu sharded in two
  (pytorch_model-0000i-of-00002.bin + pytorch_model.bin.index.json), with the token tables and
  lm_head.weight on shared.weight's storage (tied, as transformers' pytorch_model.bin stores a
  tied T5's tables).
- torch/legacy/: the same four, saved in torch's legacy format (torch < 1.6; torch.save with
  _use_new_zipfile_serialization=False): a sequence of pickles (magic number, protocol version,
  sys_info, the state dict with ('storage', type, key, location, numel, None) persistent ids, the
  list of storage keys), then each storage as an 8-byte little-endian element count and its bytes.
  Its storage keys are the storages' addresses in memory, so these files differ from run to run
  (their tensors do not); the zip files above are byte-identical across runs.
"""
import collections
import json
import os
import struct
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get("HYPERPROMPT_SHARED", os.path.join(HERE, "..", "..", "..", "shared"))
OUT = os.path.join(HERE, "torch")
LEGACY = os.path.join(OUT, "legacy")


def read_safetensors(path):
    """name -> float32 torch tensor (F32 only, as the fixtures are), in header order."""
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8 : 8 + n])
    out = collections.OrderedDict()
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (path, name, info["dtype"])
        s, e = info["data_offsets"]
        a = np.frombuffer(b[8 + n + s : 8 + n + e], dtype="<f4").reshape(info["shape"])
        out[name] = torch.from_numpy(a.copy())
    return out


def save(sd, path):
    """Write `sd` to OUT/path in the zip format and to LEGACY/path in the legacy format."""
    for root, zipped in ((OUT, True), (LEGACY, False)):
        out = os.path.join(root, path)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        torch.save(sd, out, _use_new_zipfile_serialization=zipped)
        size = os.path.getsize(out)
        assert size < 300_000, (out, size)
        print(out, size, "bytes")


def dtypes():
    base = torch.arange(24, dtype=torch.float32) / 8 - 1  # exact in f16 and bf16
    sd = collections.OrderedDict()
    sd["f32"] = base.reshape(4, 6).clone()
    sd["f16"] = base.reshape(2, 12).clone().half()
    sd["bf16"] = base.reshape(3, 8).clone().bfloat16()
    sd["i64"] = torch.arange(-6, 6, dtype=torch.int64).reshape(3, 4)
    sd["i32"] = torch.arange(5, dtype=torch.int32) * 1000 - 2000
    m = base.reshape(4, 6).clone()
    sd["transposed"] = m.t()  # [6, 4], strides [1, 6]
    whole = base.clone()
    sd["offset"] = whole[10:16].reshape(2, 3)  # storage offset 10
    tied = (base * 2).reshape(6, 4).clone()
    sd["tied_a"] = tied
    sd["tied_b"] = tied  # the same storage
    sd["scalar"] = torch.tensor(2.5)
    sd["empty"] = torch.zeros(0, 3)
    sd["permuted"] = base.reshape(2, 3, 4).clone().permute(2, 0, 1)  # [4, 2, 3]
    save(sd, "dtypes.bin")


def module():
    m = torch.nn.Linear(3, 2)
    with torch.no_grad():
        m.weight.copy_(torch.arange(6, dtype=torch.float32).reshape(2, 3) / 4)
        m.bias.copy_(torch.tensor([0.5, -0.5]))
    sd = m.state_dict()
    assert hasattr(sd, "_metadata")
    save(sd, "module.bin")


def untied():
    src = read_safetensors(os.path.join(SHARED, "fixtures", "hf-t5", "t5-tiny-v1_1-untied", "model.safetensors"))
    sd = collections.OrderedDict()
    qkv_names = [f"encoder.block.1.layer.0.SelfAttention.{p}.weight" for p in "qkv"]
    qkv = torch.cat([src[n] for n in qkv_names], 0)
    for name, t in src.items():
        if name.endswith("final_layer_norm.weight"):
            assert torch.all(t == 1)
            t = t.bfloat16()
        elif name.endswith("layer_norm.weight"):
            assert torch.all(t == 1)
            t = t.half()
        elif name == "encoder.block.0.layer.0.SelfAttention.q.weight":
            t = t.t().contiguous().t()  # same values, column-major storage
            assert not t.is_contiguous()
        elif name in qkv_names:
            i = qkv_names.index(name)
            t = qkv[i * 32 : (i + 1) * 32]
        sd[name] = t
    save(sd, "t5-tiny-v1_1-untied.bin")


def relu_sharded():
    src = read_safetensors(os.path.join(SHARED, "fixtures", "hf-t5", "t5-tiny-relu", "model.safetensors"))
    names = list(src)
    sd = collections.OrderedDict(src)
    sd["encoder.embed_tokens.weight"] = sd["shared.weight"]
    sd["decoder.embed_tokens.weight"] = sd["shared.weight"]
    sd["lm_head.weight"] = sd["shared.weight"]
    half = len(names) // 2
    first = [n for n in names[:half]]
    shards = [collections.OrderedDict((n, sd[n]) for n in first),
              collections.OrderedDict((n, sd[n]) for n in sd if n not in first)]
    d = "t5-tiny-relu"
    weight_map = {}
    total = 0
    for i, shard in enumerate(shards):
        fname = f"pytorch_model-{i + 1:05d}-of-{len(shards):05d}.bin"
        save(shard, os.path.join(d, fname))
        for n, t in shard.items():
            weight_map[n] = fname
            total += t.numel() * t.element_size()
    for root in (OUT, LEGACY):
        with open(os.path.join(root, d, "pytorch_model.bin.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    print("torch", torch.__version__, file=sys.stderr)
    dtypes()
    module()
    untied()
    relu_sharded()
