"""The losses of the training package: plain functions, each with its formula and its paper.

Pretext classifiers and regressors: ``classification``, ``soft_cross_entropy`` (colorization),
``weighted_mse`` (inpainting). The contrastive family, on embeddings ``z`` (N, D) taken as given (a
recipe decides whether to L2-normalise them), ``D_ij = ||z_i - z_j||^2``:

- ``contrastive``: Chopra, Hadsell & LeCun 2005;
- ``triplet``: Schroff, Kalenichenko & Philbin 2015 (FaceNet), with semi-hard or hard mining;
- ``lifted_structured``: Oh Song, Xiang, Jegelka & Savarese 2016;
- ``npair``: Sohn 2016;
- ``info_nce``: van den Oord, Li & Vinyals 2018 (CPC), in SupCon's form for several positives
  (Khosla et al. 2020), with Robinson et al. 2021's hard-negative weighting and Chuang et al.
  2020's debiasing; ``info_nce_keys`` for keys from a momentum encoder or a memory;
- ``alignment`` and ``uniformity``: Wang & Isola 2020, the two measures of a contrastive embedding.

Every function computes in float32 and holds at most O(N^2) memory for N rows (pytorch-metric-
learning's lifted and NT-Xent losses build N^3 intermediates: its issue 547). ``exclude`` (N, N)
bool, where a loss takes it, marks pairs used neither as positives nor as negatives: a recipe's
likely false negatives (two groups cut from one photo). Distances are taken from squared distances
with a floor, so gradients stay finite where two rows coincide. ``gather`` concatenates a tensor
over the ranks of a torchrun job with gradients flowing back to each rank's rows (solo-learn's
``gather``), so that a contrastive loss sees every rank's negatives.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MINING = ("none", "semi-hard", "hard")


# ---------------------------------------------------------------- pretext classifiers and regressors
def classification(logits: torch.Tensor, target: torch.Tensor):
    """Cross-entropy and top-1 accuracy: (loss, {"accuracy"})."""
    loss = F.cross_entropy(logits.float(), target)
    return loss, {"accuracy": (logits.argmax(1) == target).float().mean()}


def soft_cross_entropy(logits: torch.Tensor, bins: torch.Tensor, weights: torch.Tensor,
                       pixel_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Zhang et al. 2016's multinomial loss: per pixel -sum_k w_k log q[bin_k] over the soft
    encoding's k nearest bins; ``logits`` (B, Q, h, w), ``bins`` / ``weights`` (B, k, h, w);
    ``pixel_weights`` (B, h, w) the class-rebalancing weight of each pixel. Mean over pixels."""
    logp = F.log_softmax(logits.float(), dim=1)
    ce = -(weights.float() * logp.gather(1, bins)).sum(1)
    if pixel_weights is not None:
        ce = ce * pixel_weights
    return ce.mean()


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sum(weight * (pred - target)^2) / sum(weight * channels): a weighted mean over pixels (and
    channels); ``weight`` broadcasts over the channel axis (B or 1, 1, H, W)."""
    se = (pred.float() - target.float()) ** 2
    weight = weight.float().expand(se.shape[0], 1, *se.shape[2:])
    return (se * weight).sum() / (weight.sum() * se.shape[1]).clamp(min=1e-8)


# ---------------------------------------------------------------- pieces the contrastive losses share
def squared_distances(x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """``||x_i - y_j||^2`` (N, M) by the expansion ``|x|^2 + |y|^2 - 2 x.y`` (O(NM) memory, where
    the differences would take O(NMD)), clamped at 0 against rounding; ``y`` None: ``x``."""
    x = x.float()
    y = x if y is None else y.float()
    d = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.t()
    return d.clamp(min=0.0)


def distances(squared: torch.Tensor) -> torch.Tensor:
    """The square root with a floor of 1e-12: the gradient of a plain square root is infinite at 0."""
    return squared.clamp(min=1e-12).sqrt()


def pair_masks(labels: torch.Tensor, exclude: torch.Tensor | None = None):
    """(positive, negative) (N, N) bool masks: same label off the diagonal, other label; both
    without the ``exclude`` pairs."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos, neg = same & ~eye, ~same
    if exclude is not None:
        pos, neg = pos & ~exclude, neg & ~exclude
    return pos, neg


def _zero(z: torch.Tensor) -> torch.Tensor:
    """A zero loss joined to the graph (a batch with nothing to compare still backpropagates)."""
    return z.float().sum() * 0.0


# ---------------------------------------------------------------- the contrastive family
def contrastive(z: torch.Tensor, labels: torch.Tensor, margin: float = 0.5,
                exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Chopra et al. 2005, over the unordered pairs i < j (not excluded), their mean:
    ``1[y_i = y_j] D_ij + 1[y_i != y_j] max(0, margin - sqrt(D_ij))^2``. 0 without pairs."""
    d2 = squared_distances(z)
    pos, neg = pair_masks(labels, exclude)
    upper = torch.ones_like(pos).triu(1)
    pos, neg = pos & upper, neg & upper
    count = (pos | neg).sum()
    if count == 0:
        return _zero(z)
    hinge = F.relu(margin - distances(d2)) ** 2
    return (torch.where(pos, d2, 0.0).sum() + torch.where(neg, hinge, 0.0).sum()) / count


def triplet(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor | None = None,
            margin: float = 0.2, mining: str = "none", exclude: torch.Tensor | None = None) -> torch.Tensor:
    """FaceNet (Schroff et al. 2015): the mean over rows i of
    ``max(0, ||a_i - p_i||^2 - ||a_i - n_i||^2 + margin)``.

    ``mining`` "none": n_i = ``negative[i]``. Otherwise n_i is picked from the other rows' anchors and
    positives (``negative`` unused; ``exclude[i, j]`` drops row j's pair for anchor i):
    "semi-hard" (FaceNet's rule, as TensorFlow Addons' ``triplet_semihard_loss``): the closest
    candidate farther than the positive; where none is, the farthest candidate. "hard": the closest
    candidate. Rows without a candidate are left out of the mean."""
    if mining not in MINING:
        raise ValueError(f"mining={mining!r}: one of {', '.join(MINING)}")
    d_ap = ((anchor.float() - positive.float()) ** 2).sum(1)
    if mining == "none":
        if negative is None:
            raise ValueError("triplet(mining='none') needs negative")
        d_an = ((anchor.float() - negative.float()) ** 2).sum(1)
        return F.relu(d_ap - d_an + margin).mean()
    n = len(anchor)
    d = squared_distances(anchor, torch.cat([anchor, positive]))  # (N, 2N)
    other = ~torch.eye(n, dtype=torch.bool, device=anchor.device)
    if exclude is not None:
        other = other & ~exclude
    valid = torch.cat([other, other], dim=1)
    has = valid.any(1)
    if not has.any():
        return _zero(anchor)
    inf = torch.tensor(float("inf"), device=d.device)
    closest = torch.where(valid, d, inf).min(1).values
    if mining == "hard":
        d_an = closest
    else:
        farther = valid & (d > d_ap[:, None])
        semi = torch.where(farther, d, inf).min(1).values
        farthest = torch.where(valid, d, -inf).max(1).values
        d_an = torch.where(farther.any(1), semi, farthest)
    return F.relu(d_ap - d_an + margin)[has].mean()


def lifted_structured(z: torch.Tensor, labels: torch.Tensor, margin: float = 1.0, smooth: bool = False,
                      exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Oh Song et al. 2016, over the unordered positive pairs P:
    ``L = 1/(2|P|) sum_P max(0, L_ij)^2`` with
    ``L_ij = D_ij + max(max_{(i,k) in N} (margin - D_ik), max_{(j,l) in N} (margin - D_jl))``, or
    with ``smooth`` the paper's trained form, the two maxima replaced by one log-sum-exp over the
    same negatives. A pair whose two rows have no negative adds 0. 0 without positive pairs."""
    d2 = squared_distances(z)
    pos, neg = pair_masks(labels, exclude)
    pos = pos & torch.ones_like(pos).triu(1)
    if not pos.any():
        return _zero(z)
    scores = torch.where(neg, margin - d2, float("-inf"))  # row i: margin - D_ik over i's negatives
    per_row = torch.logsumexp(scores, dim=1) if smooth else scores.max(1).values  # (N,)
    i, j = pos.nonzero(as_tuple=True)
    worst = torch.logaddexp(per_row[i], per_row[j]) if smooth else torch.maximum(per_row[i], per_row[j])
    has = torch.isfinite(worst)
    l_ij = torch.where(has, d2[i, j] + torch.where(has, worst, 0.0), float("-inf"))
    return (F.relu(l_ij) ** 2).sum() / (2 * len(i))


def npair(anchor: torch.Tensor, positive: torch.Tensor, l2_reg: float = 0.0,
          exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Sohn 2016's multi-class N-pair loss, the mean over rows i of
    ``log(1 + sum_{j != i} exp(a_i . p_j - a_i . p_i))`` (row i's negatives: the other rows'
    positives, less ``exclude[i, j]``), plus ``l2_reg`` times the mean over rows of
    ``||a_i||^2 + ||p_i||^2`` (Sohn's penalty on the embeddings' norms, which the unnormalised
    loss would otherwise grow)."""
    s = anchor.float() @ positive.float().t()
    if exclude is not None:
        keep = ~exclude | torch.eye(len(s), dtype=torch.bool, device=s.device)
        s = torch.where(keep, s, float("-inf"))
    # log(1 + sum_{j != i} exp(s_ij - s_ii)) = logsumexp_j(s_ij) - s_ii, the j = i term giving the 1
    loss = (torch.logsumexp(s, dim=1) - s.diagonal()).mean()
    if l2_reg > 0:
        loss = loss + l2_reg * ((anchor.float() ** 2).sum(1) + (positive.float() ** 2).sum(1)).mean()
    return loss


def _nce(sim: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, temperature: float, beta: float,
         tau_plus: float) -> torch.Tensor:
    """Per anchor (row): the mean over its positives p of ``-log(e^{s_ip} / (sum_{q in pos} e^{s_iq}
    + Ng_i))``, ``sim`` already over the temperature. ``Ng_i`` is the negatives' term: their plain
    sum when ``beta = tau_plus = 0``; each weighted by ``e^{beta s_in}`` over the weights' mean
    (Robinson et al. 2021); debiased as ``(Ng - tau_plus M e^{s_pos}) / (1 - tau_plus)`` with M
    negatives and e^{s_pos} the mean of the positives' terms, floored at ``M e^{-1/t}`` (Chuang et
    al. 2020). Every term is scaled by the row's largest similarity first (cancels), so
    exponentials cannot overflow. Rows without a positive give 0 (the caller leaves them out)."""
    shift = torch.where(pos | neg, sim, float("-inf")).max(1, keepdim=True).values.detach()
    shift = torch.where(torch.isfinite(shift), shift, 0.0)
    e = torch.exp(sim - shift)
    e_pos, e_neg = torch.where(pos, e, 0.0), torch.where(neg, e, 0.0)
    n_neg = neg.sum(1).float()
    if beta != 0:
        w_log = torch.where(neg, beta * sim, float("-inf"))
        w = torch.exp(w_log - w_log.max(1, keepdim=True).values.clamp(min=-1e30).detach())
        w = torch.where(neg, w, 0.0)
        neg_term = (w * e_neg).sum(1) / (w.sum(1) / n_neg.clamp(min=1)).clamp(min=1e-30)
    else:
        neg_term = e_neg.sum(1)
    if tau_plus > 0:
        mean_pos = e_pos.sum(1) / pos.sum(1).clamp(min=1)
        floor = n_neg * torch.exp(-1.0 / temperature - shift.squeeze(1))
        neg_term = torch.maximum((neg_term - tau_plus * n_neg * mean_pos) / (1 - tau_plus), floor)
    denominator = e_pos.sum(1) + neg_term
    log_ratio = (sim - shift) - torch.log(denominator)[:, None]
    return -torch.where(pos, log_ratio, 0.0).sum(1) / pos.sum(1).clamp(min=1)


def info_nce(z: torch.Tensor, groups: torch.Tensor, temperature: float = 0.5, beta: float = 0.0,
             tau_plus: float = 0.0, exclude: torch.Tensor | None = None):
    """InfoNCE / NT-Xent (CPC; SimCLR's loss), in SupCon's form for groups of several views: ``z``
    (N, D) is L2-normalised, ``s_ij = z_i . z_j / temperature``; anchor i's positives are the other
    members of its group, its negatives the rows of other groups (less ``exclude``). Per anchor, the
    mean over its positives p of ``-log(e^{s_ip} / sum_{k != i} e^{s_ik})``; the loss is the mean over
    anchors with a positive. ``beta`` (hardness) and ``tau_plus`` (class prior) reweight the
    negatives' term as in ``_nce``; 0 and 0 give the plain loss. Returns (loss, {"accuracy": share of
    anchors whose most similar other row is a positive})."""
    z = F.normalize(z.float(), dim=1)
    sim = z @ z.t() / temperature
    pos, neg = pair_masks(groups, exclude)
    per_anchor = _nce(sim, pos, neg, temperature, beta, tau_plus)
    has = pos.any(1)
    if not has.any():
        return _zero(z), {"accuracy": torch.zeros((), device=z.device)}
    return per_anchor[has].mean(), {"accuracy": _nearest_is_positive(sim.detach(), pos, neg)}


def _nearest_is_positive(sim: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Over the rows with a positive: the share whose most similar candidate (``pos | neg``) is one."""
    has = pos.any(1)
    if not has.any():
        return torch.zeros((), device=sim.device)
    best = torch.where(pos | neg, sim, float("-inf")).argmax(1, keepdim=True)
    return pos.gather(1, best).squeeze(1)[has].float().mean()


def retrieval_accuracy(z: torch.Tensor, groups: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """The share of rows with a positive whose most cosine-similar other row (not excluded) is one:
    every contrastive loss's pretext accuracy, whatever it optimises."""
    z = F.normalize(z.detach().float(), dim=1)
    return _nearest_is_positive(z @ z.t(), *pair_masks(groups, exclude))


def info_nce_keys(q: torch.Tensor, k: torch.Tensor, negatives: torch.Tensor, temperature: float = 0.2,
                  beta: float = 0.0, tau_plus: float = 0.0, exclude: torch.Tensor | None = None):
    """InfoNCE of queries against their own key and a set of negative keys, as MoCo (He et al. 2020)
    and the instance memory bank (Wu et al. 2018) train: ``q`` (N, D) and ``k`` (N, D) row-paired,
    ``negatives`` (M, D); all L2-normalised here. Per row, ``-log(e^{q.k / t} / (e^{q.k / t} +
    Ng))`` with ``Ng`` as in ``info_nce``; ``exclude`` (N, M) drops negatives of a row (its own
    entry in a memory bank). Returns (loss, {"accuracy": share of queries whose own key beats every
    negative})."""
    q, k, negatives = (F.normalize(x.float(), dim=1) for x in (q, k, negatives))
    sim = torch.cat([(q * k).sum(1, keepdim=True), q @ negatives.t()], dim=1) / temperature
    pos = torch.zeros_like(sim, dtype=torch.bool)
    pos[:, 0] = True
    neg = ~pos
    if exclude is not None:
        neg[:, 1:] &= ~exclude
    loss = _nce(sim, pos, neg, temperature, beta, tau_plus).mean()
    hit = torch.where(pos | neg, sim, float("-inf")).argmax(1) == 0
    return loss, {"accuracy": hit.float().mean()}


# ---------------------------------------------------------------- measures
def alignment(x: torch.Tensor, y: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Wang & Isola 2020: the mean over rows of ``||x_i - y_i||^alpha`` (x, y: L2-normalised
    embeddings of two views of the same inputs; lower is better aligned)."""
    d2 = ((x.float() - y.float()) ** 2).sum(1)
    return (d2 if alpha == 2 else distances(d2) ** alpha).mean()


def uniformity(x: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """Wang & Isola 2020: ``log`` of the mean over pairs i < j of ``exp(-t ||x_i - x_j||^2)``
    (L2-normalised x; lower is more uniform on the sphere; -inf for fewer than 2 rows)."""
    n = len(x)
    if n < 2:
        return torch.tensor(float("-inf"), device=x.device)
    i, j = torch.triu_indices(n, n, 1, device=x.device)
    return torch.logsumexp(-t * squared_distances(x)[i, j], dim=0) - math.log(len(i))


# ---------------------------------------------------------------- many processes
class _GatherRows(torch.autograd.Function):
    """All ranks' rows, in rank order; the backward sums each row's gradient over the ranks (every
    rank computed the loss on all rows) and hands each rank its own rows' share."""

    @staticmethod
    def forward(ctx, x, sizes):
        import torch.distributed as dist

        ctx.sizes = sizes
        ctx.rank = dist.get_rank()
        pad = max(sizes) - len(x)
        padded = torch.cat([x, x.new_zeros((pad, *x.shape[1:]))]) if pad else x.contiguous()
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        return torch.cat([p[:n] for p, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad):
        import torch.distributed as dist

        grad = grad.contiguous()
        dist.all_reduce(grad)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None


def world_size() -> int:
    """The number of ranks of the torchrun job this process is in (1 outside one)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather(x: torch.Tensor) -> torch.Tensor:
    """``x`` (n_rank, ...) concatenated over every rank of the job, in rank order; rows may differ
    in number between ranks. Differentiable: each rank's loss over all rows sends its gradient back
    to the rank that made the row (DDP then averages the weights' gradients over the ranks). Outside
    a job: ``x`` itself."""
    if world_size() == 1:
        return x
    import torch.distributed as dist

    n = torch.tensor([len(x)], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, n)
    return _GatherRows.apply(x, [int(s) for s in sizes])


__all__ = ["classification", "soft_cross_entropy", "weighted_mse", "squared_distances", "distances", "pair_masks",
           "contrastive", "triplet", "lifted_structured", "npair", "info_nce", "info_nce_keys", "retrieval_accuracy", "alignment",
           "uniformity", "gather", "world_size", "MINING"]
