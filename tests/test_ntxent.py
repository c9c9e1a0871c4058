"""masked NT-Xent (torch backend) against a direct transcription of Eq. 1 and 7."""

import math

import pytest
import torch

from himoe_fast.ops import masked_ntxent


def eq7_by_hand(z: torch.Tensor, present: torch.Tensor, tau: float) -> float:
    """Row-by-row transcription of DESIGN.md's definition with Python floats."""
    M, N, _ = z.shape
    pair_losses = []
    for i in range(M):
        for j in range(i + 1, M):
            tokens = [t for t in range(N) if present[i, t] and present[j, t]]
            n = len(tokens)
            if n < 2:
                continue
            vecs = [z[i, t] / z[i, t].norm() for t in tokens] + [z[j, t] / z[j, t].norm() for t in tokens]
            total = 0.0
            for a in range(2 * n):
                pos = a + n if a < n else a - n
                sims = [float(vecs[a] @ vecs[b]) / tau for b in range(2 * n)]
                denom = sum(math.exp(s) for b, s in enumerate(sims) if b != a)
                total += -sims[pos] + math.log(denom)
            pair_losses.append(total / (2 * n))
    return sum(pair_losses) / len(pair_losses) if pair_losses else 0.0


@pytest.mark.parametrize("M,N,d,p", [(2, 5, 4, 1.0), (3, 7, 5, 0.7), (4, 9, 3, 0.5), (1, 4, 3, 1.0)])
def test_matches_eq7(M, N, d, p):
    g = torch.Generator().manual_seed(M * 100 + N)
    z = torch.randn(M, N, d, dtype=torch.float64, generator=g)
    present = torch.rand(M, N, generator=g) < p
    got = masked_ntxent(z, present, 0.3, backend="torch")
    assert float(got) == pytest.approx(eq7_by_hand(z, present, 0.3), rel=1e-10, abs=1e-12)


def test_pairs_with_fewer_than_two_shared_tokens_are_skipped():
    z = torch.randn(3, 6, 4, dtype=torch.float64)
    present = torch.ones(3, 6, dtype=torch.bool)
    present[2] = False
    present[2, 0] = True          # modality 2 shares 1 token with the others: pairs (0,2), (1,2) skipped
    got = float(masked_ntxent(z, present, 0.5, backend="torch"))
    only01 = eq7_by_hand(z[:2], present[:2], 0.5)
    assert got == pytest.approx(only01, rel=1e-12)
    assert got == pytest.approx(eq7_by_hand(z, present, 0.5), rel=1e-12)


def test_nothing_qualifies_gives_differentiable_zero():
    z = torch.randn(3, 4, 5, requires_grad=True)
    present = torch.zeros(3, 4, dtype=torch.bool)
    present[0] = True              # modality 0 alone: no pair shares a token
    loss = masked_ntxent(z, present, 0.1, backend="torch")
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert z.grad is not None and torch.equal(z.grad, torch.zeros_like(z))


def test_absent_tokens_are_neither_anchors_nor_negatives():
    z = torch.randn(2, 8, 4)
    present = torch.ones(2, 8, dtype=torch.bool)
    present[0, 3] = False
    a = masked_ntxent(z, present, 0.2, backend="torch")
    z2 = z.clone()
    z2[0, 3] = torch.randn(4) * 10
    z2[1, 3] = torch.randn(4) * 10   # token 3 is absent in modality 0, so the pair drops it entirely
    assert torch.allclose(a, masked_ntxent(z2, present, 0.2, backend="torch"))


def test_gradcheck_float64():
    z = torch.randn(3, 5, 4, dtype=torch.float64, requires_grad=True)
    present = torch.rand(3, 5) < 0.8
    present[:, :2] = True
    assert torch.autograd.gradcheck(lambda t: masked_ntxent(t, present, 0.4, backend="torch"), (z,))


def test_bad_arguments():
    with pytest.raises(ValueError):
        masked_ntxent(torch.randn(2, 3, 4), torch.ones(2, 4, dtype=torch.bool), 0.1, backend="torch")
    with pytest.raises(ValueError):
        masked_ntxent(torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.bool), 0.1, backend="nope")
