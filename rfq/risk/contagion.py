"""How far one default spreads through the exposure network (paper section III.3, formulas 10-11).

One network, three models:

- ``cascade``: the paper's model. A defaulted debtor costs each creditor ``amount x lgd``
  (formula 10); an institution still standing defaults when its capital minus its accumulated
  losses is *strictly below* the total it owes others in the network (formula 11,
  ``C - L < EAD_out``); an exact tie does not default. Repeated until no one new defaults.
- ``eisenberg_noe``: the Eisenberg-Noe (2001) clearing payment vector, found with their
  fictitious default algorithm, so each round lists the institutions found to default in it.
- ``debtrank``: Battiston et al. (2012) DebtRank, each distressed node propagating once.

The network is built once from typed objects (``build_network``) into index arrays; every model
is vectorised over the edges with numpy / scipy.sparse so the regulator's monitor can re-run it
on each block. All three are pure and deterministic: ties and orders follow the institutions'
input order.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from rfq.errors import ValidationError
from rfq.risk._decode import decode

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

# Relative slack for comparisons of accumulated sums: a tie that only rounding broke is a tie.
RELATIVE_TOLERANCE = 1e-12
# DebtRank stress at or above 1 - this is a default (stress 1): sums of fractions rarely hit 1.0.
DEFAULT_STRESS_TOLERANCE = 1e-9


class Institution(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A node. ``capital`` (cascade, DebtRank), ``external_assets`` (Eisenberg-Noe's e) and
    ``weight`` (DebtRank's economic value) are needed only by the models that use them."""

    id: str
    capital: float | None = None
    external_assets: float | None = None
    weight: float | None = None


class Exposure(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``creditor`` is exposed to ``debtor`` for ``amount`` (for Eisenberg-Noe: the debtor owes
    the creditor ``amount``); ``lgd`` is the share lost if the debtor defaults (default 1)."""

    creditor: str
    debtor: str
    amount: float
    lgd: float | None = None


class Shock(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    defaults: tuple[str, ...] = ()


class ContagionInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The ``botc risk contagion`` file."""

    institutions: tuple[Institution, ...]
    exposures: tuple[Exposure, ...] = ()
    shock: Shock | None = None


@dataclass(frozen=True, eq=False)
class ExposureNetwork:
    """The exposure network as arrays: edge ``k`` says ``creditor[k]`` is exposed to
    ``debtor[k]`` for ``amount[k]``, losing ``lgd[k]`` of it on default. Node attributes are NaN
    where the input left them out; the model that needs one refuses to run without it."""

    ids: tuple[str, ...]
    capital: FloatArray
    external_assets: FloatArray
    weight: FloatArray
    creditor: IndexArray
    debtor: IndexArray
    amount: FloatArray
    lgd: FloatArray

    def __post_init__(self) -> None:
        n, e = len(self.ids), len(self.creditor)
        if any(len(a) != n for a in (self.capital, self.external_assets, self.weight)):
            raise ValidationError("node arrays must have one value per institution")
        if any(len(a) != e for a in (self.debtor, self.amount, self.lgd)):
            raise ValidationError("edge arrays must have one value per exposure")

    @property
    def size(self) -> int:
        return len(self.ids)

    def index_of(self, institution: str, *, where: str = "shock") -> int:
        try:
            return self._index[institution]
        except KeyError:
            raise ValidationError(f"unknown institution {institution!r}", where=where) from None

    @property
    def _index(self) -> Mapping[str, int]:
        cached: dict[str, int] | None = self.__dict__.get("_index_cache")
        if cached is None:
            cached = {name: i for i, name in enumerate(self.ids)}
            object.__setattr__(self, "_index_cache", cached)
        return cached

    def owed(self) -> FloatArray:
        """Total each institution owes the others in the network."""
        owed = np.bincount(self.debtor, weights=self.amount, minlength=self.size)
        return owed.astype(np.float64, copy=False)

    def names(self, mask_or_indices: BoolArray | IndexArray) -> tuple[str, ...]:
        indices = (
            np.flatnonzero(mask_or_indices)
            if mask_or_indices.dtype == np.bool_
            else np.sort(mask_or_indices)
        )
        return tuple(self.ids[i] for i in indices)


def _finite_or_none(value: float | None, name: str, where: str) -> float:
    if value is None:
        return math.nan
    if not math.isfinite(value):
        raise ValidationError(f"{name} must be a finite number, not {value!r}", where=where)
    if value < 0:
        raise ValidationError(f"{name} must not be negative, got {value}", where=where)
    return value


def build_network(
    institutions: Sequence[Institution], exposures: Sequence[Exposure]
) -> ExposureNetwork:
    """Index the institutions and exposures; refuses duplicates, unknown ids, self-exposures,
    negative capital / assets / weights / amounts and LGDs outside [0, 1]."""
    index: dict[str, int] = {}
    capital = np.empty(len(institutions))
    external = np.empty(len(institutions))
    weight = np.empty(len(institutions))
    for i, inst in enumerate(institutions):
        where = f"institution {inst.id!r}"
        if inst.id in index:
            raise ValidationError("duplicate institution id", where=where)
        index[inst.id] = i
        capital[i] = _finite_or_none(inst.capital, "capital", where)
        external[i] = _finite_or_none(inst.external_assets, "external_assets", where)
        weight[i] = _finite_or_none(inst.weight, "weight", where)

    try:
        creditor = np.fromiter((index[x.creditor] for x in exposures), np.intp, len(exposures))
        debtor = np.fromiter((index[x.debtor] for x in exposures), np.intp, len(exposures))
    except KeyError:
        for k, x in enumerate(exposures):
            for role, name in (("creditor", x.creditor), ("debtor", x.debtor)):
                if name not in index:
                    raise ValidationError(
                        f"unknown institution {name!r} as {role}", where=_exposure_where(k, x)
                    ) from None
        raise  # pragma: no cover - a KeyError always comes from one of the lookups above
    amount = np.fromiter((x.amount for x in exposures), np.float64, len(exposures))
    lgd = np.fromiter(
        (1.0 if x.lgd is None else x.lgd for x in exposures), np.float64, len(exposures)
    )
    bad = (
        ~np.isfinite(amount)
        | (amount < 0)
        | ~np.isfinite(lgd)
        | (lgd < 0)
        | (lgd > 1)
        | (creditor == debtor)
    )
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        x = exposures[k]
        if x.creditor == x.debtor:
            message = "an institution cannot be exposed to itself"
        elif not (math.isfinite(x.amount) and x.amount >= 0):
            message = f"amount must not be negative, got {x.amount}"
        else:
            message = f"lgd must be between 0 and 1, got {x.lgd}"
        raise ValidationError(message, where=_exposure_where(k, x))
    network = ExposureNetwork(
        ids=tuple(inst.id for inst in institutions),
        capital=capital,
        external_assets=external,
        weight=weight,
        creditor=creditor,
        debtor=debtor,
        amount=amount,
        lgd=lgd,
    )
    object.__setattr__(network, "_index_cache", index)
    return network


def _exposure_where(k: int, x: Exposure) -> str:
    return f"exposure #{k + 1} (creditor {x.creditor!r}, debtor {x.debtor!r})"


def _require(network: ExposureNetwork, values: FloatArray, name: str, model: str) -> FloatArray:
    missing = np.isnan(values)
    if missing.any():
        who = network.ids[int(np.flatnonzero(missing)[0])]
        raise ValidationError(
            f"missing field {name!r} (needed by {model})", where=f"institution {who!r}"
        )
    return values


def _shocked_indices(network: ExposureNetwork, shocked: Iterable[str]) -> IndexArray:
    return np.unique(np.fromiter((network.index_of(s) for s in shocked), np.intp))


# ---------------------------------------------------------------------------------------------
# The paper's cascade.


class CascadeResult(msgspec.Struct, frozen=True):
    """``rounds[0]`` is the shock, ``rounds[t]`` the institutions that default in round t;
    ``losses`` is what each institution lost to defaulted debtors."""

    defaulted: tuple[str, ...]
    rounds: tuple[tuple[str, ...], ...]
    losses: dict[str, float]


def cascade(network: ExposureNetwork, shocked: Iterable[str]) -> CascadeResult:
    """Propagate the defaults in ``shocked`` (paper formulas 10-11).

    Each round, every exposure to a debtor that defaulted in the previous round becomes a loss
    ``amount x lgd`` for its creditor; an institution that has not defaulted defaults when
    ``capital - losses < owed`` (strictly: equal survives), ``owed`` being the total it owes
    others in the network. The test applies to every surviving institution, so one that already
    fails it before any loss is reported in the first round: the network's own weakness, shown
    rather than hidden. Ends when a round adds no default.
    """
    capital = _require(network, network.capital, "capital", "cascade")
    owed = network.owed()
    edge_loss = network.amount * network.lgd
    tolerance = RELATIVE_TOLERANCE * np.maximum(1.0, np.maximum(np.abs(capital), owed))
    n = network.size
    defaulted = np.zeros(n, dtype=np.bool_)
    losses = np.zeros(n)
    new = _shocked_indices(network, shocked)
    rounds: list[tuple[str, ...]] = [network.names(new)]
    while True:
        defaulted[new] = True
        just_defaulted = np.zeros(n, dtype=np.bool_)
        just_defaulted[new] = True
        hit = just_defaulted[network.debtor]
        if hit.any():
            losses += np.bincount(network.creditor[hit], weights=edge_loss[hit], minlength=n)
        fails = ~defaulted & ((capital - losses) - owed < -tolerance)
        new = np.flatnonzero(fails)
        if new.size == 0:
            break
        rounds.append(network.names(new))
    return CascadeResult(
        defaulted=network.names(defaulted),
        rounds=tuple(rounds),
        losses={network.ids[i]: float(losses[i]) for i in range(n)},
    )


# ---------------------------------------------------------------------------------------------
# Eisenberg-Noe clearing.


class ClearingResult(msgspec.Struct, frozen=True):
    """``payments``: the clearing vector. ``equity``: external assets + payments received -
    total nominal liabilities (negative for a defaulter: its shortfall). ``rounds``: the
    defaults each step of the fictitious default algorithm uncovered."""

    payments: dict[str, float]
    equity: dict[str, float]
    defaulted: tuple[str, ...]
    rounds: tuple[tuple[str, ...], ...]


def eisenberg_noe(network: ExposureNetwork, *, max_iterations: int = 100_000) -> ClearingResult:
    """The greatest clearing payment vector p = min(p_bar, e + Pi^T p) (Eisenberg-Noe 2001).

    Fictitious default algorithm: start from full payment, find who cannot pay, solve the linear
    system for the defaulters' payments given everyone else pays in full, repeat until the
    defaulter set stops growing (at most n rounds). A closed group of defaulters that makes the
    system singular falls back to the monotone fixed-point iteration from the current vector.
    """
    e = _require(network, network.external_assets, "external_assets", "eisenberg-noe")
    n = network.size
    p_bar = network.owed()
    liabilities = sp.csr_matrix((network.amount, (network.debtor, network.creditor)), shape=(n, n))
    liabilities.sum_duplicates()
    inv_p_bar = np.divide(1.0, p_bar, out=np.zeros(n), where=p_bar > 0)
    # relative[j, i] = Pi[i, j]: the share of i's payments that goes to j.
    relative = sp.csr_matrix(liabilities.multiply(inv_p_bar[:, None]).T)
    tolerance = RELATIVE_TOLERANCE * np.maximum(1.0, p_bar)

    p = p_bar.copy()
    defaulted = np.zeros(n, dtype=np.bool_)
    rounds: list[tuple[str, ...]] = []
    for _ in range(n + 1):
        short = (e + relative @ p) - p_bar < -tolerance
        new = short & ~defaulted
        if not new.any():
            break
        rounds.append(network.names(new))
        defaulted |= new
        p = _clear_defaulters(relative, e, p_bar, p, defaulted, max_iterations)

    received = relative @ p
    equity = e + received - p_bar
    paid_short = p < p_bar - tolerance
    return ClearingResult(
        payments={network.ids[i]: float(p[i]) for i in range(n)},
        equity={network.ids[i]: float(equity[i]) for i in range(n)},
        defaulted=network.names(paid_short),
        rounds=tuple(r for r in rounds if r),
    )


def _clear_defaulters(
    relative: Any,
    e: FloatArray,
    p_bar: FloatArray,
    p: FloatArray,
    defaulted: BoolArray,
    max_iterations: int,
) -> FloatArray:
    """Defaulters pay all they have, the rest pay in full: solve
    (I - Pi^T_DD) p_D = e_D + Pi^T_DN p_bar_N."""
    d = np.flatnonzero(defaulted)
    solvent = np.flatnonzero(~defaulted)
    block = relative[d][:, d]
    rhs = e[d] + relative[d][:, solvent] @ p_bar[solvent]
    system = sp.identity(len(d), format="csc") - sp.csc_matrix(block)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            solution = np.atleast_1d(spla.spsolve(system, rhs))
        except Exception:  # singular: a closed group of defaulters
            solution = np.full(len(d), np.nan)
    result = p_bar.copy()
    if np.all(np.isfinite(solution)):
        result[d] = np.clip(solution, 0.0, p_bar[d])
        return result
    # Monotone Picard iteration from the current vector converges to the greatest fixed point.
    result = p.copy()
    for _ in range(max_iterations):
        updated: FloatArray = np.minimum(p_bar, e + relative @ result)
        if np.max(np.abs(updated - result), initial=0.0) <= 1e-12 * max(1.0, float(p_bar.max())):
            return updated
        result = updated
    return result


# ---------------------------------------------------------------------------------------------
# DebtRank.


class DebtRankResult(msgspec.Struct, frozen=True):
    """``additional_stress``: DebtRank R, the economic value lost beyond the initial shock.
    ``stress``: final h per institution (1 = default). ``rounds[0]`` is the shock, later
    entries the institutions whose stress reached 1 at a propagation step (steps adding none
    are not listed)."""

    additional_stress: float
    stress: dict[str, float]
    defaulted: tuple[str, ...]
    rounds: tuple[tuple[str, ...], ...]
    additional_defaults: int


def impact_matrix(network: ExposureNetwork) -> Any:
    """W[k, i] = min(1, sum of amount x lgd of k's exposures to i / capital of k): the share of
    creditor k's capital that i's default wipes out (k with no capital loses all to any loss)."""
    capital = _require(network, network.capital, "capital", "debtrank")
    n = network.size
    loss = sp.csr_matrix(
        (network.amount * network.lgd, (network.creditor, network.debtor)), shape=(n, n)
    )
    loss.sum_duplicates()
    rows = np.repeat(np.arange(n), np.diff(loss.indptr))
    cap = capital[rows]
    data = loss.data
    ratio = np.divide(data, cap, out=np.where(data > 0, 1.0, 0.0), where=cap > 0)
    loss.data = np.minimum(ratio, 1.0)
    return loss


def debtrank(network: ExposureNetwork, shocked: Iterable[str]) -> DebtRankResult:
    """DebtRank (Battiston et al. 2012) with the shocked nodes starting at stress 1.

    States: undistressed, distressed, inactive. At each step every node's stress grows by
    ``sum_j W[node, j] h_j`` over the nodes j distressed at the previous step (capped at 1);
    those j then become inactive, so each node propagates once; a node whose stress became
    positive becomes distressed. Stops when no node is distressed. Relative economic value
    ``v = weight / sum(weight)``; DebtRank ``R = sum h v - sum h_initial v``.
    """
    weight = _require(network, network.weight, "weight", "debtrank")
    total_weight = float(weight.sum())
    if total_weight <= 0:
        raise ValidationError("weights must not all be zero", where="institutions")
    impact = impact_matrix(network)
    value = weight / total_weight
    n = network.size
    h = np.zeros(n)
    undistressed, distressed, inactive = 0, 1, 2
    state = np.full(n, undistressed, dtype=np.int8)
    start = _shocked_indices(network, shocked)
    h[start] = 1.0
    state[start] = distressed
    initial_value = float(h @ value)
    rounds: list[tuple[str, ...]] = [network.names(start)]
    defaulted = h >= 1.0
    while np.any(state == distressed):
        active = state == distressed
        h = np.minimum(1.0, h + impact @ np.where(active, h, 0.0))
        h[h >= 1.0 - DEFAULT_STRESS_TOLERANCE] = 1.0
        state[active] = inactive
        state[(state == undistressed) & (h > 0)] = distressed
        now_defaulted = h >= 1.0
        new = now_defaulted & ~defaulted
        if new.any():
            rounds.append(network.names(new))
        defaulted = now_defaulted
    return DebtRankResult(
        additional_stress=float(h @ value) - initial_value,
        stress={network.ids[i]: float(h[i]) for i in range(n)},
        defaulted=network.names(defaulted),
        rounds=tuple(rounds),
        additional_defaults=int(defaulted.sum()) - len(start),
    )


# ---------------------------------------------------------------------------------------------
# Decoding the CLI file.


def _name_element(key: str, element: Any, index: int) -> str | None:
    if key == "institutions":
        if isinstance(element, dict) and isinstance(element.get("id"), str):
            return f"institution {element['id']!r}"
        return f"institution #{index + 1}"
    if key == "exposures":
        if isinstance(element, dict):
            return (
                f"exposure #{index + 1} (creditor {element.get('creditor')!r}, "
                f"debtor {element.get('debtor')!r})"
            )
        return f"exposure #{index + 1}"
    return None


def decode_contagion_input(raw: bytes) -> ContagionInput:
    """Decode the ``botc risk contagion`` JSON; unknown fields are refused so typos surface."""
    return decode(raw, ContagionInput, _name_element)
