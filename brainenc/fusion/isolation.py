"""Isolation analysis: each attention pathway's contribution to a decision, and whether
the decision combines modalities at all (:func:`modality_interaction`).

A *group* is a set of ``(query, key)`` modality blocks, e.g. ``emg->emg``
(unimodal) or ``emg->acc`` (EMG queries attend ACC keys: information flows
from ACC into EMG tokens). Silencing a group sets its blocks to False in the
model's block tables at the chosen layers; the change of the output measures
the group's contribution. See ``docs/isolation.md`` for the definitions.

The model must expose ``segment_names``, ``n_layers``, ``base_tables()`` and
``forward(inputs, lengths=None, tables=None)``, as the transformer models of
:mod:`brainenc.fusion.models.isonet` do.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence, Union

import torch
import torch.nn.functional as F

from .layout import silence

__all__ = [
    "InteractionReport",
    "modality_interaction",
    "IsolationReport",
    "default_groups",
    "isolation_analysis",
    "isolation_by_layer",
    "cross_modal_share",
    "silenced_tables",
    "MEASURES",
]

MEASURES = ("kl", "logit", "prob")
Groups = Mapping[str, Sequence[tuple[str, str]]]


def default_groups(names: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """One unimodal group per modality and one cross-modal group per ordered pair.

    Group ``"a->b"`` holds the block where queries of ``a`` attend keys of ``b``.
    """
    groups = {f"{m}->{m}": [(m, m)] for m in names}
    groups.update({f"{a}->{b}": [(a, b)] for a in names for b in names if a != b})
    return groups


def _is_cross_modal(blocks: Sequence[tuple[str, str]]) -> bool:
    return all(q != k for q, k in blocks)


def _resolve_layers(layers, n_layers: int) -> list[int]:
    if isinstance(layers, str):
        if layers != "all":
            raise ValueError(f"layers must be 'all', an int or a sequence of ints, got {layers!r}")
        return list(range(n_layers))
    chosen = [int(layers)] if isinstance(layers, int) else [int(i) for i in layers]
    for i in chosen:
        if not 0 <= i < n_layers:
            raise IndexError(f"layer {i} outside [0, {n_layers})")
    return sorted(set(chosen))


def silenced_tables(
    model, blocks: Sequence[tuple[str, str]], layers: Union[str, int, Sequence[int]] = "all"
) -> list[torch.Tensor]:
    """The model's per-layer tables with ``blocks`` (by name) silenced at ``layers``."""
    names = list(model.segment_names)
    index = [(names.index(q), names.index(k)) for q, k in blocks]
    chosen = set(_resolve_layers(layers, model.n_layers))
    return [
        silence(t, index) if layer in chosen else t.clone()
        for layer, t in enumerate(model.base_tables())
    ]


@dataclass
class IsolationReport:
    """Per-group effects of silencing attention pathways.

    Attributes
    ----------
    groups : list of str
        Group names, in report order.
    blocks : dict of str to list of (str, str)
        The ``(query, key)`` blocks of each group.
    cross_modal : list of bool
        Whether each group holds only cross-modal blocks.
    layers : list of int
        Layers at which the groups were silenced.
    measure : str
        The measure of :attr:`effect` (``"kl"``, ``"logit"`` or ``"prob"``).
    effect : torch.Tensor
        ``(G,)`` raw effect of silencing each group (non-negative).
    contribution : torch.Tensor
        ``(G,)`` effect normalised by its sum over groups (NaN when all
        effects are 0).
    logit_drop, prob_drop : torch.Tensor
        ``(G,)`` signed mean drop of the predicted class's logit and
        probability (positive: silencing weakens the decision).
    flip_rate : torch.Tensor
        ``(G,)`` fraction of samples whose predicted class changes.
    accuracy : torch.Tensor or None
        ``(G,)`` accuracy with each group silenced, when labels were given.
    baseline_accuracy : float or None
        Accuracy of the intact model, when labels were given.
    """

    groups: list[str]
    blocks: dict[str, list[tuple[str, str]]]
    cross_modal: list[bool]
    layers: list[int]
    measure: str
    effect: torch.Tensor
    contribution: torch.Tensor
    logit_drop: torch.Tensor
    prob_drop: torch.Tensor
    flip_rate: torch.Tensor
    accuracy: torch.Tensor | None = None
    baseline_accuracy: float | None = None

    def cross_modal_share(self) -> float:
        """Sum of the normalised contributions of the cross-modal groups.

        A pathway measure: it says how much of the effect of silencing goes
        through cross-modal blocks, which a model also uses to *route* one
        modality's information through the other's tokens. It does not tell
        an interaction of the modalities from a decision that reads one of
        them: :func:`modality_interaction` does.
        """
        mask = torch.tensor(self.cross_modal, dtype=torch.bool)
        return float(self.contribution[mask].sum())

    def to_table(self) -> str:
        """Plain-text table, one row per group."""
        head = ["group", "kind", self.measure, "contribution", "logit drop", "prob drop", "flips"]
        if self.accuracy is not None:
            head.append("accuracy")
        rows = []
        for g, name in enumerate(self.groups):
            row = [
                name,
                "cross" if self.cross_modal[g] else "unimodal",
                f"{float(self.effect[g]):.4g}",
                f"{float(self.contribution[g]):.3f}",
                f"{float(self.logit_drop[g]):+.4g}",
                f"{float(self.prob_drop[g]):+.4g}",
                f"{float(self.flip_rate[g]):.3f}",
            ]
            if self.accuracy is not None:
                row.append(f"{float(self.accuracy[g]):.3f}")
            rows.append(row)
        widths = [max(len(r[c]) for r in [head] + rows) for c in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [head] + rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        footer = f"layers {self.layers}; cross-modal share {self.cross_modal_share():.3f}"
        if self.baseline_accuracy is not None:
            footer += f"; intact accuracy {self.baseline_accuracy:.3f}"
        return "\n".join(lines + [footer])


def cross_modal_share(report: IsolationReport) -> float:
    """Sum of the normalised contributions of the report's cross-modal groups."""
    return report.cross_modal_share()


def _per_sample_effect(measure: str, logits: torch.Tensor, silenced: torch.Tensor, pred) -> torch.Tensor:
    log_p = F.log_softmax(logits.double(), dim=-1)
    log_q = F.log_softmax(silenced.double(), dim=-1)
    if measure == "kl":
        return (log_p.exp() * (log_p - log_q)).sum(dim=-1)
    if measure == "logit":
        return (logits.double() - silenced.double()).gather(1, pred[:, None])[:, 0].abs()
    return (log_p.exp() - log_q.exp()).gather(1, pred[:, None])[:, 0].abs()


@torch.no_grad()
def isolation_analysis(
    model,
    inputs,
    labels: torch.Tensor | None = None,
    groups: Groups | None = None,
    layers: Union[str, int, Sequence[int]] = "all",
    measure: str = "kl",
    lengths=None,
) -> IsolationReport:
    """Silence each group of attention blocks and measure the change of the decision.

    Parameters
    ----------
    model : torch.nn.Module
        A model with ``segment_names``, ``n_layers``, ``base_tables()`` and
        ``forward(inputs, lengths=None, tables=None)`` returning logits. It is
        run in eval mode (its mode is restored afterwards).
    inputs : sequence or mapping of torch.Tensor
        The model's inputs (one batch).
    labels : torch.Tensor, optional
        ``(B,)`` class labels, for accuracies.
    groups : mapping of str to sequence of (str, str), optional
        ``name -> (query, key)`` blocks silenced together; default
        :func:`default_groups` of the model's modalities (segments other than
        ``"cls"``).
    layers : "all", int or sequence of int
        Layers at which each group is silenced (jointly).
    measure : {"kl", "logit", "prob"}
        Per-sample effect: ``KL(p || p_g)`` of the output distributions, or the
        absolute change of the logit / probability of the intact model's
        predicted class.
    lengths : optional
        Passed to the model.

    Returns
    -------
    IsolationReport
    """
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
    if groups is None:
        groups = default_groups([m for m in model.segment_names if m != "cls"])
    groups = {g: [tuple(b) for b in blocks] for g, blocks in groups.items()}
    chosen = _resolve_layers(layers, model.n_layers)
    was_training = model.training
    model.eval()
    try:
        logits = model(inputs, lengths=lengths, tables=None)
        pred = logits.argmax(dim=-1)
        probs = logits.double().softmax(dim=-1)
        effect, logit_drop, prob_drop, flips, accuracy = [], [], [], [], []
        for blocks in groups.values():
            out = model(inputs, lengths=lengths, tables=silenced_tables(model, blocks, chosen))
            effect.append(_per_sample_effect(measure, logits, out, pred).mean())
            logit_drop.append((logits - out).double().gather(1, pred[:, None]).mean())
            prob_drop.append((probs - out.double().softmax(-1)).gather(1, pred[:, None]).mean())
            flips.append((out.argmax(-1) != pred).double().mean())
            if labels is not None:
                accuracy.append((out.argmax(-1) == labels.to(out.device)).double().mean())
    finally:
        model.train(was_training)
    effect_t = torch.stack(effect).cpu()
    total = effect_t.sum()
    contribution = effect_t / total if total > 0 else torch.full_like(effect_t, float("nan"))
    return IsolationReport(
        groups=list(groups),
        blocks=groups,
        cross_modal=[_is_cross_modal(b) for b in groups.values()],
        layers=chosen,
        measure=measure,
        effect=effect_t,
        contribution=contribution,
        logit_drop=torch.stack(logit_drop).cpu(),
        prob_drop=torch.stack(prob_drop).cpu(),
        flip_rate=torch.stack(flips).cpu(),
        accuracy=torch.stack(accuracy).cpu() if labels is not None else None,
        baseline_accuracy=(
            float((pred == labels.to(pred.device)).double().mean()) if labels is not None else None
        ),
    )


def isolation_by_layer(model, inputs, labels=None, groups=None, measure="kl", lengths=None):
    """One :class:`IsolationReport` per layer, each group silenced at that layer only."""
    return [
        isolation_analysis(model, inputs, labels, groups, layers=i, measure=measure, lengths=lengths)
        for i in range(model.n_layers)
    ]


@dataclass
class InteractionReport:
    """How much of a model's output depends on two modalities jointly.

    Attributes
    ----------
    modalities : tuple of str
        The two modalities ``(a, b)``.
    interaction_share : float
        ``E[h²] / (2 E[t²])`` (see :func:`modality_interaction`): 0 when the
        output is a sum of a function of ``a`` and a function of ``b`` (no
        interaction, e.g. a decision that reads one modality), 1 for a pure
        product of the two, the mixture's share in between.
    main_share : dict of str to float
        Per modality ``m``, ``E[d_m²] / E[t²]`` with ``d_m`` the change of the
        output when only ``m`` is swapped: 0 for a modality the output ignores,
        1 for one it follows alone (and for each factor of a product).
    n_pairs : int
        Sample pairs averaged over.
    """

    modalities: tuple[str, str]
    interaction_share: float
    main_share: dict[str, float]
    n_pairs: int


def _centred_logits(model, inputs, lengths) -> torch.Tensor:
    out = model(inputs) if lengths is None else model(inputs, lengths=lengths)
    out = out.double()
    # logits are defined up to a shift per sample: compare their centred values
    return out - out.mean(dim=-1, keepdim=True)


def _swap(mapping, modality: str, order: torch.Tensor):
    if mapping is None:
        return None
    swapped = dict(mapping)
    if swapped.get(modality) is not None:
        swapped[modality] = swapped[modality][order]
    return swapped


@torch.no_grad()
def modality_interaction(model, inputs: Mapping[str, torch.Tensor], modalities: tuple[str, str],
                         lengths: Mapping[str, torch.Tensor] | None = None,
                         n_permutations: int = 8, seed: int = 0) -> InteractionReport:
    """Whether a model combines two modalities or uses them separately (or one alone).

    For sample ``i`` and a partner ``j = π(i)`` from a random permutation, write
    ``f(a, b)`` for the centred logits with modality ``a`` from one sample and
    ``b`` from another. The interaction term is the double difference

        h = f(a_i, b_i) − f(a_i, b_j) − f(a_j, b_i) + f(a_j, b_j)

    which is exactly 0 for any output of the form ``g(a) + k(b)`` (and so for
    a decision that reads one modality only), whatever the model's internal
    routing; ``t = f(a_i, b_i) − f(a_j, b_j)`` is the total change. The share is
    ``Σ‖h‖² / (2 Σ‖t‖²)`` over samples, partners and classes: 0 without
    interaction, 1 for ``f = g(a) · k(b)`` with centred ``g``, ``k``
    (Friedman and Popescu's H-statistic, with swapped samples as the reference
    distribution). Unlike the silencing of attention blocks
    (:func:`isolation_analysis`), it measures what the model computes, not
    which pathways carry it: a model that routes one modality's information
    through the other's tokens has pathway effects, but no interaction.

    Parameters
    ----------
    model : torch.nn.Module
        Called as ``model(inputs)`` (or ``model(inputs, lengths=lengths)``) and
        returning logits ``(B, C)``; run in eval mode.
    inputs : mapping of str to torch.Tensor
        One batch, ``(B, ...)`` per modality.
    modalities : (str, str)
        The two modalities to swap.
    lengths : mapping of str to torch.Tensor, optional
        Valid tokens per modality (swapped with their modality).
    n_permutations : int
        Random pairings averaged over.
    seed : int

    Returns
    -------
    InteractionReport
    """
    a, b = modalities
    for m in modalities:
        if m not in inputs:
            raise KeyError(f"no modality {m!r} in the inputs ({sorted(inputs)})")
    batch = inputs[a].shape[0]
    if batch < 2:
        raise ValueError("the interaction needs at least 2 samples to swap")
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        f_ab = _centred_logits(model, inputs, lengths)
        sum_h, sum_t, sum_a, sum_b, pairs = 0.0, 0.0, 0.0, 0.0, 0
        for _ in range(n_permutations):
            order = torch.randperm(batch, generator=gen).to(inputs[a].device)
            f_a_bj = _centred_logits(model, _swap(inputs, b, order), _swap(lengths, b, order))
            f_aj_b = _centred_logits(model, _swap(inputs, a, order), _swap(lengths, a, order))
            f_aj_bj = f_ab[order]
            h = f_ab - f_a_bj - f_aj_b + f_aj_bj
            sum_h += float((h ** 2).sum())
            sum_t += float(((f_ab - f_aj_bj) ** 2).sum())
            sum_a += float(((f_ab - f_aj_b) ** 2).sum())
            sum_b += float(((f_ab - f_a_bj) ** 2).sum())
            pairs += batch
    finally:
        model.train(was_training)
    scale = 2 * sum_t
    if scale == 0:
        nan = float("nan")
        return InteractionReport((a, b), nan, {a: nan, b: nan}, pairs)
    return InteractionReport((a, b), sum_h / scale, {a: sum_a / sum_t, b: sum_b / sum_t}, pairs)
