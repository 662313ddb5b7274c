"""Conformal calibration of the confidence monitor's thresholds (core; no ROS imports).

A **record** is one monitor cycle of a closed-loop episode::

    {"certainty": float, "critical": bool, "incident": bool, "signals": {name: value},
     "episode": str, "t_s": float}                      # optional: "incident_t_s": float

``incident`` is True when an at-fault collision, a drivable-area departure or a red-light
violation happens within ``horizon_s`` after the cycle while the candidate drives
(:func:`label_incidents` sets it from incident times). A cycle is **flagged** when it is critical
or its certainty is below the threshold ``tau`` (the monitor then leaves NOMINAL/DEGRADED for
FALLBACK).

Split-conformal threshold (:func:`fit`): the nonconformity score of an incident cycle is its
certainty (-inf when critical: always caught). With n incident cycles from the calibration (VAL)
episodes and a target miss rate alpha, the k-th smallest score with
``k = ceil((n + 1) * (1 - alpha))`` is the conformal quantile q, and ``tau`` is the next float above
q, so "flag when certainty < tau" == "flag when certainty <= q". For a new incident cycle
exchangeable with the calibration ones, P(certainty > q) <= alpha, i.e. P(miss) <= alpha. When
k > n (too few incidents for the target: n < (1 - alpha) / alpha) no finite threshold has the
guarantee; :func:`fit` then keeps the default thresholds and says so (``fitted`` False), as it does
for n == 0. The DEGRADED threshold is fitted the same way at a stricter miss target (default
alpha / 2), so tau_degraded >= tau_fallback: DEGRADED is the looser, earlier warning.

Held-out TEST seeds must never be used here; :func:`evaluate` reports the achieved rates on them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tps_planner.monitor import MonitorParams

CALIBRATION_VERSION = 1
_REQUIRED = ("certainty", "critical", "incident")


def _check_records(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    out = list(records)
    for i, r in enumerate(out):
        if not isinstance(r, Mapping):
            raise ValueError(f"record {i}: expected a dict, got {type(r).__name__}")
        for k in _REQUIRED:
            if k not in r:
                raise ValueError(f"record {i}: missing key {k!r}")
    return out


def _cert(r: Mapping[str, Any]) -> float:
    """A record's certainty; non-finite counts as 0 (the monitor would have flagged it)."""
    try:
        c = float(r["certainty"])
    except (TypeError, ValueError):
        return 0.0
    return c if math.isfinite(c) else 0.0


def conformal_quantile(scores: np.ndarray, alpha: float) -> tuple[float, int]:
    """The split-conformal (1 - alpha) quantile of ``scores`` with the finite-sample correction.

    Returns (q, k): q the k-th smallest score, k = ceil((n + 1) * (1 - alpha)); q = +inf when k > n
    (too few scores for the target) and nan when n == 0.
    """
    s = np.sort(np.asarray(scores, float))
    n = len(s)
    if n == 0:
        return math.nan, 0
    k = int(math.ceil((n + 1) * (1.0 - alpha) - 1e-12))
    k = max(k, 1)
    if k > n:
        return math.inf, k
    return float(s[k - 1]), k


def _flagged(certs: np.ndarray, crit: np.ndarray, tau: float) -> np.ndarray:
    return crit | (certs < tau)


def _rates(certs: np.ndarray, crit: np.ndarray, inc: np.ndarray, tau: float) -> tuple[float | None, float | None]:
    f = _flagged(certs, crit, tau)
    miss = float(np.mean(~f[inc])) if inc.any() else None
    fa = float(np.mean(f[~inc])) if (~inc).any() else None
    return miss, fa


def _json_float(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def fit(records: Iterable[Mapping[str, Any]], target_miss_rate: float = 0.1,
        degraded_miss_rate: float | None = None, nominal_quantile: float = 0.95,
        defaults: MonitorParams | None = None) -> dict[str, Any]:
    """Fit tau_fallback (at ``target_miss_rate``) and tau_degraded (at ``degraded_miss_rate``,
    default half of it) by split-conformal calibration on VAL records, and the per-signal nominal
    quantiles (level ``nominal_quantile`` over the non-incident cycles; the token quantisation
    error's normalises that signal). Returns a JSON-able dict (see the module docstring)."""
    if not 0.0 < target_miss_rate < 1.0:
        raise ValueError(f"target_miss_rate must be in (0, 1), got {target_miss_rate}")
    if degraded_miss_rate is None:
        degraded_miss_rate = 0.5 * target_miss_rate
    if not 0.0 < degraded_miss_rate <= target_miss_rate:
        raise ValueError(f"degraded_miss_rate must be in (0, target_miss_rate], got {degraded_miss_rate}")
    if not 0.0 < nominal_quantile < 1.0:
        raise ValueError(f"nominal_quantile must be in (0, 1), got {nominal_quantile}")
    defaults = defaults or MonitorParams()
    recs = _check_records(records)
    certs = np.array([_cert(r) for r in recs], float)
    crit = np.array([bool(r["critical"]) for r in recs], bool)
    inc = np.array([bool(r["incident"]) for r in recs], bool)
    n_total, n_inc = len(recs), int(inc.sum())
    scores = np.where(crit[inc], -math.inf, certs[inc])

    notes: list[str] = []
    fitted = True
    q_fb, k_fb = conformal_quantile(scores, target_miss_rate)
    q_dg, k_dg = conformal_quantile(scores, degraded_miss_rate)
    tau_fb, tau_dg = defaults.tau_fallback, defaults.tau_degraded
    if n_inc == 0:
        fitted = False
        notes.append("no incident cycles in the calibration set: no threshold can be fitted; defaults kept")
    elif math.isinf(q_fb) and q_fb > 0:
        fitted = False
        need = int(math.ceil((1.0 - target_miss_rate) / target_miss_rate))
        notes.append(f"{n_inc} incident cycles are too few for miss rate {target_miss_rate} (conformal "
                     f"quantile needs n >= {need}); defaults kept")
    else:
        tau_fb = float(min(max(np.nextafter(q_fb, math.inf), 0.0), 1.0)) if math.isfinite(q_fb) else 0.0
        if math.isfinite(q_dg):
            tau_dg = float(min(max(np.nextafter(q_dg, math.inf), 0.0), 1.0))
        elif q_dg < 0:        # every incident cycle critical
            tau_dg = 0.0
        else:
            notes.append(f"too few incident cycles for the DEGRADED target {degraded_miss_rate}; "
                         "tau_degraded kept at its default")
        tau_dg = max(tau_dg, tau_fb)
        if tau_fb >= 1.0 and q_fb >= 1.0:
            notes.append("incidents occur at certainty 1.0: the signals do not separate them")

    miss, fa = _rates(certs, crit, inc, tau_fb)
    miss_dg, fa_dg = _rates(certs, crit, inc, tau_dg)
    # Per-signal nominal quantiles from the non-incident cycles.
    nq: dict[str, float] = {}
    names = sorted({k for r in recs for k in (r.get("signals") or {})})
    for name in names:
        v = np.array([float((r.get("signals") or {}).get(name, math.nan)) for r, i in zip(recs, inc, strict=True)
                      if not i], float)
        v = v[np.isfinite(v)]
        if len(v):
            nq[name] = float(np.quantile(v, nominal_quantile))
    if "quantisation_error" in nq and nq["quantisation_error"] <= 0.0:
        notes.append("nominal quantisation error quantile is 0: the signal stays normalised by the default")
        nq.pop("quantisation_error")
    episodes = sorted({str(r.get("episode", "")) for r in recs})
    return {
        "version": CALIBRATION_VERSION,
        "method": "split-conformal",
        "fitted": fitted,
        "notes": notes,
        "target_miss_rate": float(target_miss_rate),
        "degraded_miss_rate": float(degraded_miss_rate),
        "thresholds": {"tau_fallback": tau_fb, "tau_degraded": tau_dg},
        "conformal": {"k_fallback": k_fb, "q_fallback": _json_float(q_fb),
                      "k_degraded": k_dg, "q_degraded": _json_float(q_dg)},
        "n_incident": n_inc,
        "n_incident_critical": int((crit & inc).sum()),
        "n_total": n_total,
        "n_episodes": len(episodes),
        "calibration_set": {"miss_rate": miss, "false_alarm_rate": fa,
                            "miss_rate_degraded": miss_dg, "false_alarm_rate_degraded": fa_dg},
        "nominal_quantile_level": float(nominal_quantile),
        "nominal_quantiles": nq,
    }


def auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` (higher = more positive) for boolean ``labels``
    (Mann-Whitney U with mid-ranks for ties); None when one class is absent."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[i:j + 1] = 0.5 * (i + j) + 1.0
        i = j + 1
    r = np.empty(len(s))
    r[order] = ranks
    return float((r[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def evaluate(records: Iterable[Mapping[str, Any]], calibration: Mapping[str, Any] | None) -> dict[str, Any]:
    """Miss rate, false-alarm rate, AUROC and event-level detection of the monitor on records.

    - miss rate: incident cycles with certainty >= tau_fallback and no critical flag;
    - false-alarm rate: non-incident cycles with certainty < tau_fallback or a critical flag;
    - AUROC of ``1 - certainty`` (critical = 2) for the incident label;
    - events: consecutive incident cycles of one episode form an event; it is detected when any of
      its cycles is flagged; lead time = incident time (``incident_t_s`` or the last cycle's
      ``t_s``) minus the first flagged cycle's ``t_s``.
    """
    recs = _check_records(records)
    cal = calibration or {}
    th = cal.get("thresholds") or {}
    tau = th.get("tau_fallback")
    tau = float(tau) if isinstance(tau, (int, float)) and not isinstance(tau, bool) else MonitorParams().tau_fallback
    certs = np.array([_cert(r) for r in recs], float)
    crit = np.array([bool(r["critical"]) for r in recs], bool)
    inc = np.array([bool(r["incident"]) for r in recs], bool)
    miss, fa = _rates(certs, crit, inc, tau)
    flagged = _flagged(certs, crit, tau)
    score = np.where(crit, 2.0, 1.0 - certs)

    events: list[dict[str, Any]] = []
    by_ep: dict[str, list[int]] = {}
    for i, r in enumerate(recs):
        by_ep.setdefault(str(r.get("episode", "")), []).append(i)
    for ep, idx in sorted(by_ep.items()):
        idx = sorted(idx, key=lambda i: float(recs[i].get("t_s", i)))
        group: list[int] = []
        for i in idx + [-1]:
            if i >= 0 and inc[i]:
                group.append(i)
                continue
            if group:
                last = recs[group[-1]]
                t_inc = float(last.get("incident_t_s", last.get("t_s", 0.0)))
                fl = [g for g in group if flagged[g]]
                lead = t_inc - float(recs[fl[0]].get("t_s", 0.0)) if fl else None
                events.append({"episode": ep, "t_incident_s": t_inc, "cycles": len(group),
                               "detected": bool(fl), "lead_time_s": lead})
                group = []
    leads = [e["lead_time_s"] for e in events if e["lead_time_s"] is not None]
    n_det = sum(e["detected"] for e in events)
    return {
        "tau_fallback": tau,
        "miss_rate_target": cal.get("target_miss_rate"),
        "calibration_fitted": cal.get("fitted"),
        "n_total": len(recs),
        "n_incident": int(inc.sum()),
        "miss_rate": miss,
        "false_alarm_rate": fa,
        "auroc": auroc(score, inc),
        "n_events": len(events),
        "events_detected": int(n_det),
        "event_detection_rate": (n_det / len(events)) if events else None,
        "lead_time_s_median": float(np.median(leads)) if leads else None,
        "lead_time_s_mean": float(np.mean(leads)) if leads else None,
        "events": events,
    }


def label_incidents(records: Iterable[Mapping[str, Any]], incidents: Mapping[str, Iterable[float]],
                    horizon_s: float) -> list[dict[str, Any]]:
    """Copies of ``records`` with ``incident`` (and ``incident_t_s``) set: a cycle at ``t_s`` of an
    episode is an incident cycle when one of the episode's incident times lies in
    ``[t_s, t_s + horizon_s]``."""
    out = []
    times = {ep: np.sort(np.asarray(list(ts), float)) for ep, ts in incidents.items()}
    for r in records:
        d = dict(r)
        ts = times.get(str(d.get("episode", "")), np.zeros(0))
        t = float(d["t_s"])
        j = int(np.searchsorted(ts, t - 1e-9))
        hit = j < len(ts) and ts[j] <= t + horizon_s + 1e-9
        d["incident"] = bool(hit)
        if hit:
            d["incident_t_s"] = float(ts[j])
        out.append(d)
    return out


def save_calibration(path: str | Path, calibration: Mapping[str, Any]) -> None:
    """Write a calibration dict as JSON (validated first)."""
    _validate(dict(calibration), str(path))
    Path(path).write_text(json.dumps(calibration, indent=2, sort_keys=True) + "\n")


def _validate(d: Any, where: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: calibration must be a JSON object, got {type(d).__name__}")
    th = d.get("thresholds")
    if not isinstance(th, dict):
        raise ValueError(f"{where}: key 'thresholds' missing or not an object")
    for k, v in th.items():
        if k not in ("tau_fallback", "tau_degraded", "tau_mrm"):
            raise ValueError(f"{where}: unknown threshold key 'thresholds.{k}'")
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0):
            raise ValueError(f"{where}: 'thresholds.{k}' must be a number in [0, 1], got {v!r}")
    if "fitted" in d and not isinstance(d["fitted"], bool):
        raise ValueError(f"{where}: key 'fitted' must be true/false, got {d['fitted']!r}")
    ramps = d.get("ramps", {})
    if not isinstance(ramps, dict):
        raise ValueError(f"{where}: key 'ramps' must be an object {{signal: [ok, bad]}}")
    try:
        MonitorParams(ramps=ramps)
    except ValueError as exc:
        raise ValueError(f"{where}: 'ramps': {exc}") from None
    if d.get("combiner") is not None:
        try:
            validate_combiner(d["combiner"], "combiner")
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    nq = d.get("nominal_quantiles", {})
    if not isinstance(nq, dict):
        raise ValueError(f"{where}: key 'nominal_quantiles' must be an object")
    for k, v in nq.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            raise ValueError(f"{where}: 'nominal_quantiles.{k}' must be a finite number, got {v!r}")
    return d


def load_calibration(path: str | Path) -> dict[str, Any]:
    """Read and validate a calibration JSON file; ValueError naming the file (and key) when it is
    missing, unreadable, not JSON or malformed."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ValueError(f"{p}: cannot read calibration file ({exc.strerror or exc})") from exc
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    return _validate(d, str(p))


def fit_ramps(records: Iterable[Mapping[str, Any]], defaults: MonitorParams | None = None,
              ok_quantile: float = 0.95) -> dict[str, list[float]]:
    """Per-signal risk ramps fitted to nominal operation: the "ok" end moves to the signal's
    ``ok_quantile`` over the given (nominal, non-incident) cycles when the default would already
    call that much of nominal driving risky, and the "bad" end keeps the default ramp's width
    beyond it. A signal that is bad when large (sigma, plan jump) gets ``ok = max(default ok,
    q_ok)``; one that is bad when small (clearance, TTC) ``ok = min(default ok, q_(1-ok))``. The
    ramps never become stricter than the defaults, so fitting cannot create false alarms; they
    only stop a signal whose nominal scale the defaults misjudge (e.g. this planner's 4-s
    position sigma of several metres) from holding the certainty down all the time.

    Returns ``{signal: [ok, bad]}`` for the signals with at least 20 finite nominal values."""
    defaults = defaults or MonitorParams()
    recs = list(records)
    out: dict[str, list[float]] = {}
    for name, (ok, bad) in defaults.ramps.items():
        v = np.array([float((r.get("signals") or {}).get(name, math.nan)) for r in recs], float)
        v = v[np.isfinite(v)]
        if len(v) < 20:
            continue
        width = bad - ok
        if width > 0:      # large is bad
            q = float(np.quantile(v, ok_quantile))
            new_ok = max(ok, q)
        else:              # small is bad
            q = float(np.quantile(v, 1.0 - ok_quantile))
            new_ok = min(ok, q)
        out[name] = [new_ok, new_ok + width]
    return out


# ---------------------------------------------------------------------------------------------
# Learned combiner: L2-regularised logistic regression on the per-signal risks
# ---------------------------------------------------------------------------------------------

COMBINER_KIND = "logistic"


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, nonneg: bool = True,
                 max_iter: int = 100) -> tuple[float, np.ndarray]:
    """L2-regularised logistic regression by Newton's method: P(y = 1 | x) = sigmoid(b + x . w),
    minimising the mean log loss + ``l2 / (2 n) * |w|^2`` (the intercept is not penalised).

    ``nonneg``: the weights are constrained to >= 0 (an active set: the feature with the most
    negative weight is dropped and the rest refitted until none is negative), so a risk rising never raises
    the predicted incident probability -- the monotonicity the product rule has. Returns
    ``(intercept, weights)``; rows with a non-finite feature must be removed by the caller."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if x.ndim != 2 or len(x) != len(y) or len(y) == 0:
        raise ValueError(f"fit_logistic: need x (n, d) and y (n,), got {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isin(y, (0.0, 1.0)))):
        raise ValueError("fit_logistic: x must be finite and y 0/1")
    n, d = x.shape
    active = np.ones(d, bool)
    while True:
        xa = np.hstack([np.ones((n, 1)), x[:, active]])
        reg = np.full(xa.shape[1], l2 / n)
        reg[0] = 0.0
        p0 = min(max(y.mean(), 1e-6), 1 - 1e-6)
        beta = np.zeros(xa.shape[1])
        beta[0] = math.log(p0 / (1 - p0))
        for _ in range(max_iter):
            p = _sigmoid(xa @ beta)
            grad = xa.T @ (p - y) / n + reg * beta
            h = (xa * (p * (1 - p))[:, None]).T @ xa / n + np.diag(reg) + 1e-9 * np.eye(len(beta))
            step = np.linalg.solve(h, grad)
            beta -= step
            if np.max(np.abs(step)) < 1e-8:
                break
        w = np.zeros(d)
        w[active] = beta[1:]
        if not nonneg or not np.any(w[active] < 0.0):
            return float(beta[0]), w
        active[int(np.argmin(w))] = False     # drop the most negative one, refit the rest


def fit_combiner(records: Iterable[Mapping[str, Any]], ramps: Mapping[str, Any] | None = None,
                 l2: float = 1.0) -> dict[str, Any]:
    """A logistic combiner ``{"kind", "intercept", "weights": {signal: w}, "l2", "n", "n_incident"}``
    fitted on ``records`` (their ``signals`` mapped to risks under ``ramps``, the label
    ``incident``): the monitor's certainty is then 1 - P(incident | risks) instead of the product
    of the ramps (:func:`tps_planner.monitor.ConfidenceMonitor.certainty`)."""
    from tps_planner.monitor import SIGNAL_NAMES, ConfidenceMonitor

    mon = ConfidenceMonitor(calibration={"thresholds": {}, "ramps": dict(ramps or {})})
    recs = list(records)
    x = np.array([[rk[n] for n in SIGNAL_NAMES] for rk in (mon.risks(_signal_values(r)) for r in recs)], float)
    y = np.array([1.0 if r["incident"] else 0.0 for r in recs])
    b, w = fit_logistic(x, y, l2=l2)
    return {"kind": COMBINER_KIND, "intercept": b, "weights": dict(zip(SIGNAL_NAMES, map(float, w), strict=True)),
            "l2": float(l2), "n": len(recs), "n_incident": int(y.sum())}


def _signal_values(r: Mapping[str, Any]) -> dict[str, float]:
    from tps_planner.monitor import SIGNAL_NAMES

    sig = r.get("signals") or {}
    out = {}
    for n in SIGNAL_NAMES:
        try:
            out[n] = float(sig.get(n, math.nan))
        except (TypeError, ValueError):
            out[n] = math.nan
    return out


def validate_combiner(c: Any, where: str = "calibration.combiner") -> dict[str, Any]:
    """The combiner dict checked (ValueError naming the bad key): kind "logistic", a finite
    intercept, finite weights >= 0 for known signals only."""
    from tps_planner.monitor import SIGNAL_NAMES

    if not isinstance(c, dict):
        raise ValueError(f"{where}: expected an object, got {type(c).__name__}")
    if c.get("kind") != COMBINER_KIND:
        raise ValueError(f"{where}.kind: expected {COMBINER_KIND!r}, got {c.get('kind')!r}")
    b = c.get("intercept")
    if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(float(b)):
        raise ValueError(f"{where}.intercept: expected a finite number, got {b!r}")
    w = c.get("weights")
    if not isinstance(w, dict):
        raise ValueError(f"{where}.weights: expected an object {{signal: weight}}")
    for k, v in w.items():
        if k not in SIGNAL_NAMES:
            raise ValueError(f"{where}.weights: unknown signal {k!r}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)) or float(v) < 0:
            raise ValueError(f"{where}.weights[{k!r}]: expected a finite number >= 0, got {v!r}")
    return c
