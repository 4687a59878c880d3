"""DialogueGCN's speaker- and order-typed relational graph over a past / future window.

Node ``i`` (an utterance) receives a message from every utterance ``j`` of the SAME dialogue with
``pos_i - win_p <= pos_j <= pos_i + win_f`` (itself included), as ``edge_index[:, e] = (j, i)``
(PyG: row 0 = source, row 1 = target). The relation of an edge is the ordered speaker pair and
the direction of time::

    relation(j -> i) = (speaker_j * S + speaker_i) * 2 + (1 if pos_j > pos_i else 0)

``0`` = the source is in the target's past or is the target itself, ``1`` = in its future; ``S``
speakers give ``2 S^2`` relations (Ghosal et al., 2019, Sec. 3.2). With ``win_f = 0`` every edge
points forward in time: the graph is causal.

All dialogues of a batch are handled at once with broadcasting over the window offsets (no Python
loop over utterances or dialogues); an edge never joins two dialogues because a candidate source
outside its target's dialogue is dropped.
"""
from __future__ import annotations

import torch

PAST, FUTURE = 0, 1


def num_relations(num_speakers: int) -> int:
    """``2 S^2``: (source speaker, target speaker, past/future)."""
    return 2 * num_speakers * num_speakers


def relation_type(src_speaker: torch.Tensor, dst_speaker: torch.Tensor, future: torch.Tensor,
                  num_speakers: int) -> torch.Tensor:
    return (src_speaker * num_speakers + dst_speaker) * 2 + future.long()


def dialogue_edges(ptr: torch.Tensor, speakers: torch.Tensor, win_p: int, win_f: int,
                   num_speakers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(edge_index (2, E), edge_type (E,))`` of a batch of dialogues laid out as ``ptr``.

    Shapes: ``ptr`` (B + 1,) offsets of the dialogues (:class:`erc.data.batch.DialogueBatch`);
    ``speakers`` (N,) speaker index within each dialogue, ``0 <= s < num_speakers``. ``win_p`` /
    ``win_f``: window sizes, ``-1`` = the whole dialogue on that side. Edges are ordered by target,
    then source.
    """
    device = ptr.device
    lengths = ptr[1:] - ptr[:-1]
    n = int(ptr[-1])
    if n == 0:
        return torch.zeros(2, 0, dtype=torch.long, device=device), torch.zeros(0, dtype=torch.long, device=device)
    if int(speakers.max()) >= num_speakers or int(speakers.min()) < 0:
        raise ValueError(f"speaker index {int(speakers.max())} outside the {num_speakers} speakers the relation "
                         "types cover (num_speakers)")
    longest = int(lengths.max())
    p = longest - 1 if win_p < 0 else min(win_p, longest - 1)
    f = longest - 1 if win_f < 0 else min(win_f, longest - 1)
    dialogue = torch.repeat_interleave(torch.arange(len(lengths), device=device), lengths)
    start, end = ptr[:-1][dialogue], ptr[1:][dialogue]                 # (N,) each node's dialogue bounds
    target = torch.arange(n, device=device)
    offsets = torch.arange(-p, f + 1, device=device)                    # (K,)
    source = target[:, None] + offsets[None, :]                         # (N, K)
    ok = (source >= start[:, None]) & (source < end[:, None])
    tgt = target[:, None].expand_as(source)[ok]
    src = source[ok]
    future = (src > tgt).long()
    etype = relation_type(speakers[src], speakers[tgt], future, num_speakers)
    return torch.stack([src, tgt]), etype
