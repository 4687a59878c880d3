"""The three baselines on :class:`erc.data.batch.DialogueBatch`: DialogueRNN, DialogueGCN and an MLP.

Every model maps a batch (utterances of whole dialogues stacked, ``ptr`` offsets) to per-utterance
log-probabilities ``(N, C)`` in the batch's order; the recurrent parts work on a padded
``(B, T, D)`` view built from ``batch.batch`` / ``batch.position`` and read back the same way.

* **DialogueRNN** (Majumder et al., AAAI 2019). At turn ``t`` with utterance ``u_t`` said by party
  ``s``: global state ``g_t = GRU_G([u_t ; q_{s,t-1}], g_{t-1})``; context ``c_t`` = attention over
  ``g_1..g_{t-1}`` (``general``: ``softmax_k(g_k . W u_t)``; ``simple``: ``softmax_k(w . g_k)``);
  speaker ``q_{s,t} = GRU_P([u_t ; c_t], q_{s,t-1})``; listeners keep their state, or with
  ``listener_update`` ``q_{l,t} = GRU_L([u_t ; q_{s,t}], q_{l,t-1})``; emotion
  ``e_t = GRU_E(q_{s,t}, e_{t-1})``. Bidirectional: a second DialogueRNN reads each dialogue
  reversed and the two emotion states are concatenated. ``emotion_attention`` (the paper's +Att):
  ``general2`` attention over the dialogue's emotion states (past only when causal), then
  ``ReLU(Linear)`` and the softmax layer.
* **DialogueGCN** (Ghosal et al., EMNLP 2019): a (bi-)GRU over each dialogue (sequential context,
  :class:`SequenceEncoder`),
  ``RGCNConv`` over the relational graph of :mod:`erc.baselines.edges` then ``GraphConv``
  (speaker-level context; with ``edge_attention`` the paper's edge weights
  ``alpha_ij = softmax_j(g_i^T W_e g_j)`` scale the RGCNConv messages, :mod:`erc.baselines.layers`),
  the classifier over ``[sequential ; graph]`` features (optionally with
  nodal attention within the dialogue).
* **MLP**: each utterance's features alone, no dialogue context.

Shapes: ``B`` dialogues, ``T`` the longest, ``N`` utterances, ``D_m`` input features, ``C`` classes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from safetensors.torch import load_file as safetensors_load
from safetensors.torch import save as safetensors_save
from torch import nn
from torch_geometric.nn import GraphConv

from erc.baselines.edges import dialogue_edges, num_relations
from erc.baselines.layers import EdgeAttention, EdgeWeightedRGCNConv, self_loop_weight
from erc.core.errors import FileFormatError
from erc.core.io import atomic_write_bytes, read_json, write_json
from erc.data.batch import DialogueBatch

MODEL_FILE = "model.safetensors"
META_FILE = "model_config.json"


@dataclass
class BaselineModelConfig:
    """Architecture of a saved baseline (the model fields of :class:`erc.baselines.config.BaselineTrainConfig`)."""

    method: str
    input_dim: int
    num_classes: int
    modalities: list[str] = field(default_factory=lambda: ["text"])
    label_names: list[str] = field(default_factory=list)
    bidirectional: bool = False
    global_dim: int = 500
    party_dim: int = 500
    emotion_dim: int = 300
    listener_update: bool = False
    context_attention: str = "general"
    emotion_attention: bool = True
    rec_dropout: float = 0.1
    encoder: str = "gru"
    encoder_dim: int = 100
    encoder_layers: int = 2
    graph_dim: int = 100
    num_bases: int = 30
    win_p: int = 10
    win_f: int = 10
    nodal_attention: bool = True
    edge_attention: bool = False      # added later: model folders saved before it load with False, as built
    num_speakers: int = 2
    mlp_dims: list[int] = field(default_factory=lambda: [300])
    hidden_dim: int = 300
    dropout: float = 0.1

    @property
    def causal(self) -> bool:
        """Each prediction reads only its own and earlier turns (see BaselineTrainConfig.causal)."""
        if self.method == "mlp":
            return True
        if self.method == "dialoguernn":
            return not self.bidirectional
        return not self.bidirectional and self.win_f == 0


# ----------------------------------------------------------------------------- padded views
def batch_inputs(batch: DialogueBatch, modalities: Sequence[str]) -> torch.Tensor:
    """``(N, D_m)``: the batch's modalities concatenated in ``modalities`` order."""
    return torch.cat([batch.features[m] for m in modalities], dim=-1)


def to_padded(x: torch.Tensor, batch: DialogueBatch, fill: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, T, ...)`` view of per-utterance ``x`` (N, ...) and the mask ``(B, T)`` of real turns."""
    b, t = batch.num_dialogues, int(batch.lengths.max())
    out = x.new_full((b, t, *x.shape[1:]), fill)
    out[batch.batch, batch.position] = x
    mask = torch.zeros(b, t, dtype=torch.bool, device=x.device)
    mask[batch.batch, batch.position] = True
    return out, mask


def from_padded(y: torch.Tensor, batch: DialogueBatch) -> torch.Tensor:
    """Per-utterance rows ``(N, ...)`` of a padded ``(B, T, ...)`` tensor."""
    return y[batch.batch, batch.position]


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each dialogue's turns in reverse order (padding stays at the end). Its own inverse."""
    t = x.shape[1]
    pos = torch.arange(t, device=x.device)[None, :]
    idx = torch.where(pos < lengths[:, None], lengths[:, None] - 1 - pos, pos)      # (B, T)
    return x.gather(1, idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand_as(x))


def masked_attention_pool(query: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor, causal: bool,
                          proj: nn.Linear) -> torch.Tensor:
    """``general2`` attention: ``a_{t,k} = softmax_k((W q_t + b) . m_k)`` over the real turns ``k`` of the
    dialogue (``k <= t`` when ``causal``); returns ``sum_k a_{t,k} m_k``. Shapes: (B, T, D) -> (B, T, D)."""
    scores = torch.bmm(proj(query), memory.transpose(1, 2))                 # (B, T, T)
    allowed = mask[:, None, :].expand_as(scores)
    if causal:
        t = scores.shape[-1]
        allowed = allowed & torch.ones(t, t, dtype=torch.bool, device=scores.device).tril()[None]
    scores = scores.masked_fill(~allowed, float("-inf"))
    alpha = torch.softmax(scores, dim=-1)          # every row allows key 0 (a real turn): never all -inf
    return torch.bmm(alpha, memory)


# ----------------------------------------------------------------------------- DialogueRNN
class DialogueRNNCell(nn.Module):
    """One turn of DialogueRNN (see the module doc for the equations).

    Shapes: ``u`` (B, D_m); ``speaker`` (B,) party index; ``g_hist`` (B, t, D_g) or None at t = 0;
    ``q`` (B, P, D_p); ``e`` (B, D_e). Returns ``(g_t, q_t, e_t)``.
    """

    def __init__(self, d_m: int, d_g: int, d_p: int, d_e: int, listener_update: bool = False,
                 context_attention: str = "general", dropout: float = 0.1):
        super().__init__()
        self.d_g, self.d_p, self.d_e = d_g, d_p, d_e
        self.listener_update = listener_update
        self.context_attention = context_attention
        self.g_cell = nn.GRUCell(d_m + d_p, d_g)
        self.p_cell = nn.GRUCell(d_m + d_g, d_p)
        self.e_cell = nn.GRUCell(d_p, d_e)
        self.l_cell = nn.GRUCell(d_m + d_p, d_p) if listener_update else None
        if context_attention == "general":
            self.attn = nn.Linear(d_m, d_g, bias=False)
        elif context_attention == "simple":
            self.attn = nn.Linear(d_g, 1, bias=False)
        else:
            raise ValueError(f"context_attention: expected general or simple, got {context_attention!r}")
        self.dropout = nn.Dropout(dropout)

    def context(self, u: torch.Tensor, g_hist: torch.Tensor | None) -> torch.Tensor:
        """``c_t``: attention over the earlier global states (zeros at the first turn)."""
        if g_hist is None or g_hist.shape[1] == 0:
            return u.new_zeros(u.shape[0], self.d_g)
        if self.context_attention == "general":
            scores = torch.bmm(g_hist, self.attn(u)[:, :, None])[:, :, 0]   # (B, t)
        else:
            scores = self.attn(g_hist)[:, :, 0]
        alpha = torch.softmax(scores, dim=1)
        return torch.bmm(alpha[:, None, :], g_hist)[:, 0]

    def forward(self, u, speaker, g_hist, q, e):
        rows = torch.arange(u.shape[0], device=u.device)
        q_s = q[rows, speaker]                                              # speaker's state before the turn
        g_prev = g_hist[:, -1] if g_hist is not None and g_hist.shape[1] else u.new_zeros(u.shape[0], self.d_g)
        g = self.dropout(self.g_cell(torch.cat([u, q_s], -1), g_prev))
        c = self.context(u, g_hist)
        q_s_new = self.dropout(self.p_cell(torch.cat([u, c], -1), q_s))
        is_speaker = F.one_hot(speaker, q.shape[1]).to(q.dtype)[:, :, None]    # (B, P, 1)
        if self.l_cell is not None:
            b, p, _ = q.shape
            inp = torch.cat([u, q_s_new], -1)[:, None, :].expand(b, p, -1).reshape(b * p, -1)
            q_l = self.dropout(self.l_cell(inp, q.reshape(b * p, -1))).view(b, p, -1)
        else:
            q_l = q
        q_new = q_l * (1 - is_speaker) + q_s_new[:, None, :] * is_speaker
        e_new = self.dropout(self.e_cell(q_s_new, e))
        return g, q_new, e_new


class DialogueRNN(nn.Module):
    """DialogueRNN over padded dialogues, one direction. Shapes: ``x`` (B, T, D_m), ``speakers`` (B, T)
    (padding: any value) -> emotion states (B, T, D_e). Turn ``t`` reads only turns ``<= t``."""

    def __init__(self, d_m: int, d_g: int, d_p: int, d_e: int, listener_update: bool = False,
                 context_attention: str = "general", dropout: float = 0.1):
        super().__init__()
        self.cell = DialogueRNNCell(d_m, d_g, d_p, d_e, listener_update, context_attention, dropout)

    def forward(self, x: torch.Tensor, speakers: torch.Tensor, num_parties: int) -> torch.Tensor:
        b, t, _ = x.shape
        speakers = speakers.clamp(min=0, max=num_parties - 1)
        q = x.new_zeros(b, num_parties, self.cell.d_p)
        e = x.new_zeros(b, self.cell.d_e)
        g_hist: torch.Tensor | None = None
        out = []
        for k in range(t):
            g, q, e = self.cell(x[:, k], speakers[:, k], g_hist, q, e)
            g_hist = g[:, None] if g_hist is None else torch.cat([g_hist, g[:, None]], 1)
            out.append(e)
        return torch.stack(out, 1)


class DialogueRNNModel(nn.Module):
    def __init__(self, cfg: BaselineModelConfig):
        super().__init__()
        self.cfg = cfg
        args = (cfg.input_dim, cfg.global_dim, cfg.party_dim, cfg.emotion_dim, cfg.listener_update,
                cfg.context_attention, cfg.rec_dropout)
        self.rnn_f = DialogueRNN(*args)
        self.rnn_b = DialogueRNN(*args) if cfg.bidirectional else None
        d = cfg.emotion_dim * (2 if cfg.bidirectional else 1)
        h = cfg.hidden_dim * (2 if cfg.bidirectional else 1)
        # the original drops the emotion states at dropout + 0.15 (its published runs: 0.25)
        self.state_dropout = nn.Dropout(min(cfg.dropout + 0.15, 0.9))
        self.att = nn.Linear(d, d) if cfg.emotion_attention else None
        self.linear = nn.Linear(d, h)
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(h, cfg.num_classes)

    def forward(self, batch: DialogueBatch) -> torch.Tensor:
        x, mask = to_padded(batch_inputs(batch, self.cfg.modalities), batch)
        spk, _ = to_padded(batch.speakers, batch, fill=0)
        parties = int(batch.speakers.max()) + 1
        e = self.rnn_f(x, spk, parties)
        if self.rnn_b is not None:
            lengths = batch.lengths
            e_b = reverse_padded(self.rnn_b(reverse_padded(x, lengths), reverse_padded(spk, lengths), parties),
                                 lengths)
            e = torch.cat([e, e_b], -1)
        e = self.state_dropout(e)
        if self.att is not None:
            e = masked_attention_pool(e, e, mask, self.cfg.causal, self.att)
        hidden = self.dropout(F.relu(self.linear(e)))
        return F.log_softmax(self.out(from_padded(hidden, batch)), -1)


# ----------------------------------------------------------------------------- DialogueGCN
class SequenceEncoder(nn.Module):
    """A stacked (bi)directional GRU / LSTM over padded dialogues that never reads padding.

    Each layer runs a one-directional RNN forwards (padding comes after a dialogue's last turn, so
    no real turn reads it) and, when bidirectional, another over each dialogue reversed WITHIN its
    own length (:func:`reverse_padded`), concatenated; dropout between layers. The same function as
    a packed ``nn.GRU(bidirectional=True)``, at the cost of a padded one (packed sequences run step
    by step on CPU: about twice the time). Shapes: ``x`` (B, T, D_m), ``lengths`` (B,) -> (B, T, H * dirs).
    """

    def __init__(self, kind: str, d_in: int, hidden: int, layers: int, bidirectional: bool, dropout: float):
        super().__init__()
        rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[kind]
        dirs = 2 if bidirectional else 1
        self.forward_rnns = nn.ModuleList(rnn(d_in if k == 0 else hidden * dirs, hidden, batch_first=True)
                                          for k in range(layers))
        self.backward_rnns = nn.ModuleList(rnn(d_in if k == 0 else hidden * dirs, hidden, batch_first=True)
                                           for k in range(layers)) if bidirectional else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        for k, fwd in enumerate(self.forward_rnns):
            if k:
                x = self.dropout(x)
            h = fwd(x)[0]
            if self.backward_rnns is not None:
                h_b = reverse_padded(self.backward_rnns[k](reverse_padded(x, lengths))[0], lengths)
                h = torch.cat([h, h_b], -1)
            x = h
        return x


class DialogueGCNModel(nn.Module):
    def __init__(self, cfg: BaselineModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = SequenceEncoder(cfg.encoder, cfg.input_dim, cfg.encoder_dim, cfg.encoder_layers,
                                       cfg.bidirectional, cfg.dropout)
        d_seq = cfg.encoder_dim * (2 if cfg.bidirectional else 1)
        # RGCNConv's parameters and function in one gather / scatter instead of a loop over relations
        self.rgcn = EdgeWeightedRGCNConv(d_seq, cfg.graph_dim, num_relations(cfg.num_speakers),
                                         num_bases=cfg.num_bases or None)
        self.gconv = GraphConv(cfg.graph_dim, cfg.graph_dim)
        d = d_seq + cfg.graph_dim
        self.att = nn.Linear(d, d) if cfg.nodal_attention else None
        self.linear = nn.Linear(d, cfg.hidden_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.hidden_dim, cfg.num_classes)
        # built last, so that without it every other parameter is initialised as before the option existed
        self.edge_att = EdgeAttention(d_seq) if cfg.edge_attention else None

    def sequential(self, batch: DialogueBatch) -> torch.Tensor:
        """``(N, d_seq)``: the sequential context encoder over each dialogue."""
        x, _ = to_padded(batch_inputs(batch, self.cfg.modalities), batch)
        return from_padded(self.encoder(x, batch.lengths), batch)

    def forward(self, batch: DialogueBatch) -> torch.Tensor:
        h = self.sequential(batch)
        edge_index, edge_type = dialogue_edges(batch.ptr, batch.speakers, self.cfg.win_p, self.cfg.win_f,
                                               self.cfg.num_speakers)
        if self.edge_att is None:
            r = self.rgcn(h, edge_index, edge_type)
        else:
            alpha = self.edge_att(h, edge_index)                      # (E,), sums to 1 into each node
            r = self.rgcn(h, edge_index, edge_type, edge_weight=alpha,
                          root_weight=self_loop_weight(alpha, edge_index, h.size(0)))
        g = self.gconv(r, edge_index)
        z = torch.cat([h, g], -1)
        if self.att is not None:
            zp, mask = to_padded(z, batch)
            z = from_padded(masked_attention_pool(zp, zp, mask, self.cfg.causal, self.att), batch)
        hidden = self.dropout(F.relu(self.linear(z)))
        return F.log_softmax(self.out(hidden), -1)


# ----------------------------------------------------------------------------- MLP
class MLPModel(nn.Module):
    def __init__(self, cfg: BaselineModelConfig):
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        d = cfg.input_dim
        for k in cfg.mlp_dims:
            layers += [nn.Linear(d, k), nn.ReLU(), nn.Dropout(cfg.dropout)]
            d = k
        layers.append(nn.Linear(d, cfg.num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, batch: DialogueBatch) -> torch.Tensor:
        return F.log_softmax(self.net(batch_inputs(batch, self.cfg.modalities)), -1)


MODELS = {"dialoguernn": DialogueRNNModel, "dialoguegcn": DialogueGCNModel, "mlp": MLPModel}


def build_model(cfg: BaselineModelConfig) -> nn.Module:
    if cfg.method not in MODELS:
        raise ValueError(f"method: expected one of {', '.join(MODELS)}, got {cfg.method!r}")
    return MODELS[cfg.method](cfg)


# ----------------------------------------------------------------------------- save / load
def save_baseline_model(model: nn.Module, directory: str | Path, extra: dict | None = None) -> None:
    """Write ``model.safetensors`` (state dict) and ``model_config.json`` (architecture + ``extra``)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(directory / MODEL_FILE, safetensors_save(state, metadata={"format": "pt"}))
    write_json(directory / META_FILE, {"model": asdict(model.cfg), "causal": model.cfg.causal, **(extra or {})})


def load_baseline_model(directory: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild a model saved by :func:`save_baseline_model`; returns ``(model in eval mode, meta)``."""
    directory = Path(directory)
    meta_path, weights = directory / META_FILE, directory / MODEL_FILE
    for p in (meta_path, weights):
        if not p.is_file():
            raise FileNotFoundError(f"{p} missing: {directory} is not a saved baseline model "
                                    f"(expected {META_FILE} and {MODEL_FILE})")
    meta = read_json(meta_path)
    arch = meta.get("model") if isinstance(meta, dict) else None
    names = {f.name for f in fields(BaselineModelConfig)}
    if not isinstance(arch, dict) or set(arch) - names or {"method", "input_dim", "num_classes"} - set(arch):
        raise FileFormatError(f"{meta_path}: field 'model': expected the fields of BaselineModelConfig "
                              f"({', '.join(sorted(names))})")
    model = build_model(BaselineModelConfig(**arch))
    model.load_state_dict(safetensors_load(str(weights)))
    return model.eval(), meta
