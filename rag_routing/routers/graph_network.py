"""The heterogeneous graph attention network behind :class:`~rag_routing.routers.graph.GraphRouter`, in plain
PyTorch (no graph library).

This module imports torch at the top: :mod:`rag_routing.routers.graph` imports it only when a GraphRouter
trains, predicts or loads, so ``import rag_routing`` never loads torch.

A :class:`QueryGraph` holds node features for three node types (``query``, ``task``, ``candidate``) and, per
relation of :data:`RELATIONS`, the source and destination node indices and the edge features. Each
:class:`HeteroGATLayer` is GATv2-style attention (Brody et al. 2022) with edge features and one set of weights
per relation; all incoming edges of a node, whatever their relation, share one softmax. Everything is a
gather, a ``scatter_reduce`` (the softmax maximum) or an ``index_add_`` over whole edge lists: no Python loop
over nodes or edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

#: relation -> (source node type, destination node type, edge feature width).
RELATIONS: dict[str, tuple[str, str, int]] = {
    "query_task": ("query", "task", 1),              # a training query belongs to its task
    "task_query": ("task", "query", 1),              # every query (training or new) hears its task
    "query_candidate": ("query", "candidate", 2),    # observed outcome: (scaled quality, log-cost z)
    "candidate_query": ("candidate", "query", 2),    # the same edge, reversed
    "candidate_task": ("candidate", "task", 3),      # (observed?, mean quality on the task, log-cost z)
    "task_candidate": ("task", "candidate", 3),      # the same edge, reversed
    "query_query": ("query", "query", 1),            # a nearby training query (cosine similarity)
}
NODE_TYPES = ("query", "task", "candidate")


@dataclass
class QueryGraph:
    """Node features per node type, ``(source, destination, features)`` per relation, and a logit offset per
    (target query, candidate): the logit of the candidate's mean observed quality on the query's task."""

    nodes: dict[str, torch.Tensor]
    edges: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    offset: torch.Tensor


class HeteroGATLayer(nn.Module):
    """One round of message passing: per relation ``r``, the message of edge ``s -> d`` is
    ``W_r h_s + U_r e_sd`` and its attention logit ``a_r · LeakyReLU(W_r h_s + V_r h_d + U_r e_sd)`` per head;
    a node's update is ``LayerNorm(h + ELU(S h + Σ α m))`` with a per-type ``S``."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden size {dim} is not a multiple of {heads} heads")
        self.dim, self.heads, self.dropout = dim, heads, dropout
        self.source = nn.ModuleDict({r: nn.Linear(dim, dim, bias=False) for r in RELATIONS})
        self.target = nn.ModuleDict({r: nn.Linear(dim, dim, bias=False) for r in RELATIONS})
        self.edge = nn.ModuleDict({r: nn.Linear(w, dim, bias=False) for r, (_, _, w) in RELATIONS.items()})
        self.attention = nn.ParameterDict(
            {r: nn.Parameter(torch.randn(heads, dim // heads) / (dim // heads) ** 0.5) for r in RELATIONS})
        self.own = nn.ModuleDict({t: nn.Linear(dim, dim) for t in NODE_TYPES})
        self.norm = nn.ModuleDict({t: nn.LayerNorm(dim) for t in NODE_TYPES})

    def _incoming(self, h: dict[str, torch.Tensor], graph: QueryGraph, node_type: str
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """(logits (E, heads), messages (E, heads, dim/heads), destinations (E,)) of every edge into
        ``node_type``."""
        logits, messages, targets = [], [], []
        for r, (src_type, dst_type, _) in RELATIONS.items():
            if dst_type != node_type or r not in graph.edges or graph.edges[r][0].numel() == 0:
                continue
            src, dst, feat = graph.edges[r]
            msg = self.source[r](h[src_type])[src] + self.edge[r](feat)
            z = F.leaky_relu(msg + self.target[r](h[dst_type])[dst], 0.2).view(-1, self.heads, self.dim // self.heads)
            logits.append((z * self.attention[r]).sum(-1))
            messages.append(msg.view(-1, self.heads, self.dim // self.heads))
            targets.append(dst)
        if not logits:
            return None
        return torch.cat(logits), torch.cat(messages), torch.cat(targets)

    def forward(self, h: dict[str, torch.Tensor], graph: QueryGraph) -> dict[str, torch.Tensor]:
        out = {}
        for node_type, x in h.items():
            n = x.shape[0]
            aggregate = x.new_zeros(n, self.heads, self.dim // self.heads)
            incoming = self._incoming(h, graph, node_type)
            if incoming is not None:
                logit, msg, dst = incoming
                peak = logit.new_full((n, self.heads), -torch.inf).scatter_reduce(
                    0, dst[:, None].expand(-1, self.heads), logit, reduce="amax", include_self=True)
                weight = torch.exp(logit - peak[dst])
                total = logit.new_zeros(n, self.heads).index_add_(0, dst, weight)
                alpha = F.dropout(weight / total[dst], self.dropout, self.training)
                aggregate = aggregate.index_add_(0, dst, alpha[..., None] * msg)
            update = F.elu(self.own[node_type](x) + aggregate.reshape(n, self.dim))
            out[node_type] = self.norm[node_type](x + F.dropout(update, self.dropout, self.training))
        return out


class GraphQualityNet(nn.Module):
    """Projects each node type to ``hidden`` dimensions, runs ``layers`` :class:`HeteroGATLayer` rounds and
    scores every (query, candidate) pair with an MLP on ``[h_q ⊙ h_m, h_q, h_m]`` added to the graph's offset: a
    logit of the candidate's scaled quality on the query (edge prediction). The network thus learns a per-query
    correction of the task-level rate, which it must supply entirely for a candidate without outcomes."""

    def __init__(self, query_dim: int, candidate_dim: int, hidden: int = 32, layers: int = 2, heads: int = 2,
                 dropout: float = 0.1):
        super().__init__()
        self.config = {"query_dim": query_dim, "candidate_dim": candidate_dim, "hidden": hidden, "layers": layers,
                       "heads": heads, "dropout": dropout}
        self.embed = nn.ModuleDict({"query": nn.Linear(query_dim, hidden), "task": nn.Linear(query_dim, hidden),
                                    "candidate": nn.Linear(candidate_dim, hidden)})
        self.layers = nn.ModuleList([HeteroGATLayer(hidden, heads, dropout) for _ in range(layers)])
        self.decoder = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.ELU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.decoder[-1].weight)  # an untrained network predicts the task-level rates exactly
        nn.init.zeros_(self.decoder[-1].bias)
        self.dropout = dropout

    def forward(self, graph: QueryGraph, targets: torch.Tensor) -> torch.Tensor:
        """``(len(targets), n_candidates)`` logits for the query nodes ``targets``."""
        h = {t: self.embed[t](F.dropout(x, self.dropout, self.training)) for t, x in graph.nodes.items()}
        for layer in self.layers:
            h = layer(h, graph)
        q, m = h["query"][targets], h["candidate"]
        pairs = torch.cat([q[:, None, :] * m[None], q[:, None, :].expand(-1, len(m), -1),
                           m[None].expand(len(q), -1, -1)], dim=-1)
        return self.decoder(pairs).squeeze(-1) + graph.offset


__all__ = ["RELATIONS", "NODE_TYPES", "QueryGraph", "HeteroGATLayer", "GraphQualityNet"]
