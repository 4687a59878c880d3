"""HRG-SSA: hybrid relational graphs with sentiment-laden semantic alignment, rebuilt.

For a batch of whole dialogues (:class:`erc.hrg.data.HRGBatch`, ``N`` utterances):

1. Encode: every turn ``"speaker A: text"`` goes through the backbone's encoder
   ONCE: token states ``X`` ``(N, L, d)``. While the backbone is frozen and the
   cache is on, each dialogue's turns are encoded together once and reused.
2. Nodes (one per utterance and modality): a non-text vector (audio, visual,
   timing) is projected to ``d`` and, as a one-token query, cross-attends to its
   utterance's ``X`` through ``fusion_layers`` transformer-decoder layers; the
   text node is ``X`` cross-attending to the utterance's projected non-text
   vectors, pooled (``node_pooling``; with text alone, pooled ``X``).
3. Graph (:mod:`erc.hrg.graph`): every target's window of ``W`` previous turns
   is its own hybrid relational graph per modality (explicit + implicit edges),
   run through GAT blocks. Windows only index the encodings of step 1.
4. Label nodes: ``"speaker A: happy & positive"`` for each EARLIER turn of the
   window, encoded by the same encoder and pooled. Training uses the gold
   labels (teacher forcing). At inference the history is the model's OWN
   predictions of the earlier turns, turn by turn (:meth:`HRGModel.predict`,
   ``history="predicted"``); ``history="gold"`` leaks labels and exists as an
   ablation only.
5. Head, fed by cross-attention over the concatenated window nodes of every
   modality plus the history's label nodes (each with a learned type and slot
   embedding):

   * ``generate``: the memory the decoder's cross-attention reads is
     ``[X_target ; modality nodes ; label nodes]``. The decoder is trained with
     token cross-entropy on ``"<emotion words> & <sentiment word></s>"`` and
     scored against the label vocabulary: the emotion is the class whose
     ``"<words> &"`` sequence is most likely (sum of token log-probabilities;
     ``softmax`` over the classes gives the probabilities), then the sentiment
     whose ``"<word></s>"`` is most likely after it. Every output is a valid
     class, multi-token label words included.
   * ``classify``: the target's post-GAT text node attends to the memory
     (multi-head attention, residual, LayerNorm), then linear emotion and
     sentiment heads.

Alignment (:mod:`erc.hrg.align`, training only): ``align_weight * (sum over
modalities of primary + sum over modality pairs of semantic)`` is added to the
task loss.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from erc.core.config import ConfigError
from erc.hrg.align import window_info_nce
from erc.hrg.backbone import (Backbone, backbone_from_files, decoder_logits, encode, load_backbone,
                              save_backbone_files)
from erc.hrg.data import SEPARATOR, UNKNOWN_WORD, HRGBatch, label_string, label_words
from erc.hrg.graph import HybridRelationalGraph, WindowGrid, explicit_edges, window_grid

WEIGHTS_FILE = "model.safetensors"
META_FILE = "hrg_model.json"
BACKBONE_DIR = "backbone"
SCORE_CHUNK = 256          # decoder rows per scoring call (bounds the (rows, T, vocab) logits)
PACK_ROWS = 64             # encoder rows per length-sorted chunk


@dataclass
class HRGModelConfig:
    """Architecture of :class:`HRGModel` (saved with the weights)."""

    modalities: list[str] = field(default_factory=lambda: ["text"])
    input_dims: dict[str, int] = field(default_factory=dict)      # non-text modality -> feature dim
    label_names: list[str] = field(default_factory=list)
    sentiment_names: list[str] = field(default_factory=list)
    head: str = "generate"
    window: int = 8
    gat_layers: int = 1
    gat_heads: int = 12
    gat_head_dim: int = 64
    graph_edges: str = "hybrid"
    scorer_dim: int = 64
    fusion_layers: int = 6
    fusion_heads: int = 4
    node_pooling: str = "last"
    dropout: float = 0.1
    max_length: int = 128
    align_weight: float = 1.0e-3
    temperature: float = 1.0

    @property
    def extra_modalities(self) -> list[str]:
        return [m for m in self.modalities if m != "text"]


@dataclass
class HRGOutput:
    """What one forward / prediction returns (``N`` utterances of the batch)."""

    loss: torch.Tensor | None = None
    parts: dict[str, float] = field(default_factory=dict)
    emotion_scores: torch.Tensor | None = None      # (N, C) logits / label-sequence log-likelihoods
    sentiment_scores: torch.Tensor | None = None    # (N, S)
    emotion_pred: torch.Tensor | None = None        # (N,)
    sentiment_pred: torch.Tensor | None = None      # (N,)


@dataclass
class Context:
    """Label-independent part of a batch: encodings, nodes, windows, post-GAT nodes."""

    tokens: torch.Tensor                    # (N, L, d)
    token_mask: torch.Tensor                # (N, L) bool
    grid: WindowGrid
    pre: dict[str, torch.Tensor]            # modality -> (N, K, d) nodes before the GAT, window grid
    post: dict[str, torch.Tensor]           # modality -> (N, K, d) after the GAT
    edges: dict                             # modality -> erc.hrg.graph.WindowEdges


def masked_mean_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over targets >= 0 (an exact 0 touching ``logits`` when there are none)."""
    valid = target >= 0
    ce = F.cross_entropy(logits.float(), target.clamp(min=0), reduction="none")
    return (ce * valid).sum() / valid.sum().clamp(min=1)


def _fusion_stack(d: int, heads: int, layers: int, dropout: float) -> nn.TransformerDecoder:
    layer = nn.TransformerDecoderLayer(d, heads, dim_feedforward=2 * d, dropout=dropout, batch_first=True,
                                       norm_first=True)
    return nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(d))


class HRGModel(nn.Module):
    """See the module docstring. ``forward(batch) -> HRGOutput`` with the training loss."""

    def __init__(self, cfg: HRGModelConfig, backbone: Backbone):
        super().__init__()
        if cfg.head == "generate" and not backbone.generates:
            raise ConfigError(f"head generate needs an encoder-decoder backbone, got kind {backbone.kind!r}")
        if "text" not in cfg.modalities:
            raise ConfigError(f"modalities {cfg.modalities}: 'text' is required")
        if (cfg.fusion_layers > 0 or cfg.head == "classify") and backbone.hidden % cfg.fusion_heads:
            raise ConfigError(f"fusion_heads {cfg.fusion_heads} does not divide the backbone's hidden size "
                              f"{backbone.hidden}")
        self.cfg = cfg
        self.backbone = backbone.model
        self.info = backbone               # tokenizer, kind, special ids (its .model is self.backbone)
        d = self.hidden = backbone.hidden
        extra = cfg.extra_modalities
        missing = [m for m in extra if m not in cfg.input_dims]
        if missing:
            raise ConfigError(f"input_dims: no feature dimension for modalities {missing}")
        self.proj = nn.ModuleDict({m: nn.Linear(int(cfg.input_dims[m]), d) for m in extra})
        self.fuse = nn.ModuleDict()
        self.fuse_text = None
        if cfg.fusion_layers > 0 and extra:
            self.fuse = nn.ModuleDict({m: _fusion_stack(d, cfg.fusion_heads, cfg.fusion_layers, cfg.dropout)
                                       for m in extra})
            self.fuse_text = _fusion_stack(d, cfg.fusion_heads, cfg.fusion_layers, cfg.dropout)
        self.graphs = nn.ModuleDict({m: HybridRelationalGraph(d, cfg.gat_layers, cfg.gat_heads, cfg.gat_head_dim,
                                                              cfg.scorer_dim, cfg.dropout)
                                     for m in cfg.modalities})
        self.type_emb = nn.Embedding(len(cfg.modalities) + 1, d)   # modalities, then "label"
        self.slot_emb = nn.Embedding(cfg.window + 1, d)
        nn.init.normal_(self.type_emb.weight, std=0.02)
        nn.init.normal_(self.slot_emb.weight, std=0.02)
        if cfg.head == "classify":
            self.cls_attn = nn.MultiheadAttention(d, cfg.fusion_heads, dropout=cfg.dropout, batch_first=True)
            self.cls_norm = nn.LayerNorm(d)
            self.emotion_head = nn.Linear(d, len(cfg.label_names))
            self.sentiment_head = nn.Linear(d, len(cfg.sentiment_names))
        else:
            self.emotion_seqs, self.sentiment_seqs = self._label_sequences()
        self.backbone_frozen = False
        self.cache_enabled = False
        self._turn_cache: dict[str, torch.Tensor] = {}
        self._string_cache: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ label vocabulary
    def _label_sequences(self) -> tuple[list[list[int]], list[list[int]]]:
        """Token ids of ``"<emotion words> &"`` per class and ``"<sentiment word></s>"`` per sentiment.

        Refuses a vocabulary where two classes share a sequence, one is a prefix of
        another, or a word is unknown to the tokenizer (the scores would be ambiguous).
        """
        tok = self.info.tokenizer
        ids = lambda s: list(tok(s, add_special_tokens=False)["input_ids"])  # noqa: E731
        sep = ids(SEPARATOR)
        emo = [ids(w) + sep for w in label_words(self.cfg.label_names)]
        sen = [ids(w) + [int(self.info.eos_id)] for w in label_words(self.cfg.sentiment_names)]
        unk = tok.unk_token_id
        for kind, names, seqs in (("emotion", self.cfg.label_names, emo), ("sentiment", self.cfg.sentiment_names, sen)):
            for name, s in zip(names, seqs):
                if len(s) < 2 or (unk is not None and unk in s):
                    raise ConfigError(f"{kind} label {name!r}: the backbone's tokenizer cannot spell it "
                                      f"(token ids {s}); use a backbone whose vocabulary has the label words")
            for a, b in itertools.permutations(range(len(seqs)), 2):
                if seqs[b][:len(seqs[a])] == seqs[a]:
                    raise ConfigError(f"{kind} labels {names[a]!r} and {names[b]!r} tokenise to ambiguous "
                                      f"sequences {seqs[a]} / {seqs[b]}")
        return emo, sen

    # ------------------------------------------------------------------ freezing and caching
    def set_backbone_frozen(self, frozen: bool, cache: bool = False) -> None:
        """Freeze the pretrained backbone (its new parameters stay trainable); ``cache`` its encodings."""
        self.backbone_frozen = bool(frozen)
        for name, p in self.backbone.named_parameters():
            p.requires_grad_(not frozen or name in self.info.new_params)
        self.cache_enabled = bool(frozen and cache)
        self._turn_cache.clear()
        self._string_cache.clear()
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.backbone_frozen:          # frozen: deterministic encoder (no dropout), so outputs can be cached
            self.backbone.eval()
        return self

    def _encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.backbone_frozen:
            with torch.no_grad():
                return encode(self.backbone, self.info.kind, input_ids, attention_mask)
        return encode(self.backbone, self.info.kind, input_ids, attention_mask)

    def _encode_packed(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Encode rows in length-sorted chunks of ``PACK_ROWS``, each padded to its own longest row.

        A batch is padded to its longest turn; most turns are far shorter, so this cuts the
        encoder's work to about the real tokens. Rows come back in their order, ``(N, L, d)``.
        """
        lengths = mask.sum(1)
        order = torch.argsort(lengths, descending=True, stable=True)
        parts, rows = [], []
        for lo in range(0, len(order), PACK_ROWS):
            idx = order[lo:lo + PACK_ROWS]
            width = max(int(lengths[idx].max()), 1)
            parts.append(self._encode(ids[idx, :width], mask[idx, :width]))
            rows.append(idx)
        out = parts[0].new_zeros(ids.shape[0], ids.shape[1], parts[0].shape[-1])
        for idx, x in zip(rows, parts):
            out[idx, :x.shape[1]] = x
        return out

    def encode_turns(self, batch: HRGBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Token states ``(N, L, d)`` and mask ``(N, L)`` of every turn, each encoded once."""
        ids, mask = batch.input_ids, batch.attention_mask
        if not self.cache_enabled:
            return self._encode_packed(ids, mask), mask.bool()
        db = batch.dialogues
        ptr = db.ptr.tolist()
        out = None
        for b, did in enumerate(db.dialogue_ids):
            lo, hi = ptr[b], ptr[b + 1]
            if did not in self._turn_cache:     # a dialogue's turns together (packed within the dialogue only,
                                                # so the cached value never depends on the batch)
                width = int(mask[lo:hi].sum(1).max())
                self._turn_cache[did] = self._encode_packed(ids[lo:hi, :width], mask[lo:hi, :width]).detach()
            x = self._turn_cache[did]
            if out is None:
                out = x.new_zeros(ids.shape[0], ids.shape[1], x.shape[-1])
            out[lo:hi, :x.shape[1]] = x
        return out, mask.bool()

    def pool(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, L, d) -> (B, d) by ``node_pooling`` (right-padded rows)."""
        how = self.cfg.node_pooling
        if how == "first":
            return x[:, 0]
        if how == "last":
            last = mask.long().sum(1).clamp(min=1) - 1
            return x[torch.arange(x.shape[0], device=x.device), last]
        m = mask.unsqueeze(-1).to(x.dtype)
        return (x * m).sum(1) / m.sum(1).clamp(min=1.0)

    def encode_strings(self, strings: Sequence[str]) -> torch.Tensor:
        """Pooled encodings ``(len(strings), d)`` of short strings (label nodes)."""
        tok = self.info.tokenizer
        device = next(self.parameters()).device
        if self.cache_enabled:
            for s in strings:
                if s not in self._string_cache:     # one at a time: the cached value never depends on a batch
                    enc = tok([s], truncation=True, max_length=self.cfg.max_length, return_tensors="pt")
                    m = enc["attention_mask"].to(device)
                    self._string_cache[s] = self.pool(self._encode(enc["input_ids"].to(device), m), m.bool())[0]
            return torch.stack([self._string_cache[s] for s in strings])
        enc = tok(list(strings), truncation=True, max_length=self.cfg.max_length, padding=True, return_tensors="pt")
        m = enc["attention_mask"].to(device)
        return self.pool(self._encode(enc["input_ids"].to(device), m), m.bool())

    # ------------------------------------------------------------------ nodes and graphs
    def nodes(self, batch: HRGBatch, x: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """One node ``(N, d)`` per utterance and modality (step 2 of the module docstring)."""
        feats = batch.dialogues.features
        out: dict[str, torch.Tensor] = {}
        extra = self.cfg.extra_modalities
        e = {}
        for m in extra:
            if m not in feats:
                raise KeyError(f"batch has no '{m}' features; it has {sorted(feats)} "
                               f"(the model was built for {self.cfg.modalities})")
            e[m] = self.proj[m](feats[m].to(x.dtype))
        pad = ~mask
        for m in extra:
            out[m] = self.fuse[m](e[m].unsqueeze(1), x, memory_key_padding_mask=pad)[:, 0] if m in self.fuse else e[m]
        if self.fuse_text is not None:
            t = self.fuse_text(x, torch.stack([e[m] for m in extra], dim=1), tgt_key_padding_mask=pad)
            out["text"] = self.pool(t, mask)
        else:
            out["text"] = self.pool(x, mask)
        return {m: out[m] for m in self.cfg.modalities}

    def context(self, batch: HRGBatch, graph_edges: str | None = None) -> Context:
        """Everything that does not depend on history labels (steps 1-3)."""
        db = batch.dialogues
        x, mask = self.encode_turns(batch)
        nodes = self.nodes(batch, x, mask)
        grid = window_grid(db.position, self.cfg.window)
        explicit = explicit_edges(grid, db.speakers)
        pre, post, edges = {}, {}, {}
        for m in self.cfg.modalities:
            pre[m] = grid.to_grid(nodes[m][grid.node])
            post[m], edges[m] = self.graphs[m](pre[m], grid, explicit, graph_edges or self.cfg.graph_edges)
        return Context(tokens=x, token_mask=mask, grid=grid, pre=pre, post=post, edges=edges)

    # ------------------------------------------------------------------ label nodes
    def label_nodes(self, speakers: torch.Tensor, emotions: torch.Tensor, sentiments: torch.Tensor) -> torch.Tensor:
        """``(N, d)``: the encoded ``"speaker A: happy & positive"`` of each utterance (-1 -> ``unknown``)."""
        ew, sw = label_words(self.cfg.label_names), label_words(self.cfg.sentiment_names)
        keys = list(zip(speakers.tolist(), emotions.tolist(), sentiments.tolist()))
        uniq = sorted(set(keys))
        strings = [label_string(s, ew[e] if e >= 0 else UNKNOWN_WORD, sw[t] if t >= 0 else UNKNOWN_WORD)
                   for s, e, t in uniq]
        vec = self.encode_strings(strings)
        where = {k: i for i, k in enumerate(uniq)}
        return vec[torch.tensor([where[k] for k in keys], device=vec.device)]

    def label_table(self, speakers: torch.Tensor) -> torch.Tensor:
        """``(n_speakers, C, S, d)`` encodings of every label string a predicted history can produce."""
        n_spk = int(speakers.max()) + 1 if speakers.numel() else 1
        c, s = len(self.cfg.label_names), len(self.cfg.sentiment_names)
        grid = torch.stack(torch.meshgrid(torch.arange(n_spk), torch.arange(c), torch.arange(s), indexing="ij"),
                           -1).reshape(-1, 3)
        return self.label_nodes(grid[:, 0], grid[:, 1], grid[:, 2]).reshape(n_spk, c, s, -1)

    # ------------------------------------------------------------------ head
    def memory(self, ctx: Context, targets: torch.Tensor, labels: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention memory ``(T, M, d)`` and its mask ``(T, M)`` (True = attend) for ``targets``.

        ``labels`` ``(N, d)``: a label node for every utterance (only earlier turns of a window are read).
        """
        grid, k = ctx.grid, ctx.grid.size
        slots = self.slot_emb.weight.unsqueeze(0)                            # (1, K, d)
        valid = grid.valid[targets]
        parts, masks = [], []
        for i, m in enumerate(self.cfg.modalities):
            parts.append(ctx.post[m][targets] + self.type_emb.weight[i] + slots)
            masks.append(valid)
        history = valid.clone()
        history[:, k - 1] = False                                           # the target's own label: never
        lab = labels[grid.index[targets]] + self.type_emb.weight[len(self.cfg.modalities)] + slots
        parts.append(lab * history.unsqueeze(-1))
        masks.append(history)
        if self.cfg.head == "generate":
            parts.insert(0, ctx.tokens[targets])
            masks.insert(0, ctx.token_mask[targets])
        return torch.cat(parts, dim=1), torch.cat(masks, dim=1)

    def classify(self, ctx: Context, targets: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Emotion and sentiment logits ``(T, C)``, ``(T, S)`` of the classification head."""
        mem, mem_mask = self.memory(ctx, targets, labels)
        q = ctx.post["text"][targets, ctx.grid.size - 1].unsqueeze(1)
        att, _ = self.cls_attn(q, mem, mem, key_padding_mask=~mem_mask, need_weights=False)
        h = self.cls_norm(q + F.dropout(att, self.cfg.dropout, self.training))[:, 0]
        return self.emotion_head(h), self.sentiment_head(h)

    def _decoder_rows(self, prefixes: list[list[int]], scored: list[list[int]]
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decoder inputs ``[start] + prefix + scored[:-1]``, their mask, and labels (-100 outside ``scored``)."""
        start = int(self.info.decoder_start_id)
        rows = [[start] + p + s[:-1] for p, s in zip(prefixes, scored)]
        labs = [[-100] * len(p) + s for p, s in zip(prefixes, scored)]
        t = max(len(r) for r in rows)
        ids = torch.full((len(rows), t), self.info.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), t), dtype=torch.long)
        lab = torch.full((len(rows), t), -100, dtype=torch.long)
        for i, (r, l) in enumerate(zip(rows, labs)):
            ids[i, :len(r)], mask[i, :len(r)], lab[i, :len(l)] = torch.tensor(r), 1, torch.tensor(l)
        return ids, mask, lab

    def _sequence_logprob(self, mem: torch.Tensor, mem_mask: torch.Tensor, prefixes: list[list[int]],
                          scored: list[list[int]]) -> torch.Tensor:
        """Sum of log p(scored tokens | prefix, memory) per row ``(R,)``; ``mem`` has one row per sequence."""
        ids, mask, lab = (t.to(mem.device) for t in self._decoder_rows(prefixes, scored))
        out = []
        for lo in range(0, ids.shape[0], SCORE_CHUNK):
            sl = slice(lo, lo + SCORE_CHUNK)
            logits = decoder_logits(self.backbone, mem[sl], mem_mask[sl], ids[sl], mask[sl])
            logp = torch.log_softmax(logits.float(), -1)
            tok = logp.gather(-1, lab[sl].clamp(min=0).unsqueeze(-1)).squeeze(-1)
            out.append((tok * (lab[sl] >= 0)).sum(-1))
        return torch.cat(out)

    def generate_scores(self, ctx: Context, targets: torch.Tensor, labels: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Label-sequence log-likelihoods: emotions ``(T, C)``, then sentiments ``(T, S)`` after the best emotion."""
        mem, mem_mask = self.memory(ctx, targets, labels)
        n, c, s = len(targets), len(self.emotion_seqs), len(self.sentiment_seqs)
        rep = lambda t, k: t.repeat_interleave(k, dim=0)  # noqa: E731
        emo = self._sequence_logprob(rep(mem, c), rep(mem_mask, c), [[]] * (n * c),
                                     self.emotion_seqs * n).view(n, c)
        best = emo.argmax(-1).tolist()
        prefixes = [self.emotion_seqs[b] for b in best for _ in range(s)]
        sen = self._sequence_logprob(rep(mem, s), rep(mem_mask, s), prefixes, self.sentiment_seqs * n).view(n, s)
        return emo, sen

    def generate_loss(self, ctx: Context, targets: torch.Tensor, labels: torch.Tensor, emotions: torch.Tensor,
                      sentiments: torch.Tensor) -> torch.Tensor:
        """Token cross-entropy of the gold ``"<emotion words> & <sentiment word></s>"`` (labelled targets only)."""
        keep = emotions >= 0
        if not bool(keep.any()):
            return ctx.post["text"].sum() * 0.0
        targets, emotions, sentiments = targets[keep], emotions[keep], sentiments[keep]
        mem, mem_mask = self.memory(ctx, targets, labels)
        seqs, prefixes = [], []
        for e, s in zip(emotions.tolist(), sentiments.tolist()):
            tail = self.sentiment_seqs[s] if s >= 0 else []
            seqs.append(self.emotion_seqs[e] + tail)
            prefixes.append([])
        ids, mask, lab = (t.to(mem.device) for t in self._decoder_rows(prefixes, seqs))
        logits = decoder_logits(self.backbone, mem, mem_mask, ids, mask)
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), lab.reshape(-1), ignore_index=-100)

    # ------------------------------------------------------------------ training forward
    def forward(self, batch: HRGBatch) -> HRGOutput:
        """Training loss with gold history labels (teacher forcing): task + weighted alignment."""
        db = batch.dialogues
        ctx = self.context(batch)
        labels = self.label_nodes(db.speakers, db.labels, db.sentiments)
        targets = torch.arange(db.num_nodes, device=labels.device)
        if self.cfg.head == "classify":
            emo, sen = self.classify(ctx, targets, labels)
            task = masked_mean_ce(emo, db.labels) + masked_mean_ce(sen, db.sentiments)
        else:
            task = self.generate_loss(ctx, targets, labels, db.labels, db.sentiments)
        primary, semantic = self.alignment(ctx, labels)
        loss = task + self.cfg.align_weight * (primary + semantic)
        parts = {"loss_task": float(task.detach()), "loss_primary": float(primary.detach()),
                 "loss_semantic": float(semantic.detach()), "loss": float(loss.detach())}
        return HRGOutput(loss=loss, parts=parts)

    def alignment(self, ctx: Context, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Primary (modality nodes vs label nodes of the history) and semantic (modality pairs) InfoNCE."""
        grid, k, t = ctx.grid, ctx.grid.size, self.cfg.temperature
        history = grid.valid.clone()
        history[:, k - 1] = False
        lab = grid.to_grid(labels[grid.node])
        primary = sum(window_info_nce(ctx.pre[m], lab, history, t) for m in self.cfg.modalities)
        pairs = list(itertools.combinations(self.cfg.modalities, 2))
        semantic = sum((window_info_nce(ctx.post[a], ctx.post[b], grid.valid, t) for a, b in pairs),
                       start=lab.sum() * 0.0)
        return primary, semantic

    # ------------------------------------------------------------------ inference
    def _head_scores(self, ctx: Context, targets: torch.Tensor, labels: torch.Tensor):
        if self.cfg.head == "classify":
            return self.classify(ctx, targets, labels)
        return self.generate_scores(ctx, targets, labels)

    @torch.no_grad()
    def predict(self, batch: HRGBatch, history: str = "predicted", graph_edges: str | None = None) -> HRGOutput:
        """Scores and predictions for every utterance of ``batch``.

        ``history="predicted"`` (default): turn by turn, the label nodes of earlier turns are built from this
        model's own predictions for them; ``batch.dialogues.labels`` / ``.sentiments`` are never read.
        ``history="gold"``: the gold labels of earlier turns are fed (a LABEL LEAK; ablation only).
        """
        if history not in ("predicted", "gold"):
            raise ValueError(f"history must be 'predicted' or 'gold', got {history!r}")
        db = batch.dialogues
        ctx = self.context(batch, graph_edges)
        n = db.num_nodes
        c, s = len(self.cfg.label_names), len(self.cfg.sentiment_names)
        dev = ctx.tokens.device
        emo_scores = torch.zeros(n, c, device=dev)
        sen_scores = torch.zeros(n, s, device=dev)
        if history == "gold":
            labels = self.label_nodes(db.speakers, db.labels, db.sentiments)
            targets = torch.arange(n, device=dev)
            emo_scores[:], sen_scores[:] = (t.float() for t in self._head_scores(ctx, targets, labels))
        else:
            table = self.label_table(db.speakers)                           # (n_spk, C, S, d)
            pred_e = torch.zeros(n, dtype=torch.long, device=dev)
            pred_s = torch.zeros(n, dtype=torch.long, device=dev)
            for p in range(int(db.position.max()) + 1 if n else 0):
                targets = (db.position == p).nonzero(as_tuple=True)[0]
                labels = table[db.speakers, pred_e, pred_s]                 # earlier turns: already predicted
                e, se = self._head_scores(ctx, targets, labels)
                emo_scores[targets], sen_scores[targets] = e.float(), se.float()
                pred_e[targets], pred_s[targets] = e.argmax(-1), se.argmax(-1)
        return HRGOutput(emotion_scores=emo_scores, sentiment_scores=sen_scores,
                         emotion_pred=emo_scores.argmax(-1), sentiment_pred=sen_scores.argmax(-1))


# ---------------------------------------------------------------------- build, save, load
def build_model(fields: dict, modalities: Sequence[str], input_dims: dict[str, int], label_names: Sequence[str],
                sentiment_names: Sequence[str], align_weight: float = 1.0e-3, temperature: float = 1.0) -> HRGModel:
    """Load the backbone named in ``fields['backbone']`` and build the model around it."""
    backbone = load_backbone(fields["backbone"], fields["head"])
    names = {f for f in HRGModelConfig.__dataclass_fields__}
    cfg = HRGModelConfig(**{k: v for k, v in fields.items() if k in names},
                         modalities=["text"] + [m for m in modalities if m != "text"],
                         input_dims={m: int(input_dims[m]) for m in modalities if m != "text"},
                         label_names=list(label_names), sentiment_names=list(sentiment_names),
                         align_weight=align_weight, temperature=temperature)
    return HRGModel(cfg, backbone)


def save_hrg_model(model: HRGModel, directory: str | Path, extra: dict | None = None) -> None:
    """Weights (safetensors), the architecture and the backbone's config + tokenizer, into ``directory``."""
    from safetensors.torch import save_model

    from erc.core.io import write_json

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    desc = save_backbone_files(model.info, directory / BACKBONE_DIR)
    save_model(model, str(directory / WEIGHTS_FILE))
    write_json(directory / META_FILE, {"model": asdict(model.cfg), "backbone": desc, **(extra or {})})


def load_hrg_model(directory: str | Path) -> tuple[HRGModel, dict]:
    """Rebuild a model saved by :func:`save_hrg_model`; returns ``(model in eval mode, meta)``."""
    from safetensors.torch import load_model

    directory = Path(directory)
    for p in (directory / META_FILE, directory / WEIGHTS_FILE, directory / BACKBONE_DIR / "config.json"):
        if not p.is_file():
            raise FileNotFoundError(f"{p} missing: {directory} is not a saved HRG model (expected {META_FILE}, "
                                    f"{WEIGHTS_FILE} and {BACKBONE_DIR}/)")
    meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
    backbone = backbone_from_files(directory / BACKBONE_DIR, meta["backbone"])
    model = HRGModel(HRGModelConfig(**meta["model"]), backbone)
    load_model(model, str(directory / WEIGHTS_FILE))
    model.eval()
    return model, meta


__all__ = ["HRGModel", "HRGModelConfig", "HRGOutput", "build_model", "save_hrg_model", "load_hrg_model"]
