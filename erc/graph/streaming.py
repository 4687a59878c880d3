"""Incremental, turn-by-turn forward pass of a causal :class:`~erc.graph.model.GraphSmile`.

A model trained with past-only context (``win_f = 0``, ``configs/graph_*_causal.yaml``)
gives utterance ``t`` an output that depends on utterances ``<= t`` only, in every layer:
node ``t`` receives messages from ``j in [t - win_p, t]``, and its normalisation
``D^-1/2`` is its weighted in-degree, a sum over that same past window. So the whole
computation of a new turn can reuse what the earlier turns computed.

:class:`GraphStream` holds one dialogue's cache: for every graph stack, every node group
(one for a temporal graph, the two modalities of a pair graph) and every layer ``l``, the
last ``win_p + 1`` rows of ``d_j * H_j^{(l-1)} W^{(l)}`` (the layer's transformed input,
already scaled by the source's ``D^-1/2``). A new turn costs, per layer, one ``(1, C) x
(C, C)`` product per group and one weighted sum over the cached window:

.. math::
    H_t^{(l)} = d_t \\sum_{j = t - P}^{t} w_{r(j - t)}\\, (d_j H_j^{(l-1)} W^{(l)}) + b^{(l)},
    \\qquad d_t = \\Big(\\sum_{j} w_{r(j - t)}\\Big)^{-1/2}

(with ``norm: row`` the source factor is 1 and the target's is ``1 / deg_t``), which is row ``t`` of
``\\hat A H^{(l-1)} W^{(l)} + b`` in
:class:`~erc.graph.layers.RelationalGraphStack`: the predictions equal the offline model's
on the whole dialogue (``tests/graph/test_streaming.py`` checks it to float precision).
Nothing of a past turn is ever recomputed; memory per dialogue is bounded by the window
(``win_p = -1``, the whole dialogue, grows with the dialogue).

Shapes:
    - ``step(features)``: ``features[m]`` is ``(d_m,)`` or ``(1, d_m)``, already normalised
      as the training run normalised it; returns a :class:`StreamOutput` of ``(C,)`` and ``(S,)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from erc.graph.model import GraphSmile


class NotCausalError(ValueError):
    """The model reads future turns (``win_f != 0``), so a turn's output is not final when it arrives."""


@dataclass
class StreamOutput:
    """One turn's outputs (1-D tensors)."""

    emotion_logits: torch.Tensor      # (C,)
    sentiment_logits: torch.Tensor    # (S,)
    fused: torch.Tensor               # (hidden,)


class _Rows:
    """The last ``capacity`` rows appended (all rows when ``capacity`` is None), as one tensor."""

    def __init__(self, width: int, capacity: int | None, dtype: torch.dtype, device: torch.device):
        self.capacity = capacity
        size = capacity if capacity is not None else 16
        self.buf = torch.empty(size, width, dtype=dtype, device=device)
        self.count = 0

    def append(self, row: torch.Tensor) -> None:
        if self.capacity is not None and self.count == self.capacity:
            self.buf[:-1] = self.buf[1:].clone()          # drop the oldest row
            self.buf[-1] = row
            return
        if self.count == self.buf.size(0):                # unbounded: grow by doubling
            self.buf = torch.cat([self.buf, torch.empty_like(self.buf)])
        self.buf[self.count] = row
        self.count += 1

    def view(self) -> torch.Tensor:
        return self.buf[:self.count]


class _StackStream:
    """Cache of one :class:`~erc.graph.layers.RelationalGraphStack` over the node groups it convolves."""

    def __init__(self, stack, groups: tuple[str, ...], cross: bool, nb: int, reach: int | None, clip: int):
        self.stack, self.groups, self.cross, self.nb = stack, groups, cross, nb
        self.row = stack.norm == "row"          # D^-1 A: no source factor, 1 / deg_t at the target
        self.reach, self.clip = reach, clip     # reach: past rows read (None = all); clip: distance buckets
        w = stack.relation_weight
        self.weights = F.softplus(w.detach())   # (num_relations,): fixed in eval
        cap = None if reach is None else reach + 1
        self.cache = [[_Rows(stack.channels, cap, w.dtype, w.device) for _ in groups]
                      for _ in range(stack.num_layers)]
        self.t = 0

    def _window_weights(self, target: int) -> torch.Tensor:
        """Edge weights ``w_{r(j - t)}`` of the rows in the window, oldest first, for a target group."""
        k = self.t + 1 if self.reach is None else min(self.t, self.reach) + 1
        d = torch.arange(-(k - 1), 1, device=self.weights.device)
        bucket = d.clamp(min=-self.clip) + self.clip          # future side is 0: clip_f = 0
        offset = target * self.nb if self.cross else 0        # direction: which group receives
        return self.weights[bucket + offset]

    def step(self, x: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Outputs ``X + sum_l branch_l(H^{(l)})`` of the new node of every group, in ``groups`` order."""
        n_groups = len(self.groups)
        source = [1 - g if self.cross else g for g in range(n_groups)]
        win_w = [self._window_weights(g) for g in range(n_groups)]
        deg = [w.sum() for w in win_w]
        src = [torch.ones_like(d) if self.row else d.pow(-0.5) for d in deg]     # factor a row carries as source
        dst = [d.reciprocal() if self.row else d.pow(-0.5) for d in deg]         # factor at the target
        h = [x[m] for m in self.groups]
        out = [v.clone() for v in h]
        for layer, (conv, branch) in enumerate(zip(self.stack.convs, self.stack.branches)):
            for g in range(n_groups):                          # every group's d_t H W first: the others read it
                self.cache[layer][g].append(src[g] * conv.lin(h[g]))
            h = [dst[g] * (win_w[g] @ self.cache[layer][source[g]].view()) + conv.bias for g in range(n_groups)]
            for g in range(n_groups):
                out[g] = out[g] + F.leaky_relu(branch(h[g]))   # dropout: identity in eval
        self.t += 1
        return out


class GraphStream:
    """One dialogue's incremental state over a causal GraphSmile model (see the module docstring).

    ``step(features)`` adds the next utterance and returns its outputs; the model must be in
    eval mode (it is put there) and is never changed.
    """

    def __init__(self, model: GraphSmile):
        cfg = model.cfg
        if cfg.win_f != 0:
            raise NotCausalError(f"the model reads {cfg.win_f if cfg.win_f >= 0 else 'all'} future turn(s) "
                                 "(win_f); only a causal model (win_f 0, e.g. configs/graph_cosmic_iemocap_causal.yaml) "
                                 "can predict a turn when it arrives")
        self.model = model.eval()
        reach = None if cfg.win_p < 0 else cfg.win_p
        clip = cfg.max_distance if cfg.win_p < 0 else cfg.win_p
        nb = clip + 1                                          # num_distance_buckets(win_p, 0, max_distance)
        pairs = cfg.pairs()
        if pairs:
            self.stacks = [(f"{a}_{b}", (a, b), _StackStream(model.graphs[f"{a}_{b}"], (a, b), True, nb, reach, clip))
                           for a, b in pairs]
        else:
            m = cfg.modalities[0]
            self.stacks = [(m, (m,), _StackStream(model.graphs[m], (m,), False, nb, reach, clip))]
        self.length = 0

    def __len__(self) -> int:
        return self.length

    @torch.inference_mode()
    def step(self, features: dict[str, torch.Tensor]) -> StreamOutput:
        model = self.model
        x = {m: torch.as_tensor(features[m]).reshape(1, -1) for m in model.cfg.modalities if m in features}
        h = {m: v[0] for m, v in model.project(x).items()}    # BatchNorm (running stats) + projection
        reps = []
        for key, groups, stream in self.stacks:
            for out in stream.step(h):
                reps.append(model.modal_fusion(out))
        fused = torch.stack(reps).mean(0)
        self.length += 1
        return StreamOutput(model.emotion_head(fused), model.sentiment_head(fused), fused)
