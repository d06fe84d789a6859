"""Turn any ``nn.Module`` into a hypernetwork target.

A hypernetwork ``h`` maps a conditioning input ``z`` to (some of) the parameters ``θ`` of a
primary network ``f``; the primary network then runs *functionally*,
``y = f(x; θ = h(z))``, through :func:`torch.func.functional_call`. A batch of hypernetwork
inputs gives a batch of parameter vectors, and the primary network is evaluated once per
vector with :func:`torch.func.vmap` (one fused batched call, not a Python loop).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from torchloom.core.checks import check_floating

__all__ = ["HyperTarget", "hypernetize"]

Selector = str | type[nn.Module]


def _select(module: nn.Module, predict: Selector | Sequence[Selector] | None) -> list[str]:
    """Names of ``module``'s parameters chosen by ``predict``, in ``named_parameters`` order."""
    all_names = [n for n, _ in module.named_parameters()]
    if predict is None:
        chosen = set(all_names)
    else:
        selectors: Sequence[Selector]
        if isinstance(predict, str) or isinstance(predict, type):
            selectors = [predict]
        else:
            selectors = list(predict)
        chosen = set()
        modules = dict(module.named_modules())
        for sel in selectors:
            if isinstance(sel, str):
                if sel in all_names:
                    chosen.add(sel)
                elif sel in modules and sel != "":
                    # a module name selects every parameter below it
                    hits = [n for n in all_names if n.startswith(sel + ".")]
                    if not hits:
                        raise ValueError(f"predict: module {sel!r} has no parameters")
                    chosen.update(hits)
                else:
                    raise ValueError(
                        f"predict: {sel!r} is neither a parameter nor a module of "
                        f"{type(module).__name__}; parameters are {all_names}"
                    )
            elif isinstance(sel, type) and issubclass(sel, nn.Module):
                hits = []
                for mname, m in module.named_modules():
                    if isinstance(m, sel):
                        prefix = f"{mname}." if mname else ""
                        hits += [prefix + p for p, _ in m.named_parameters(recurse=False)]
                if not hits:
                    raise ValueError(
                        f"predict: no {sel.__name__} with parameters in {type(module).__name__}"
                    )
                chosen.update(hits)
            else:
                raise TypeError(
                    f"predict entries must be parameter/module names or nn.Module types, "
                    f"got {sel!r}"
                )
    names = [n for n in all_names if n in chosen]
    if not names:
        raise ValueError(f"predict selected no parameters of {type(module).__name__}")
    return names


class HyperTarget(nn.Module):
    """A primary network whose selected parameters ``θ`` are supplied at call time.

    Args:
        module: the primary network ``f``. It is kept whole: parameters that are not predicted
            (and buffers) stay ordinary trainable members and are used as they are.
        predict: which parameters the hypernetwork predicts: exact parameter names
            (``"0.weight"``), module names (``"fc"`` selects ``fc.weight`` and ``fc.bias``),
            module types (``nn.Linear``, every such layer's own parameters), or a list of
            these. ``None`` predicts every parameter.

    ``θ`` travels as one flat vector of ``num_params`` entries, the predicted tensors
    flattened and concatenated in :attr:`names` order (:meth:`flatten` / :meth:`unflatten`).

    Shapes:
        - ``weights``: ``(P,)`` for one network or ``(B, P)`` for ``B`` networks
          (or a mapping ``name -> (*shape)`` / ``(B, *shape)``).
        - inputs: shared by all ``B`` networks (default) or, with ``batched_inputs=True``,
          carrying a leading ``B`` axis, one input batch per network.
        - output: ``f(x; θ)`` for ``(P,)``; stacked ``(B, *f(x).shape)`` for ``(B, P)``.
    """

    def __init__(
        self, module: nn.Module, predict: Selector | Sequence[Selector] | None = None
    ) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
        self.module = module
        self.names: tuple[str, ...] = tuple(_select(module, predict))
        params = dict(module.named_parameters())
        self.shapes: dict[str, torch.Size] = {n: params[n].shape for n in self.names}
        self.sizes: tuple[int, ...] = tuple(math.prod(s) for s in self.shapes.values())
        self.num_params: int = sum(self.sizes)

    def own_parameters(self) -> torch.Tensor:
        """The module's current values of the predicted parameters as one flat ``(P,)`` vector."""
        params = dict(self.module.named_parameters())
        return self.flatten({n: params[n] for n in self.names})

    def flatten(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``{name: (..., *shape)}`` -> ``(..., P)``."""
        missing = [n for n in self.names if n not in params]
        if missing:
            raise ValueError(f"params is missing predicted parameters {missing}")
        parts = []
        batch: torch.Size | None = None
        for n in self.names:
            t = params[n]
            shape = self.shapes[n]
            lead = t.shape[: t.ndim - len(shape)]
            if t.shape[t.ndim - len(shape) :] != shape:
                raise ValueError(f"params[{n!r}] must end in shape {tuple(shape)}, got {t.shape}")
            if batch is None:
                batch = lead
            elif lead != batch:
                raise ValueError(f"params[{n!r}] has batch shape {lead}, others have {batch}")
            parts.append(t.reshape(*lead, -1))
        return torch.cat(parts, dim=-1)

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(..., P)`` -> ``{name: (..., *shape)}`` (views, so gradients flow back to ``flat``)."""
        if flat.shape[-1:] != (self.num_params,):
            raise ValueError(
                f"weights must end in {self.num_params} entries (the predicted parameters), "
                f"got shape {tuple(flat.shape)}"
            )
        lead = flat.shape[:-1]
        chunks = torch.split(flat, list(self.sizes), dim=-1)
        return {n: c.reshape(*lead, *self.shapes[n]) for n, c in zip(self.names, chunks)}

    def forward(
        self,
        weights: torch.Tensor | Mapping[str, torch.Tensor],
        *args: Any,
        batched_inputs: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Run the primary network with ``weights`` in place of its predicted parameters.

        ``f(x; θ)`` via ``functional_call``; for ``(B, P)`` weights, ``vmap`` over ``B``
        (positional inputs mapped too when ``batched_inputs``; keyword inputs are shared).
        """
        flat = self.flatten(weights) if isinstance(weights, Mapping) else weights
        flat = check_floating(flat, "weights")
        if flat.ndim not in (1, 2):
            raise ValueError(f"weights must be (P,) or (B, P), got shape {tuple(flat.shape)}")
        if flat.shape[-1] != self.num_params:
            raise ValueError(
                f"weights must have {self.num_params} entries per network, got {flat.shape[-1]}"
            )

        def call(theta: torch.Tensor, *a: Any) -> Any:
            return functional_call(self.module, self.unflatten(theta), a, kwargs, strict=False)

        if flat.ndim == 1:
            return call(flat, *args)
        if batched_inputs:
            for i, a in enumerate(args):
                if isinstance(a, torch.Tensor) and (a.ndim == 0 or a.shape[0] != flat.shape[0]):
                    raise ValueError(
                        f"with batched_inputs, input {i} must lead with B={flat.shape[0]}, "
                        f"got shape {tuple(a.shape)}"
                    )
        in_dims = (0, *((0 if batched_inputs else None) for _ in args))
        # randomness="different": dropout masks differ per predicted network, as in a loop
        return vmap(call, in_dims=in_dims, randomness="different")(flat, *args)

    def extra_repr(self) -> str:
        return f"predicted={list(self.names)}, num_params={self.num_params}"


def hypernetize(
    module: nn.Module, predict: Selector | Sequence[Selector] | None = None
) -> HyperTarget:
    """Wrap ``module`` as a :class:`HyperTarget` whose ``predict``-ed parameters come from a
    hypernetwork: ``hypernetize(net, nn.Linear)(theta, x)``."""
    return HyperTarget(module, predict)
