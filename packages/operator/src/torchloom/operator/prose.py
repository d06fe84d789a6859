"""PROSE: operators and symbolic expressions with multimodal transformers (Liu et al., 2023, #29).

One transformer reads two modalities — an observed trajectory (data) and a guess of the
governing equations (symbols, in Polish/prefix notation) — and emits both the solution at query
times (operator/data decoder) and the corrected equations (autoregressive symbol decoder):

- :class:`ExprTokenizer` — sympy expression ⇄ prefix tokens. Floats are written as sign, three
  mantissa digits and an exponent (``0.523 → + 5 2 3 E-3``), small integers as single tokens;
  systems are joined by ``|``. :func:`skeleton` replaces the float constants by ``<c>``.
- :func:`corrupt_terms` — PROSE's symbolic noise: each additive term is deleted or joined by a
  spurious term with a given probability.
- :class:`PROSE` — data encoder, symbol encoder, fusion encoder over both sequences (with
  modality embeddings), data decoder (cross-attention from query times), symbol decoder
  (causal). ``use_symbols=False`` gives the data-only baseline (no symbol encoder/decoder).
- :func:`prose_loss` — ``w_data·MSE + w_sym·CE``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torchloom.core.checks import check_floating

__all__ = ["PROSE", "ExprTokenizer", "corrupt_terms", "prose_loss", "skeleton"]

_SPECIAL = ["<pad>", "<bos>", "<eos>", "|", "<c>"]
_OPS = ["add", "mul", "pow"]
_EXP = range(-8, 4)  # value = sign · mantissa(3 digits) · 10^e


class ExprTokenizer:
    """Prefix-notation tokenizer for polynomial-type sympy expressions in ``x0 … x{d-1}``.

    Args:
        n_vars: number of state variables.
        max_int: small integers ``|k| <= max_int`` are single tokens.
    """

    def __init__(self, n_vars: int = 2, max_int: int = 5) -> None:
        digits = [str(i) for i in range(10)]
        ints = [f"i{k}" for k in range(-max_int, max_int + 1)]
        exps = [f"E{e}" for e in _EXP]
        self.vars = [f"x{i}" for i in range(n_vars)]
        self.max_int = max_int
        self.itos: list[str] = _SPECIAL + _OPS + self.vars + ["+", "-"] + digits + exps + ints
        self.stoi = {s: i for i, s in enumerate(self.itos)}

    @property
    def pad(self) -> int:
        """Index of ``<pad>``."""
        return self.stoi["<pad>"]

    @property
    def bos(self) -> int:
        """Index of ``<bos>``."""
        return self.stoi["<bos>"]

    @property
    def eos(self) -> int:
        """Index of ``<eos>``."""
        return self.stoi["<eos>"]

    def __len__(self) -> int:
        return len(self.itos)

    # -- expressions <-> tokens ------------------------------------------------------------
    def _number(self, v: Any) -> list[str]:
        import sympy

        if isinstance(v, sympy.Integer) and abs(int(v)) <= self.max_int:
            return [f"i{int(v)}"]
        x = float(v)
        if x == 0:
            raise ValueError("zero constants do not occur in simplified expressions")
        mant, exp = f"{abs(x):.2e}".split("e")
        digits = mant.replace(".", "")
        e = int(exp) - 2
        if e not in _EXP:
            raise ValueError(f"constant {x} out of the tokenizer's range")
        return ["+" if x > 0 else "-", *digits, f"E{e}"]

    def encode_expr(self, expr: Any) -> list[str]:
        """Prefix tokens of one sympy expression (n-ary ``+``/``*`` become binary chains).

        Args:
            expr: a sympy expression built from ``x_i``, numbers, ``+``, ``*`` and integer powers.

        Returns:
            the token strings.
        """
        import sympy

        if expr.is_Symbol:
            if str(expr) not in self.vars:
                raise ValueError(f"unknown variable {expr}")
            return [str(expr)]
        if expr.is_Number:
            return self._number(expr)
        if isinstance(expr, (sympy.Add, sympy.Mul)):
            op = "add" if isinstance(expr, sympy.Add) else "mul"
            args = list(expr.args)
            if op == "add":  # canonical order by the non-numeric factor, whatever the constants
                args.sort(key=lambda a: sympy.default_sort_key(a.as_coeff_Mul()[1]))
            out: list[str] = []
            for a in args[:-1]:
                out += [op, *self.encode_expr(a)]
            return out + self.encode_expr(args[-1])
        if isinstance(expr, sympy.Pow) and expr.exp.is_Integer:
            return ["pow", *self.encode_expr(expr.base), *self._number(expr.exp)]
        raise ValueError(f"cannot tokenize {expr!r} (type {type(expr).__name__})")

    def encode(self, exprs: Sequence[Any]) -> list[str]:
        """Tokens of a system: the components joined by ``|``.

        Args:
            exprs: sympy expressions, one per state.

        Returns:
            token strings.
        """
        out: list[str] = []
        for i, e in enumerate(exprs):
            if i:
                out.append("|")
            out += self.encode_expr(e)
        return out

    def decode(self, tokens: Sequence[str]) -> list[Any]:
        """Parse tokens (as from :meth:`encode`) back into sympy expressions.

        Args:
            tokens: token strings, components separated by ``|``.

        Returns:
            the list of sympy expressions.
        """

        for t in tokens:
            if t not in self.stoi:
                raise ValueError(f"unknown token {t!r}")
        parts: list[list[str]] = [[]]
        for t in tokens:
            if t == "|":
                parts.append([])
            else:
                parts[-1].append(t)
        out = []
        for p in parts:
            e, pos = self._parse(p, 0)
            if pos != len(p):
                raise ValueError(f"trailing tokens {p[pos:]}")
            out.append(e)
        return out

    def _parse(self, p: Sequence[str], pos: int) -> tuple[Any, int]:
        import sympy

        if pos >= len(p):
            raise ValueError("truncated expression")
        t = p[pos]
        pos += 1
        if t in ("add", "mul", "pow"):
            a, pos = self._parse(p, pos)
            b, pos = self._parse(p, pos)
            if t == "add":
                return sympy.Add(a, b), pos
            return (sympy.Mul(a, b) if t == "mul" else sympy.Pow(a, b)), pos
        if t in self.vars:
            return sympy.Symbol(t), pos
        if t.startswith("i"):
            return sympy.Integer(int(t[1:])), pos
        if t in ("+", "-"):
            if pos + 4 > len(p):
                raise ValueError("truncated constant")
            digits, exp = p[pos : pos + 3], p[pos + 3]
            if not all(d.isdigit() for d in digits) or not exp.startswith("E"):
                raise ValueError(f"malformed constant {[t, *digits, exp]}")
            return sympy.Float(f"{t}{''.join(digits)}e{exp[1:]}"), pos + 4
        raise ValueError(f"unexpected token {t!r}")

    def ids(self, tokens: Sequence[str]) -> list[int]:
        """Token strings → ids.

        Args:
            tokens: token strings.

        Returns:
            ids.
        """
        bad = [t for t in tokens if t not in self.stoi]
        if bad:
            raise ValueError(f"unknown tokens {bad}")
        return [self.stoi[t] for t in tokens]

    def strings(self, ids: Sequence[int]) -> list[str]:
        """Ids → token strings (stops at ``<eos>``, drops ``<bos>``/``<pad>``).

        Args:
            ids: token ids.

        Returns:
            token strings.
        """
        out = []
        for i in ids:
            s = self.itos[int(i)]
            if s == "<eos>":
                break
            if s not in ("<bos>", "<pad>"):
                out.append(s)
        return out

    def batch(self, systems: Sequence[Sequence[str]], max_len: int) -> torch.Tensor:
        """Pad token sequences into ``(B, max_len)`` ids as ``<bos> … <eos> <pad>…``.

        Args:
            systems: token strings per sample.
            max_len: padded length (sequences are truncated to fit).

        Returns:
            long tensor ``(B, max_len)``.
        """
        out = torch.full((len(systems), max_len), self.pad, dtype=torch.long)
        for i, toks in enumerate(systems):
            seq = [*[self.bos, *self.ids(toks)][: max_len - 1], self.eos]
            out[i, : len(seq)] = torch.tensor(seq)
        return out


def skeleton(tokens: Sequence[str]) -> list[str]:
    """Replace each float constant (sign, 3 digits, exponent) by ``<c>``.

    Args:
        tokens: token strings.

    Returns:
        the skeleton tokens.
    """
    out: list[str] = []
    i = 0
    while i < len(tokens):
        if tokens[i] in ("+", "-"):
            out.append("<c>")
            i += 5
        else:
            out.append(tokens[i])
            i += 1
    return out


def corrupt_terms(
    exprs: Sequence[Any], rate: float, rng: random.Random, n_vars: int = 2
) -> list[Any]:
    """PROSE's symbolic noise: with probability ``rate`` each additive term is corrupted —
    deleted, or kept with a spurious term ``c·m`` (``m`` a monomial of degree ≤ 2) added.

    Args:
        exprs: sympy expressions (one per state).
        rate: corruption probability per term.
        rng: Python random generator.
        n_vars: number of state variables.

    Returns:
        the corrupted expressions (never empty: a deleted last term is replaced).
    """
    import sympy

    if not 0 <= rate <= 1:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    xs = sympy.symbols(f"x0:{n_vars}")
    monos = list(xs) + [a * b for i, a in enumerate(xs) for b in xs[i:]]

    def spurious() -> Any:
        c = float(f"{rng.uniform(0.1, 2.0):.2e}") * rng.choice([-1, 1])
        return sympy.Float(str(c)) * rng.choice(monos)

    out = []
    for e in exprs:
        terms = []
        for t in sympy.Add.make_args(e):
            if rng.random() < rate:
                if rng.random() < 0.5:
                    continue
                terms += [t, spurious()]
            else:
                terms.append(t)
        out.append(sympy.Add(*terms) if terms else spurious())
    return out


def _sinusoid(t: torch.Tensor, d: int) -> torch.Tensor:
    freqs = torch.exp(
        torch.arange(d // 2, dtype=t.dtype, device=t.device) * (-math.log(100.0) / (d // 2))
    )
    ang = t[..., None] * freqs * 4
    return torch.cat([ang.sin(), ang.cos()], dim=-1)


class PROSE(nn.Module):
    """The PROSE multimodal transformer.

    Args:
        vocab_size: symbol vocabulary size (``len(tokenizer)``).
        state_dim: trajectory dimension ``S``.
        d_model: model width.
        heads: attention heads.
        layers: ``(data encoder, symbol encoder, fusion, data decoder, symbol decoder)`` depths.
        max_len: longest symbol sequence.
        use_symbols: ``False`` builds the data-only baseline.
        pad_id: padding token id.
        dropout: dropout inside the transformer layers.
    """

    def __init__(
        self,
        vocab_size: int,
        state_dim: int = 2,
        d_model: int = 64,
        heads: int = 4,
        layers: tuple[int, int, int, int, int] = (2, 2, 2, 2, 2),
        max_len: int = 64,
        use_symbols: bool = True,
        pad_id: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if d_model % 2 or d_model % heads:
            raise ValueError(f"d_model must be even and divisible by heads, got {d_model}, {heads}")
        self.d, self.state_dim, self.use_symbols, self.pad_id = (
            d_model,
            state_dim,
            use_symbols,
            pad_id,
        )
        self.max_len = max_len

        def enc(n: int) -> nn.TransformerEncoder:
            layer = nn.TransformerEncoderLayer(
                d_model, heads, 2 * d_model, dropout, batch_first=True
            )
            return nn.TransformerEncoder(layer, n, enable_nested_tensor=False)

        def dec(n: int) -> nn.TransformerDecoder:
            layer = nn.TransformerDecoderLayer(
                d_model, heads, 2 * d_model, dropout, batch_first=True
            )
            return nn.TransformerDecoder(layer, n)

        ld, ls, lf, lo, lsym = layers
        self.data_in = nn.Linear(state_dim + d_model, d_model)
        self.data_enc = enc(ld)
        self.fusion = enc(lf)
        self.modality = nn.Embedding(2, d_model)
        self.query_in = nn.Linear(d_model, d_model)
        self.data_dec = dec(lo)
        self.data_out = nn.Linear(d_model, state_dim)
        if use_symbols:
            self.tok = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
            self.pos = nn.Embedding(max_len, d_model)
            self.sym_enc = enc(ls)
            self.sym_dec = dec(lsym)
            self.sym_out = nn.Linear(d_model, vocab_size)

    def _embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.max_len:
            raise ValueError(f"symbol sequence longer than max_len={self.max_len}")
        pos = torch.arange(ids.shape[1], device=ids.device)
        return self.tok(ids) + self.pos(pos)

    def encode(
        self, t: torch.Tensor, x: torch.Tensor, symbols: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused memory ``(B, T [+ L], d)`` and its padding mask.

        Args:
            t: input times ``(B, T)``.
            x: input trajectory ``(B, T, S)``.
            symbols: symbol ids ``(B, L)`` (required iff ``use_symbols``).

        Returns:
            ``(memory, key_padding_mask)``.
        """
        x = check_floating(x, "x")
        if x.ndim != 3 or x.shape[-1] != self.state_dim or t.shape != x.shape[:2]:
            raise ValueError(
                f"x must have shape (B, T, {self.state_dim}) and t (B, T), "
                f"got {tuple(x.shape)}, {tuple(t.shape)}"
            )
        h = self.data_in(torch.cat([x, _sinusoid(t, self.d)], dim=-1))
        h = self.data_enc(h) + self.modality.weight[0]
        mask = torch.zeros(h.shape[:2], dtype=torch.bool, device=h.device)
        if self.use_symbols:
            if symbols is None:
                raise ValueError("symbols are required when use_symbols=True")
            smask = symbols == self.pad_id
            s = self.sym_enc(self._embed_tokens(symbols), src_key_padding_mask=smask)
            h = torch.cat([h, s + self.modality.weight[1]], dim=1)
            mask = torch.cat([mask, smask], dim=1)
        return self.fusion(h, src_key_padding_mask=mask), mask

    def predict_data(
        self, memory: torch.Tensor, mask: torch.Tensor, t_query: torch.Tensor
    ) -> torch.Tensor:
        """Solution at query times ``(B, Q) -> (B, Q, S)``.

        Args:
            memory: fused memory from :meth:`encode`.
            mask: its padding mask.
            t_query: query times ``(B, Q)``.

        Returns:
            predicted states ``(B, Q, S)``.
        """
        q = self.query_in(_sinusoid(t_query, self.d))
        return self.data_out(self.data_dec(q, memory, memory_key_padding_mask=mask))

    def symbol_logits(
        self, memory: torch.Tensor, mask: torch.Tensor, target_in: torch.Tensor
    ) -> torch.Tensor:
        """Next-token logits ``(B, L, V)`` for teacher-forced inputs ``target_in`` ``(B, L)``.

        Args:
            memory: fused memory.
            mask: its padding mask.
            target_in: decoder inputs (``<bos>`` first).

        Returns:
            logits ``(B, L, V)``.
        """
        length = target_in.shape[1]
        causal = torch.triu(torch.full((length, length), float("-inf"), device=memory.device), 1)
        h = self.sym_dec(
            self._embed_tokens(target_in),
            memory,
            tgt_mask=causal,
            tgt_key_padding_mask=target_in == self.pad_id,
            memory_key_padding_mask=mask,
        )
        return self.sym_out(h)

    def forward(
        self,
        t: torch.Tensor,
        x: torch.Tensor,
        t_query: torch.Tensor,
        symbols: torch.Tensor | None = None,
        target_in: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Predict the solution at ``t_query`` and (if ``target_in``) the symbol logits.

        Args:
            t: input times ``(B, T)``.
            x: input trajectory ``(B, T, S)``.
            t_query: output times ``(B, Q)``.
            symbols: input equation ids ``(B, L)``.
            target_in: teacher-forced symbol decoder inputs ``(B, L')``.

        Returns:
            ``(x_pred (B, Q, S), logits (B, L', V) or None)``.
        """
        memory, mask = self.encode(t, x, symbols)
        pred = self.predict_data(memory, mask, t_query)
        logits = None
        if self.use_symbols and target_in is not None:
            logits = self.symbol_logits(memory, mask, target_in)
        return pred, logits

    @torch.no_grad()
    def generate(
        self,
        t: torch.Tensor,
        x: torch.Tensor,
        symbols: torch.Tensor,
        bos: int,
        eos: int,
        max_len: int | None = None,
    ) -> torch.Tensor:
        """Greedy decoding of the output equation, ``(B, ≤ max_len)`` ids starting with ``<bos>``.

        Args:
            t: input times ``(B, T)``.
            x: input trajectory ``(B, T, S)``.
            symbols: input equation ids ``(B, L)``.
            bos: ``<bos>`` id.
            eos: ``<eos>`` id.
            max_len: longest output (default ``self.max_len``).

        Returns:
            the generated ids.
        """
        if not self.use_symbols:
            raise ValueError("the data-only model has no symbol decoder")
        memory, mask = self.encode(t, x, symbols)
        out = torch.full((x.shape[0], 1), bos, dtype=torch.long, device=x.device)
        done = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for _ in range((max_len or self.max_len) - 1):
            nxt = self.symbol_logits(memory, mask, out)[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
            out = torch.cat([out, nxt[:, None]], dim=1)
            done |= nxt == eos
            if bool(done.all()):
                break
        return out


def prose_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    logits: torch.Tensor | None = None,
    target_out: torch.Tensor | None = None,
    *,
    pad_id: int = 0,
    symbol_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """``loss = MSE(pred, target) + symbol_weight · CE(logits, target_out)``.

    Args:
        pred: predicted states ``(B, Q, S)``.
        target: true states ``(B, Q, S)``.
        logits: symbol logits ``(B, L, V)`` (``None``: data only).
        target_out: next-token targets ``(B, L)`` (padding ignored).
        pad_id: padding id.
        symbol_weight: weight of the cross-entropy.

    Returns:
        dict with ``loss``, ``data`` and ``symbol``.
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must match, got {tuple(pred.shape)}, {tuple(target.shape)}"
        )
    data = F.mse_loss(pred, target)
    sym = torch.zeros((), dtype=pred.dtype, device=pred.device)
    if logits is not None:
        if target_out is None:
            raise ValueError("target_out is required with logits")
        sym = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), target_out.reshape(-1), ignore_index=pad_id
        )
    return {"loss": data + symbol_weight * sym, "data": data, "symbol": sym}
