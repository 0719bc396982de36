"""Fine-tunes the semantic tier's encoder (scripts/train-encoder runs this; see its header).

The published all-MiniLM-L6-v2 stays as it is up to its fourth layer; its top two layers and a
one-unit head over the mean-pooled output are trained on the same rows as the n-gram classifier
(licence-filtered corpus copies and synthetic families, from scripts/synth-injection-data.py),
with the synthetic rows capped so they do not drown the corpora. Only each text's first window
is trained on: inserted attacks are short, and the beginning of a long benign document teaches
enough of what ordinary documents look like. The frozen layers' outputs are computed once, which
is what makes training feasible on two CPU cores (15–20 minutes).

Writes the tuned layers (half precision, Hugging Face names, so the Rust side replaces the
published tensors by name) and the head, with the operating point in the file's metadata. With
--score-fold K it also scores fold K of the corpora (rows held out of training) for inspection.
"""
import argparse, glob, json, math, os, random, sys, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tokenizers import Tokenizer
from safetensors.torch import load_file, save_file

torch.set_num_threads(2)
torch.manual_seed(0)
random.seed(0)

ap = argparse.ArgumentParser()
ap.add_argument("--data", required=True, help="directory with synthetic.jsonl and train-*.jsonl")
ap.add_argument("--out", required=True, help="the head file to write")
ap.add_argument("--model-dir", required=True, help="the published model's directory")
ap.add_argument("--corpora", default=None)
ap.add_argument("--score-fold", type=int, default=None)
ap.add_argument("--threshold", type=float, required=True)
ap.add_argument("--precision", type=float, required=True)
ap.add_argument("--train-layers", type=int, default=2)
ap.add_argument("--max-len", type=int, default=128)
ap.add_argument("--epochs", type=int, default=2)
ap.add_argument("--synthetic-cap", type=int, default=6000)
a = ap.parse_args()

MDIR = a.model_dir
PKG = os.path.join(MDIR, "model.safetensors")
tok = Tokenizer.from_file(os.path.join(MDIR, "tokenizer.json"))
tok.no_padding()
tok.no_truncation()
W = load_file(PKG)
prefix = "" if "embeddings.word_embeddings.weight" in W else "bert."
H, NH, L = 384, 12, 6


def w(name):
    return W[prefix + name]


class Layer(nn.Module):
    def __init__(self, i):
        super().__init__()
        p = f"encoder.layer.{i}."
        self.q = nn.Linear(H, H); self.k = nn.Linear(H, H); self.v = nn.Linear(H, H)
        self.o = nn.Linear(H, H); self.ln1 = nn.LayerNorm(H, eps=1e-12)
        self.i = nn.Linear(H, 4 * H); self.out = nn.Linear(4 * H, H); self.ln2 = nn.LayerNorm(H, eps=1e-12)
        names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
                 "o": "attention.output.dense", "ln1": "attention.output.LayerNorm",
                 "i": "intermediate.dense", "out": "output.dense", "ln2": "output.LayerNorm"}
        with torch.no_grad():
            for attr, n in names.items():
                m = getattr(self, attr)
                m.weight.copy_(w(p + n + ".weight")); m.bias.copy_(w(p + n + ".bias"))

    def forward(self, x, mask):
        B, T, _ = x.shape
        def heads(t):
            return t.view(B, T, NH, H // NH).transpose(1, 2)
        att = F.scaled_dot_product_attention(heads(self.q(x)), heads(self.k(x)), heads(self.v(x)),
                                             attn_mask=mask[:, None, None, :])
        att = att.transpose(1, 2).reshape(B, T, H)
        x = self.ln1(x + self.o(att))
        return self.ln2(x + self.out(F.gelu(self.i(x))))


class Emb(nn.Module):
    def __init__(self):
        super().__init__()
        self.word = nn.Embedding.from_pretrained(w("embeddings.word_embeddings.weight"))
        self.pos = nn.Embedding.from_pretrained(w("embeddings.position_embeddings.weight"))
        self.typ = nn.Embedding.from_pretrained(w("embeddings.token_type_embeddings.weight"))
        self.ln = nn.LayerNorm(H, eps=1e-12)
        with torch.no_grad():
            self.ln.weight.copy_(w("embeddings.LayerNorm.weight")); self.ln.bias.copy_(w("embeddings.LayerNorm.bias"))

    def forward(self, ids, types):
        T = ids.shape[1]
        return self.ln(self.word(ids) + self.pos(torch.arange(T)[None, :]) + self.typ(types))


emb = Emb().eval()
layers = [Layer(i) for i in range(L)]
frozen, top = layers[: L - a.train_layers], nn.ModuleList(layers[L - a.train_layers:])
head = nn.Linear(H, 1)
for m in frozen:
    m.eval()
    for p_ in m.parameters():
        p_.requires_grad_(False)

def encode(text, max_len):
    """Token windows of one text: head window, and for long texts further windows with overlap."""
    first = [101]  # [CLS]
    body = tok.encode(text, add_special_tokens=False).ids
    room = max_len - len(first) - 1
    wins = []
    start = 0
    while True:
        chunk = body[start:start + room]
        ids = first + chunk + [102]
        types = [0] * (len(ids))
        wins.append((ids, types))
        if start + room >= len(body):
            break
        start += room * 3 // 4
    return wins


def pad(batch):
    T = max(len(ids) for ids, _ in batch)
    ids = torch.zeros(len(batch), T, dtype=torch.long)
    types = torch.zeros(len(batch), T, dtype=torch.long)
    mask = torch.zeros(len(batch), T, dtype=torch.bool)
    for j, (i_, t_) in enumerate(batch):
        ids[j, : len(i_)] = torch.tensor(i_); types[j, : len(t_)] = torch.tensor(t_); mask[j, : len(i_)] = True
    return ids, types, mask


def lower(ids, types, mask):
    with torch.no_grad():
        x = emb(ids, types)
        for m in frozen:
            x = m(x, mask)
    return x


def upper(x, mask):
    for m in top:
        x = m(x, mask)
    mf = mask[:, :, None].float()
    pooled = (x * mf).sum(1) / mf.sum(1)
    return head(pooled).squeeze(-1)


# ---- training data
tdir = a.data
train = []
for p in sorted(glob.glob(f"{tdir}/train-*.jsonl")):
    for line in open(p):
        r = json.loads(line)
        train.append((r["text"], r["label"] != "benign"))
synth = [json.loads(l) for l in open(f"{tdir}/synthetic.jsonl")]
random.shuffle(synth)
synth = synth[: a.synthetic_cap]
for r in synth:
    train.append((r["text"], r["label"] != "benign"))
print(f"train rows {len(train)}, positives {sum(y for _, y in train)}", file=sys.stderr)

# Training uses the first window only (inserted attacks are short; long benign carriers teach the
# beginning of a document), to keep the cost down.
items = []
for text, y in train:
    ids, types = encode(text, a.max_len)[0]
    items.append((ids, types, float(y)))
items.sort(key=lambda t: len(t[0]))
B = 32
batches = [items[i:i + B] for i in range(0, len(items), B)]
t0 = time.time()
cache = []
for b in batches:
    ids, types, mask = pad([(i_, t_) for i_, t_, _ in b])
    cache.append((lower(ids, types, mask).half(), mask, torch.tensor([y for _, _, y in b])))
print(f"cached lower layers in {time.time() - t0:.0f}s, tokens {sum(len(i) for i, _, _ in items)}", file=sys.stderr)

pos = sum(y for _, _, y in items); neg = len(items) - pos
pw = torch.tensor(neg / max(pos, 1))
params = [{"params": top.parameters(), "lr": 4e-5}, {"params": head.parameters(), "lr": 1e-3}]
opt = torch.optim.AdamW(params, weight_decay=0.01)
steps = a.epochs * len(cache)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, s / (0.1 * steps)) * max(0.0, (steps - s) / (0.9 * steps)))
step = 0
for ep in range(a.epochs):
    order = list(range(len(cache)))
    random.shuffle(order)
    tot = 0.0
    t0 = time.time()
    for bi in order:
        x, mask, y = cache[bi]
        logit = upper(x.float(), mask)
        loss = F.binary_cross_entropy_with_logits(logit, y, pos_weight=pw)
        opt.zero_grad(); loss.backward(); opt.step(); sched.step(); step += 1
        tot += loss.item()
    print(f"epoch {ep} loss {tot / len(cache):.4f} {time.time() - t0:.0f}s", file=sys.stderr)

# ---- optional: scores of the held-out fold


def fold(row_id, folds=5):
    h = 0xCBF29CE484222325
    for b_ in row_id.encode("utf-8"):
        h ^= b_
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h % folds


def score_texts(rows):
    wins = []
    for k, text in enumerate(rows):
        for win in encode(text, a.max_len):
            wins.append((k, win))
    wins.sort(key=lambda t: len(t[1][0]))
    out = np.full(len(rows), -1e9)
    with torch.no_grad():
        for i in range(0, len(wins), 64):
            chunk = wins[i:i + 64]
            ids, types, mask = pad([w_ for _, w_ in chunk])
            s = upper(lower(ids, types, mask), mask).numpy()
            for (k, _), v in zip(chunk, s):
                out[k] = max(out[k], v)
    return out


for name in ["direct", "direct_extra", "indirect", "indirect_extra"] if a.score_fold is not None else []:
    path = os.path.join(a.corpora, f"injection_{name}.dev.jsonl")
    rows = [json.loads(l) for l in open(path)]
    rows = [r for r in rows if fold(r.get("source", "")) == a.score_fold]
    if not rows:
        continue
    s = score_texts([r["text"] for r in rows])
    with open(f"{a.out}.scores-{name}.jsonl", "w") as fh:
        for r, v in zip(rows, s):
            fh.write(json.dumps({"id": r["id"], "label": r["label"], "source": r["source"], "score": float(v)}) + "\n")
NAMES = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
         "o": "attention.output.dense", "ln1": "attention.output.LayerNorm",
         "i": "intermediate.dense", "out": "output.dense", "ln2": "output.LayerNorm"}
state = {}
for j, m in enumerate(top):
    for attr, n in NAMES.items():
        for kind in ("weight", "bias"):
            state[f"encoder.layer.{L - a.train_layers + j}.{n}.{kind}"] = getattr(getattr(m, attr), kind).detach().half()
state["head.weight"] = head.weight.detach().reshape(-1).float()
state["head.bias"] = head.bias.detach().float()
meta = {"threshold": str(a.threshold), "precision": str(a.precision), "train_layers": str(a.train_layers),
        "window_tokens": str(a.max_len), "base": "all-MiniLM-L6-v2 model.safetensors sha256 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"}
save_file({k: v.contiguous() for k, v in state.items()}, a.out, metadata=meta)
print(f"wrote {a.out}", file=sys.stderr)
