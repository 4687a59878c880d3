"""GraphSmile-style heterogeneous multimodal graph network (Li et al., 2024), rebuilt.

Pipeline for a :class:`erc.data.batch.DialogueBatch`:

1. Each modality is projected to ``hidden_dim`` (Linear + LeakyReLU + Dropout;
   text is batch-normalised first, as in the reference).
2. For every pair of modalities (in the order of ``modalities``: with
   ``text, visual, audio`` that is tv, ta, va) a bipartite graph links
   utterance ``i`` of one modality to the other modality's utterances in the
   window ``[i - win_p, i + win_f]`` of the same dialogue
   (:func:`erc.graph.edges.cross_modal_graph`) and a
   :class:`erc.graph.layers.RelationalGraphStack` convolves it.
3. The two directional outputs of every pair go through one shared
   Linear + LeakyReLU and are averaged (six for three modalities). With a
   single modality, a temporal graph over its utterances replaces step 2.
4. Heads: emotion (``num_classes``), sentiment (3) and sentiment shift
   (2 classes, on concatenated pairs of utterances inside blocks of
   ``shift_win``, :func:`erc.graph.edges.shift_pairs`).
"""
from __future__ import annotations

import itertools
import pickle
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file as safetensors_load_file
from safetensors.torch import save as safetensors_save
from torch import nn
from torch.utils.checkpoint import checkpoint

from erc.core.errors import FileFormatError
from erc.core.io import atomic_write_bytes, check_safetensors, read_json, write_json
from erc.graph.card import write_graph_card
from erc.graph.edges import cross_modal_graph, num_distance_buckets, shift_pairs, temporal_graph
from erc.graph.layers import NORMS, PROPAGATIONS, CSRLayout, RelationalGraphStack, check_propagation, leaky_relu_dropout

MODEL_FILE = "model.safetensors"
LEGACY_MODEL_FILE = "model.pt"      # torch.save state dict written before safetensors; still read
META_FILE = "model_config.json"
#: Fields of GraphModelConfig added after models were first saved, with the value those models were built with.
ADDED_LATER = {"norm": "sym"}


@dataclass
class GraphModelConfig:
    """Architecture of :class:`GraphSmile` (saved next to the weights)."""

    input_dims: dict[str, int] = field(default_factory=dict)   # modality -> feature dim, in order
    num_classes: int = 6
    num_sentiments: int = 3
    hidden_dim: int = 512
    layers: list[int] = field(default_factory=lambda: [7, 7, 7])  # per modality pair (or the single temporal graph)
    win_p: int = 17
    win_f: int = 17
    max_distance: int = 32          # distance buckets for an unbounded (-1) window side
    dropout: float = 0.2
    shift_win: int = 19
    batchnorm_modalities: list[str] = field(default_factory=lambda: ["text"])
    label_names: list[str] = field(default_factory=list)
    sentiment_names: list[str] = field(default_factory=list)
    propagation: str = PROPAGATIONS[0]  # "csr" (sparse operator, default) | "edgewise" (GCNConv reference)
    norm: str = NORMS[0]                # "sym" D^-1/2 A D^-1/2 (GraphSmile) | "row" D^-1 A (erc.graph.layers.NORMS)

    @property
    def modalities(self) -> list[str]:
        return list(self.input_dims)

    def pairs(self) -> list[tuple[str, str]]:
        return list(itertools.combinations(self.modalities, 2))


@dataclass
class GraphOutput:
    """Per-utterance logits (``N`` nodes) plus shift logits over ``P`` pairs."""

    emotion_logits: torch.Tensor            # (N, C)
    sentiment_logits: torch.Tensor          # (N, 3)
    shift_logits: torch.Tensor              # (P, 2)
    shift_pairs: torch.Tensor               # (2, P) global node indices
    fused: torch.Tensor                     # (N, hidden)
    modality_reps: dict[str, torch.Tensor]  # "<pair>:<modality>" -> (N, hidden) after the shared fusion linear


class GraphSmile(nn.Module):
    """See the module docstring. ``forward(batch) -> GraphOutput``."""

    def __init__(self, cfg: GraphModelConfig):
        super().__init__()
        if not cfg.input_dims:
            raise ValueError("GraphModelConfig.input_dims is empty: need at least one modality")
        self.cfg = cfg
        mods = cfg.modalities
        self.norms = nn.ModuleDict({m: nn.BatchNorm1d(d) for m, d in cfg.input_dims.items()
                                    if m in cfg.batchnorm_modalities})
        self.proj = nn.ModuleDict({m: nn.Sequential(nn.Linear(d, cfg.hidden_dim), nn.LeakyReLU(),
                                                    nn.Dropout(cfg.dropout))
                                   for m, d in cfg.input_dims.items()})
        check_propagation(cfg.propagation, internal=True)
        nb = num_distance_buckets(cfg.win_p, cfg.win_f, cfg.max_distance)
        pairs = cfg.pairs()
        n_graphs = max(len(pairs), 1)
        if len(cfg.layers) < n_graphs:
            raise ValueError(f"layers: {len(cfg.layers)} value(s) {cfg.layers} for {n_graphs} modality "
                             f"pair(s) {pairs or mods}; give one per pair")
        if pairs:
            self.graphs = nn.ModuleDict({f"{a}_{b}": RelationalGraphStack(cfg.hidden_dim, cfg.layers[k], 2 * nb,
                                                                         cfg.dropout, cfg.propagation, cfg.norm)
                                         for k, (a, b) in enumerate(pairs)})
        else:
            self.graphs = nn.ModuleDict({mods[0]: RelationalGraphStack(cfg.hidden_dim, cfg.layers[0], nb,
                                                                      cfg.dropout, cfg.propagation, cfg.norm)})
        self.modal_fusion = nn.Sequential(nn.Linear(cfg.hidden_dim, cfg.hidden_dim), nn.LeakyReLU())
        self.emotion_head = nn.Linear(cfg.hidden_dim, cfg.num_classes)
        self.sentiment_head = nn.Linear(cfg.hidden_dim, cfg.num_sentiments)
        self.shift_head = nn.Linear(2 * cfg.hidden_dim, 2)
        # Training-time memory setting, not architecture (not saved): when True, a training forward keeps
        # only each graph stack's input and recomputes the stack's activations in its backward
        # (torch.utils.checkpoint; the RNG state is replayed, so dropout draws the same masks and the
        # gradients are the same). train-graph's ``recompute_graphs`` sets it.
        self.recompute_graphs = False
        # "int8" on the inference copy made by erc.graph.quantize.quantize_int8 (not saved, not trainable)
        self.quantized: str | None = None

    def _stack(self, key: str, x: torch.Tensor, edge_index: torch.Tensor, relation: torch.Tensor,
               layout: CSRLayout | None) -> torch.Tensor:
        stack = self.graphs[key]
        if self.recompute_graphs and self.training and torch.is_grad_enabled():
            return checkpoint(stack, x, edge_index, relation, layout, use_reentrant=False)
        return stack(x, edge_index, relation, layout)

    def set_propagation(self, name: str) -> None:
        """Switch every graph stack to propagation ``name`` (same parameters; the bench's floor uses "identity")."""
        self.cfg.propagation = check_propagation(name, internal=True)
        for stack in self.graphs.values():
            stack.propagation = name

    def project(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for m in self.cfg.modalities:
            if m not in features:
                raise KeyError(f"batch has no '{m}' features; it has {sorted(features)} "
                               f"(the model was built for {self.cfg.modalities})")
            x = features[m].to(self.emotion_head.weight.dtype)   # float32 features into a float64 model too
            if m in self.norms:
                x = self.norms[m](x)
            lin, act, drop = self.proj[m]
            out[m] = leaky_relu_dropout(lin(x), drop.p, self.training, act.negative_slope)   # = self.proj[m](x)
        return out

    def forward(self, batch: Any) -> GraphOutput:
        cfg = self.cfg
        if self.quantized:   # a CPU-only inference copy (erc.graph.quantize)
            if self.training and torch.is_grad_enabled():
                raise RuntimeError(f"this {self.quantized} copy of the model is for inference: call .eval() "
                                   "(its quantized layers have no gradients); train the float32 model")
            if torch.is_autocast_enabled("cpu"):
                raise RuntimeError(f"this {self.quantized} copy of the model runs on float32 activations: "
                                   "run it without autocast (bf16 mixed precision)")
        h = self.project(batch.features)
        ptr = batch.ptr
        n = int(ptr[-1])
        reps: dict[str, torch.Tensor] = {}
        pairs = cfg.pairs()
        # one graph and one CSR layout per batch, shared by every stack (they differ only in weights)
        if pairs:
            g = cross_modal_graph(ptr, cfg.win_p, cfg.win_f, cfg.max_distance)
            layout = CSRLayout.from_edges(g.edge_index, g.num_nodes) if cfg.propagation == "csr" else None
            for a, b in pairs:
                key = f"{a}_{b}"
                out = self._stack(key, torch.cat([h[a], h[b]]), g.edge_index, g.relation, layout)
                reps[f"{key}:{a}"] = self.modal_fusion(out[:n])
                reps[f"{key}:{b}"] = self.modal_fusion(out[n:])
        else:
            m = cfg.modalities[0]
            g = temporal_graph(ptr, cfg.win_p, cfg.win_f, cfg.max_distance)
            layout = CSRLayout.from_edges(g.edge_index, g.num_nodes) if cfg.propagation == "csr" else None
            reps[m] = self.modal_fusion(self._stack(m, h[m], g.edge_index, g.relation, layout))
        fused = torch.stack(list(reps.values())).mean(0)
        pairs_idx = shift_pairs(ptr, batch.position, cfg.shift_win)
        # shift_head(cat(f_i, f_j)) = W_1 f_i + W_2 f_j + c: project every node once (N x 2), then gather
        # the pairs, instead of building the (P, 2 x hidden) concatenation (P ~ 18 N at shift_win 19)
        w = self.shift_head.weight
        left, right = F.linear(fused, w[:, :cfg.hidden_dim]), F.linear(fused, w[:, cfg.hidden_dim:])
        shift_logits = left[pairs_idx[0]] + right[pairs_idx[1]] + self.shift_head.bias
        return GraphOutput(
            emotion_logits=self.emotion_head(fused),
            sentiment_logits=self.sentiment_head(fused),
            shift_logits=shift_logits,
            shift_pairs=pairs_idx,
            fused=fused,
            modality_reps=reps,
        )


def save_graph_model(model: GraphSmile, directory: str | Path, extra: dict | None = None) -> None:
    """Write ``model.safetensors`` (state dict), ``model_config.json`` and the model card ``README.md`` into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(directory / MODEL_FILE, safetensors_save(state, metadata={"format": "pt"}))
    write_json(directory / META_FILE, {"model": asdict(model.cfg), **(extra or {})})
    write_graph_card(directory, asdict(model.cfg), extra or {})   # README.md: the model card


def load_graph_model(directory: str | Path, map_location: str = "cpu") -> tuple[GraphSmile, dict]:
    """Rebuild a model saved by :func:`save_graph_model`; returns ``(model in eval mode, meta)``.

    Every field of :class:`GraphModelConfig` must be in ``model_config.json`` (a missing
    or unknown key is an error naming the file and the key, never a silent default);
    weights are read from ``model.safetensors``; a folder from before safetensors has
    ``model.pt``, read with ``torch.load(weights_only=True)``. A damaged file raises
    :class:`erc.core.errors.FileFormatError` naming it.
    """
    directory = Path(directory)
    meta_path, weights = directory / META_FILE, directory / MODEL_FILE
    if not weights.is_file() and (directory / LEGACY_MODEL_FILE).is_file():
        weights = directory / LEGACY_MODEL_FILE
    for p in (meta_path, weights):
        if not p.is_file():
            raise FileNotFoundError(f"{p} missing: {directory} is not a saved graph model "
                                    f"(expected {META_FILE} and {MODEL_FILE})")
    meta = read_json(meta_path)
    arch = meta.get("model") if isinstance(meta, dict) else None
    if not isinstance(arch, dict):
        raise FileFormatError(f"{meta_path}: field 'model': expected the architecture as a JSON object "
                              f"(the fields of GraphModelConfig), got {type(arch).__name__}")
    names = [f.name for f in fields(GraphModelConfig)]
    arch = {**ADDED_LATER, **arch}        # a folder saved before a field existed was built with its default
    missing = [n for n in names if n not in arch]
    unknown = sorted(set(arch) - set(names))
    if missing or unknown:
        raise FileFormatError(f"{meta_path}: field 'model': " + "; ".join(
            part for part in (f"missing key(s) {missing}" if missing else "",
                              f"unknown key(s) {unknown}" if unknown else "") if part)
            + f"; expected exactly the keys {names}")
    try:
        model = GraphSmile(GraphModelConfig(**arch))
    except (TypeError, ValueError, KeyError) as exc:
        raise FileFormatError(f"{meta_path}: field 'model': cannot build the model from it ({exc})") from None
    if weights.suffix == ".safetensors":
        check_safetensors(weights)      # a truncated or damaged file is named before anything is read
        try:
            state = safetensors_load_file(str(weights), device=map_location)
        except Exception as exc:  # noqa: BLE001 - safetensors' own errors do not name the file
            detail = str(exc).splitlines()[0] if str(exc) else ""
            raise FileFormatError(f"{weights}: cannot be read as safetensors ({type(exc).__name__}: {detail})") from None
    else:
        state = _load_legacy_weights(weights, map_location)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise FileFormatError(f"{weights}: does not match the architecture in {META_FILE} ({detail})") from None
    model.eval()
    return model, meta


def _load_legacy_weights(weights: Path, map_location: str) -> dict:
    """A ``model.pt`` of an older release: only tensors (``weights_only=True``), never arbitrary objects."""
    try:
        return torch.load(weights, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:  # torch's own text suggests weights_only=False: never do that here
        raise FileFormatError(f"{weights}: refusing to load: it holds objects other than tensors (read with "
                              "torch.load(weights_only=True); save_graph_model writes only a state dict)") from None
    except Exception as exc:  # truncated zip, not a torch file: name the file
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise FileFormatError(f"{weights}: cannot be read as a state dict saved by torch.save "
                              f"({type(exc).__name__}: {detail})") from None


def probabilities(out: GraphOutput) -> dict[str, torch.Tensor]:
    return {"emotion": F.softmax(out.emotion_logits, -1), "sentiment": F.softmax(out.sentiment_logits, -1)}
