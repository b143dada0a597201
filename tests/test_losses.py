"""The contrastive losses of ``pretextgen.training.losses`` against their formulas, written again here
as plain loops in float64, and against pytorch-metric-learning where its semantics match."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pretextgen.training import losses as L

# the oracle: a test dependency (the [test] extra), so a missing one fails rather than skips
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import reducers as pml_reducers


def embeddings(n=12, d=8, seed=0, normalize=True):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g)
    return torch.nn.functional.normalize(z, dim=1) if normalize else z


GROUPS = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 4, 5, 5, 5])


def d2(a, b):
    return float(((a - b) ** 2).sum())


# ---------------------------------------------------------------- formulas, as loops
def contrastive_loop(z, y, margin, exclude=None):
    z = z.double()
    total, count = 0.0, 0
    for i in range(len(z)):
        for j in range(i + 1, len(z)):
            if exclude is not None and exclude[i, j]:
                continue
            d = d2(z[i], z[j])
            total += d if y[i] == y[j] else max(0.0, margin - math.sqrt(d)) ** 2
            count += 1
    return total / count


def lifted_loop(z, y, margin, smooth):
    z = z.double()
    n = len(z)
    D = [[d2(z[i], z[j]) for j in range(n)] for i in range(n)]
    terms, pairs = 0.0, 0
    for i in range(n):
        for j in range(i + 1, n):
            if y[i] != y[j]:
                continue
            pairs += 1
            negs = [margin - D[i][k] for k in range(n) if y[k] != y[i]] + \
                   [margin - D[j][k] for k in range(n) if y[k] != y[j]]
            if not negs:
                continue
            worst = math.log(sum(math.exp(v) for v in negs)) if smooth else max(negs)
            terms += max(0.0, D[i][j] + worst) ** 2
    return terms / (2 * pairs)


def npair_loop(a, p, l2_reg):
    a, p = a.double(), p.double()
    total = 0.0
    for i in range(len(a)):
        s = sum(math.exp(float(a[i] @ p[j] - a[i] @ p[i])) for j in range(len(a)) if j != i)
        total += math.log(1 + s)
    reg = sum(float(a[i] @ a[i] + p[i] @ p[i]) for i in range(len(a))) / len(a)
    return total / len(a) + l2_reg * reg


def triplet_mined_loop(a, p, margin, mining):
    a, p = a.double(), p.double()
    out = []
    for i in range(len(a)):
        d_ap = d2(a[i], p[i])
        cands = [d2(a[i], a[j]) for j in range(len(a)) if j != i] + [d2(a[i], p[j]) for j in range(len(a)) if j != i]
        if mining == "hard":
            d_an = min(cands)
        else:
            farther = [c for c in cands if c > d_ap]
            d_an = min(farther) if farther else max(cands)
        out.append(max(0.0, d_ap - d_an + margin))
    return sum(out) / len(out)


def hcl_loop(z, temperature, beta, tau_plus):
    """Robinson et al. 2021's reference code (``hard_negative_loss``), one positive per anchor: rows 2m
    and 2m+1 are the two views of sample m."""
    z = torch.nn.functional.normalize(z.double(), dim=1)
    n = len(z)
    out = []
    for i in range(n):
        partner = i ^ 1
        pos = math.exp(float(z[i] @ z[partner]) / temperature)
        negs = [math.exp(float(z[i] @ z[k]) / temperature) for k in range(n) if k not in (i, partner)]
        imp = [v ** beta for v in negs]
        reweight = sum(w * v for w, v in zip(imp, negs)) / (sum(imp) / len(imp))
        m = len(negs)
        ng = (-tau_plus * m * pos + reweight) / (1 - tau_plus)
        ng = max(ng, m * math.exp(-1 / temperature))
        out.append(-math.log(pos / (pos + ng)))
    return sum(out) / n


# ---------------------------------------------------------------- against the loops
@pytest.mark.parametrize("margin", [0.5, 1.5])
def test_contrastive_matches_its_formula(margin):
    z = embeddings()
    assert L.contrastive(z, GROUPS, margin).item() == pytest.approx(contrastive_loop(z, GROUPS, margin), rel=1e-5)


def test_contrastive_leaves_excluded_pairs_out():
    z = embeddings()
    exclude = torch.zeros(12, 12, dtype=torch.bool)
    exclude[0, 5] = exclude[5, 0] = exclude[2, 9] = exclude[9, 2] = True
    got = L.contrastive(z, GROUPS, 1.0, exclude).item()
    assert got == pytest.approx(contrastive_loop(z, GROUPS, 1.0, exclude), rel=1e-5)
    assert got != pytest.approx(contrastive_loop(z, GROUPS, 1.0), rel=1e-5)


@pytest.mark.parametrize("smooth", [False, True])
def test_lifted_structured_matches_its_formula(smooth):
    z = embeddings(normalize=False) * 0.5
    got = L.lifted_structured(z, GROUPS, 1.0, smooth).item()
    assert got == pytest.approx(lifted_loop(z, GROUPS, 1.0, smooth), rel=1e-5)


@pytest.mark.parametrize("l2_reg", [0.0, 0.01])
def test_npair_matches_its_formula(l2_reg):
    a, p = embeddings(8, seed=1, normalize=False), embeddings(8, seed=2, normalize=False)
    assert L.npair(a, p, l2_reg).item() == pytest.approx(npair_loop(a, p, l2_reg), rel=1e-5)


@pytest.mark.parametrize("mining", ["semi-hard", "hard"])
def test_triplet_mining_matches_its_rule(mining):
    a, p = embeddings(10, seed=3), embeddings(10, seed=4)
    p = torch.nn.functional.normalize(a + 0.8 * p, dim=1)  # positives near their anchors: both rules matter
    got = L.triplet(a, p, margin=0.3, mining=mining).item()
    assert got == pytest.approx(triplet_mined_loop(a, p, 0.3, mining), rel=1e-5)


def test_semi_hard_and_hard_mining_pick_differently():
    a, p = embeddings(10, seed=3), embeddings(10, seed=4)
    p = torch.nn.functional.normalize(a + 0.8 * p, dim=1)
    assert L.triplet(a, p, margin=0.3, mining="hard").item() > L.triplet(a, p, margin=0.3, mining="semi-hard").item()


@pytest.mark.parametrize("beta,tau_plus", [(0.0, 0.0), (1.0, 0.0), (0.0, 0.1), (0.5, 0.1)])
def test_info_nce_hardness_and_debiasing_match_the_reference(beta, tau_plus):
    z = embeddings(12, seed=5)
    pairs = torch.arange(6).repeat_interleave(2)
    loss, _ = L.info_nce(z, pairs, 0.5, beta, tau_plus)
    assert loss.item() == pytest.approx(hcl_loop(z, 0.5, beta, tau_plus), rel=1e-5)


def test_info_nce_weighting_changes_the_value():
    z, pairs = embeddings(12, seed=5), torch.arange(6).repeat_interleave(2)
    plain = L.info_nce(z, pairs, 0.5)[0].item()
    assert L.info_nce(z, pairs, 0.5, beta=1.0)[0].item() != pytest.approx(plain, rel=1e-4)
    assert L.info_nce(z, pairs, 0.5, tau_plus=0.1)[0].item() != pytest.approx(plain, rel=1e-4)


def test_alignment_and_uniformity_are_wang_and_isolas():
    x, y = embeddings(16, seed=6), embeddings(16, seed=7)
    # their reference code (SsnL/align_uniform)
    assert L.alignment(x, y).item() == pytest.approx((x - y).norm(p=2, dim=1).pow(2).mean().item(), rel=1e-5)
    assert L.alignment(x, y, 1).item() == pytest.approx((x - y).norm(p=2, dim=1).pow(1).mean().item(), rel=1e-5)
    assert L.uniformity(x).item() == pytest.approx(torch.pdist(x, p=2).pow(2).mul(-2).exp().mean().log().item(), rel=1e-5)
    assert L.uniformity(x, 1).item() == pytest.approx(torch.pdist(x, p=2).pow(2).mul(-1).exp().mean().log().item(), rel=1e-5)


def test_alignment_is_zero_for_identical_views_and_uniformity_zero_for_one_point():
    x = embeddings(8)
    assert L.alignment(x, x).item() == 0
    same = x[:1].repeat(8, 1)
    assert L.uniformity(same).item() == pytest.approx(0.0, abs=1e-6)  # log(mean(exp(0))) = 0: the worst spread
    assert L.uniformity(x).item() < -0.5


# ---------------------------------------------------------------- against pytorch-metric-learning
def test_info_nce_equals_pml_supcon():
    z = embeddings(12, seed=8)
    ours, _ = L.info_nce(z, GROUPS, 0.1)
    theirs = pml_losses.SupConLoss(temperature=0.1)(z, GROUPS)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


def test_smooth_lifted_equals_pml_with_squared_distances():
    z = embeddings(12, seed=9, normalize=False) * 0.5
    ours = L.lifted_structured(z, GROUPS, 1.0, smooth=True)
    theirs = pml_losses.LiftedStructureLoss(neg_margin=1.0, pos_margin=0.0,
                                            distance=pml_distances.LpDistance(normalize_embeddings=False, power=2))(z, GROUPS)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


def test_triplet_without_mining_equals_pml_with_squared_distances():
    a, p, n = embeddings(10, seed=10), embeddings(10, seed=11), embeddings(10, seed=12)
    ours = L.triplet(a, p, n, margin=0.5)
    idx = torch.arange(10)
    theirs = pml_losses.TripletMarginLoss(margin=0.5, distance=pml_distances.LpDistance(power=2),
                                          reducer=pml_reducers.MeanReducer())(
        torch.cat([a, p, n]), torch.arange(30), indices_tuple=(idx, idx + 10, idx + 20))
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


# ---------------------------------------------------------------- edge cases and gradients
def all_losses(z, groups):
    half = len(z) // 2
    yield "contrastive", L.contrastive(z, groups, 1.0)
    yield "triplet", L.triplet(z[:half], z[half:], z[half:].roll(1, 0), 0.2)
    yield "triplet semi-hard", L.triplet(z[:half], z[half:], margin=0.2, mining="semi-hard")
    yield "triplet hard", L.triplet(z[:half], z[half:], margin=0.2, mining="hard")
    yield "lifted", L.lifted_structured(z, groups, 1.0)
    yield "lifted smooth", L.lifted_structured(z, groups, 1.0, smooth=True)
    yield "npair", L.npair(z[:half], z[half:], 0.002)
    yield "info_nce", L.info_nce(z, groups, 0.2)[0]
    yield "info_nce hcl", L.info_nce(z, groups, 0.2, beta=1.0, tau_plus=0.1)[0]
    yield "info_nce_keys", L.info_nce_keys(z[:half], z[half:], z, 0.2)[0]
    yield "alignment", L.alignment(z[:half], z[half:])
    yield "uniformity", L.uniformity(z)


@pytest.mark.parametrize("case", ["all equal", "no positives", "no negatives", "duplicates"])
def test_losses_and_gradients_are_finite_at_the_edges(case):
    z = embeddings(8, seed=13)
    groups = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    if case == "all equal":
        z = z[:1].repeat(8, 1)
    elif case == "no positives":
        groups = torch.arange(8)
    elif case == "no negatives":
        groups = torch.zeros(8, dtype=torch.long)
    else:  # rows that coincide with others: zero distances off the diagonal
        z = torch.cat([z[:4], z[:4]])
    for name, _ in all_losses(z, groups):
        zz = z.clone().requires_grad_(True)
        value = dict(all_losses(zz, groups))[name]
        assert torch.isfinite(value), (case, name, value)
        value.backward()
        assert torch.isfinite(zz.grad).all(), (case, name)


def test_no_positive_pairs_give_zero_where_the_formula_has_no_term():
    z, groups = embeddings(8, seed=14), torch.arange(8)
    assert L.lifted_structured(z, groups, 1.0).item() == 0
    assert L.info_nce(z, groups, 0.2)[0].item() == 0
    assert L.contrastive(z, groups, 0.1).item() == 0  # every pair a negative, each farther than 0.1


def test_excluded_pairs_are_neither_positives_nor_negatives_in_info_nce():
    z = embeddings(12, seed=15)
    pairs = torch.arange(6).repeat_interleave(2)
    exclude = torch.zeros(12, 12, dtype=torch.bool)
    exclude[0, 2:4] = exclude[2:4, 0] = True
    got = L.info_nce(z, pairs, 0.5, exclude=exclude)[0].item()
    # the same loss, row by row, with those pairs removed from the denominators
    zn = torch.nn.functional.normalize(z.double(), dim=1)
    total = 0.0
    for i in range(12):
        others = [k for k in range(12) if k != i and not exclude[i, k]]
        denom = sum(math.exp(float(zn[i] @ zn[k]) / 0.5) for k in others)
        total += -math.log(math.exp(float(zn[i] @ zn[i ^ 1]) / 0.5) / denom)
    assert got == pytest.approx(total / 12, rel=1e-5)


def test_retrieval_accuracy_counts_nearest_positives():
    z = torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [0.1, 0.99]])
    assert L.retrieval_accuracy(z, torch.tensor([0, 0, 1, 1])).item() == 1.0
    assert L.retrieval_accuracy(z, torch.tensor([0, 1, 0, 1])).item() == 0.0


def test_memory_is_quadratic_not_cubic():
    """A batch of 2,048 rows: an N^3 mask of bools alone would take 8 GiB; these losses need a few
    N^2 float matrices (16 MiB each)."""
    z = embeddings(2048, d=16, seed=16)
    groups = torch.arange(1024).repeat_interleave(2)
    for name, value in all_losses(z, groups):
        assert torch.isfinite(value), name


# ---------------------------------------------------------------- memories
def test_queue_overwrites_the_oldest_keys_and_wraps():
    from pretextgen.training.memory import MomentumQueue

    q = MomentumQueue(torch.nn.Linear(4, 4), size=5, dim=4)
    keys = torch.nn.functional.normalize(torch.randn(3, 4), dim=1)
    q.push(keys, torch.tensor([10, 11, 12]))
    q.push(keys[:3], torch.tensor([13, 14, 15]))
    assert q.pointer.item() == 1
    assert q.ids.tolist() == [15, 11, 12, 13, 14]
    assert torch.equal(q.queue[0], keys[2])


def test_queue_key_encoder_follows_the_query_encoder_by_momentum():
    from pretextgen.training.memory import MomentumQueue

    enc = torch.nn.Linear(4, 4)
    q = MomentumQueue(enc, size=8, dim=4, momentum=0.9)
    before = q.encoder.weight.clone()
    with torch.no_grad():
        enc.weight.add_(1.0)
    q.keys(enc, torch.randn(4, 4))
    assert torch.allclose(q.encoder.weight, 0.9 * before + 0.1 * enc.weight)
    assert not any(p.requires_grad for p in q.encoder.parameters())


def test_bank_moves_entries_towards_their_samples_mean_view():
    from pretextgen.training.memory import MemoryBank

    bank = MemoryBank(dim=4, momentum=0.5)
    bank.resize(6)
    old = bank.vectors.clone()
    f = torch.nn.functional.normalize(torch.randn(4, 4), dim=1)
    bank.update(torch.tensor([2, 2, 5, 5]), f)
    mean2 = torch.nn.functional.normalize(f[0] + f[1], dim=0)
    assert torch.allclose(bank.vectors[2], torch.nn.functional.normalize(0.5 * old[2] + 0.5 * mean2, dim=0), atol=1e-6)
    assert torch.equal(bank.vectors[[0, 1, 3, 4]], old[[0, 1, 3, 4]])
    # a checkpoint's bank loads at its own size
    other = MemoryBank(dim=4)
    other.load_state_dict(bank.state_dict())
    assert torch.equal(other.vectors, bank.vectors)


def test_gather_outside_torchrun_is_the_tensor_itself():
    x = torch.randn(3, 2)
    assert L.gather(x) is x and L.world_size() == 1


def test_losses_are_deterministic_functions_of_their_inputs():
    z = embeddings(12, seed=17)
    a = [float(v) for _, v in all_losses(z, GROUPS)]
    b = [float(v) for _, v in all_losses(z.clone(), GROUPS)]
    assert np.allclose(a, b, rtol=0, atol=0)
