"""PROSE tokenizer round trip (hypothesis), skeletons, term corruption, and the transformer."""

from __future__ import annotations

import random

import pytest
import sympy
import torch
from hypothesis import given, settings, strategies as st

from torchloom.operator.data import ode_dataset
from torchloom.operator.prose import PROSE, ExprTokenizer, corrupt_terms, prose_loss, skeleton

X0, X1 = sympy.symbols("x0 x1")
TOK = ExprTokenizer(2)


def _const() -> st.SearchStrategy[sympy.Expr]:
    return st.builds(
        lambda m, e, s: sympy.Float(f"{s}{m}e{e}"),
        st.integers(100, 999),
        st.integers(-5, 0),
        st.sampled_from("+-"),
    )


_atoms = st.one_of(
    st.sampled_from([X0, X1]), _const(), st.integers(-5, 5).filter(bool).map(sympy.Integer)
)
_exprs = st.recursive(
    _atoms,
    lambda inner: st.one_of(
        st.builds(lambda a, b: a + b, inner, inner),
        st.builds(lambda a, b: a * b, inner, inner),
        st.builds(lambda a, k: a**k, st.sampled_from([X0, X1]), st.integers(2, 3)),
    ),
    max_leaves=6,
)


@settings(max_examples=25, deadline=None)
@given(st.lists(_exprs, min_size=1, max_size=2))
def test_tokenizer_round_trip(exprs: list[sympy.Expr]) -> None:
    exprs = [e for e in exprs if e != 0]
    floats = [float(a) for e in exprs for a in e.atoms(sympy.Float)]
    if not exprs or any(float(f"{v:.2e}") != v or not 1e-8 <= abs(v) < 1e3 for v in floats):
        return  # products of constants leave the 3-digit grid; those are not tokenizable
    if any(abs(int(a)) > TOK.max_int for e in exprs for a in e.atoms(sympy.Integer)):
        return  # larger integers are written as (equal-valued) floats
    toks = TOK.encode(exprs)
    back = TOK.decode(toks)
    assert back == exprs
    assert TOK.encode(back) == toks  # canonical: tokens are a function of the expression
    ids = TOK.batch([toks], len(toks) + 2)[0].tolist()
    assert TOK.strings(ids) == toks


def test_dataset_equations_round_trip_and_skeletons_identify_families() -> None:
    d = ode_dataset(40, n_times=5, generator=torch.Generator().manual_seed(0))
    skel_of: dict[int, list[str]] = {}
    for eq, fam in zip(d.equations, d.family.tolist()):
        toks = TOK.encode(eq)
        assert TOK.decode(toks) == list(eq)
        sk = skeleton(toks)
        assert "+" not in sk and "-" not in sk
        assert skel_of.setdefault(fam, sk) == sk  # one skeleton per family
    assert len({tuple(s) for s in skel_of.values()}) == len(skel_of)


def test_corrupt_terms_deletes_and_adds_terms() -> None:
    rng = random.Random(0)
    eq = (-0.5 * X0 + 1.2 * X1 - X0 * X1, X1)
    assert corrupt_terms(eq, 0.0, rng) == list(eq)
    changed = [corrupt_terms(eq, 1.0, rng) for _ in range(20)]
    assert all(c[0] != eq[0] for c in changed)
    n_terms = [len(sympy.Add.make_args(c[0])) for c in changed]
    assert min(n_terms) < 3 < max(n_terms)
    with pytest.raises(ValueError, match="rate"):
        corrupt_terms(eq, 1.5, rng)


def test_tokenizer_errors() -> None:
    with pytest.raises(ValueError, match="unknown token"):
        TOK.decode(["add", "x0", "y7"])
    with pytest.raises(ValueError, match="truncated"):
        TOK.decode(["add", "x0"])
    with pytest.raises(ValueError, match="trailing"):
        TOK.decode(["x0", "x1"])
    with pytest.raises(ValueError, match="unknown variable"):
        TOK.encode([sympy.Symbol("y")])
    with pytest.raises(ValueError, match="cannot tokenize"):
        TOK.encode([sympy.sin(X0)])


def test_prose_shapes_padding_and_causality() -> None:
    torch.manual_seed(0)
    model = PROSE(len(TOK), d_model=16, heads=2, layers=(1, 1, 1, 1, 1), max_len=32).eval()
    t = torch.linspace(0, 2, 8).expand(2, 8)
    x = torch.randn(2, 8, 2)
    tq = torch.linspace(2, 6, 5).expand(2, 5)
    sym = TOK.batch([TOK.encode([X0, X1]), TOK.encode([-X0, X0 * X1])], 12)
    pred, logits = model(t, x, tq, sym, sym[:, :-1])
    assert pred.shape == (2, 5, 2) and logits is not None and logits.shape == (2, 11, len(TOK))
    # extra padding does not change anything
    pred2, logits2 = model(
        t, x, tq, torch.cat([sym, torch.zeros(2, 4, dtype=torch.long)], 1), sym[:, :-1]
    )
    torch.testing.assert_close(pred, pred2)
    torch.testing.assert_close(logits, logits2)
    # the symbol decoder is causal: logits at position i ignore later inputs
    alt = sym[:, :-1].clone()
    alt[:, 6:] = TOK.stoi["x1"]
    _, logits3 = model(t, x, tq, sym, alt)
    assert logits3 is not None
    torch.testing.assert_close(logits[:, :6], logits3[:, :6])
    out = model.generate(t, x, sym, TOK.bos, TOK.eos, max_len=6)
    assert out.shape[0] == 2 and out[0, 0] == TOK.bos
    data_only = PROSE(len(TOK), d_model=16, heads=2, layers=(1, 1, 1, 1, 1), use_symbols=False)
    assert data_only(t, x, tq)[1] is None
    with pytest.raises(ValueError, match="symbols are required"):
        model(t, x, tq)
    with pytest.raises(ValueError, match="no symbol decoder"):
        data_only.generate(t, x, sym, TOK.bos, TOK.eos)


def test_prose_loss() -> None:
    pred, target = torch.zeros(2, 3, 2), torch.ones(2, 3, 2)
    logits = torch.zeros(2, 4, 7)
    out = prose_loss(
        pred, target, logits, torch.tensor([[1, 2, 0, 0], [3, 0, 0, 0]]), symbol_weight=0.5
    )
    torch.testing.assert_close(out["data"], torch.tensor(1.0))
    torch.testing.assert_close(out["symbol"], torch.log(torch.tensor(7.0)))
    torch.testing.assert_close(out["loss"], 1 + 0.5 * torch.log(torch.tensor(7.0)))
    with pytest.raises(ValueError, match="target_out"):
        prose_loss(pred, target, logits)
