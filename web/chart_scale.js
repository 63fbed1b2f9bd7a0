// The loss chart's axes as pure maths: linear and log scales, "nice" tick values (1, 2, 5 × 10^k,
// as TensorBoard and matplotlib pick them) and their labels. No DOM, so test_web_modules.py checks
// it on its own.

/** About `count` round values covering [lo, hi]: steps of 1, 2 or 5 × 10^k, inside the range. */
export function niceTicks(lo, hi, count = 5) {
    if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
    if (hi < lo) [lo, hi] = [hi, lo];
    if (hi === lo) return [lo];
    const raw = (hi - lo) / Math.max(1, count);
    const power = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
    const ticks = [];
    for (let i = Math.ceil(lo / step - 1e-9); i * step <= hi + step * 1e-9; i += 1) {
        ticks.push(Number((i * step).toPrecision(12))); // no 0.30000000000000004
    }
    return ticks;
}

/** Ticks for a log axis over [lo, hi] (both > 0): the powers of ten inside it, with 2 × and 5 ×
 * between them when the range spans under two decades, and the nice linear ticks when it spans
 * less than one (a loss going from 0.31 to 0.18 has no power of ten in between). */
export function logTicks(lo, hi, count = 5) {
    if (!(lo > 0) || !(hi > 0)) return [];
    if (hi < lo) [lo, hi] = [hi, lo];
    const decades = Math.log10(hi) - Math.log10(lo);
    if (decades < 1) return niceTicks(lo, hi, count).filter((t) => t > 0);
    const ticks = [];
    const multiples = decades < 2 ? [1, 2, 5] : [1];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e += 1) {
        for (const m of multiples) {
            const value = Number((m * 10 ** e).toPrecision(12));
            if (value >= lo * (1 - 1e-9) && value <= hi * (1 + 1e-9)) ticks.push(value);
        }
    }
    return ticks;
}

/** A tick label: short, exponent form for the very small and very large. */
export function tickLabel(value) {
    if (!Number.isFinite(value)) return "";
    const abs = Math.abs(value);
    if (abs !== 0 && (abs < 0.001 || abs >= 100000)) return value.toExponential(0).replace("e+", "e");
    return String(Number(value.toPrecision(4)));
}

/** A scale from data [lo, hi] to pixels [from, to] (to < from for a y axis, where up is smaller),
 * linear or log10. Values <= 0 on a log scale map to null (they cannot be drawn there). The range
 * is widened when it is a single value, so one point still gets an axis around it. */
export function makeScale(lo, hi, from, to, log = false) {
    const f = log ? Math.log10 : (v) => v;
    let [a, b] = [f(lo), f(hi)];
    if (!(b - a > 1e-12)) {
        const pad = log ? 0.5 : 0.5 * Math.abs(a || 1);
        [a, b] = [a - pad, b + pad];
    }
    const map = (value) => {
        if (value === null || !Number.isFinite(value) || (log && value <= 0)) return null;
        return from + ((f(value) - a) / (b - a)) * (to - from);
    };
    const domain = log ? [10 ** a, 10 ** b] : [a, b];
    return { map, domain, log };
}
